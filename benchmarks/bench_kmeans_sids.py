"""Would SIDs compact in the encoder's space help the generator? Hierarchical k-means SIDs vs CQ-SID's.

    python benchmarks/bench_kmeans_sids.py --products ../shared/data/homedepot/products.csv \\
        --train data/hd/dev-train.csv --test data/hd/dev-val.csv            # ceilings only (~1 min)
    python benchmarks/bench_kmeans_sids.py ... --train-generator            # + a generator (~11 min quiet)

DSI-style SIDs: spherical k-means (faiss) on the MiniLM item vectors, then again inside every cluster,
with CQ-SID's level sizes on Home Depot (18 x 32 x up to 32) and the last level sized for ``--leaf``
items per SID, so the cluster count matches CQ-SID's (~10k). Printed: the clusters' ceilings as
`bench_cluster_order.py` measures them (best item, centroid) and, with ``--train-generator``, the
generator of `eval-real`'s defaults trained and scored on these SIDs exactly as on CQ-SID's
(`train_and_search`, `score_run`). Run it on a split of the training queries, not the test queries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster_order import centroid_order

from genrecall.config import from_dict, load_params
from genrecall.eval.metrics import evaluate_ranked_items
from genrecall.eval.oracle import cluster_oracle
from genrecall.pipeline.eval_real import EvalRealConfig, load_run, score_run, train_and_search
from genrecall.pipeline.evaluate import EvaluateConfig
from genrecall.sid.index import SidIndex


def kmeans(v: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Spherical k-means labels of the rows of ``v`` (k capped at the row count; 1 cluster needs no fit)."""
    k = max(1, min(k, len(v)))
    if k == 1:
        return np.zeros(len(v), np.int64)
    v = np.ascontiguousarray(v, dtype=np.float32)
    m = faiss.Kmeans(  # every row trains (faiss samples 256 a centroid otherwise)
        v.shape[1], k, niter=20, seed=seed, spherical=True, min_points_per_centroid=1, max_points_per_centroid=100_000
    )
    m.train(v)
    return m.index.search(v, 1)[1][:, 0].astype(np.int64)


def hierarchical_codes(x: np.ndarray, sizes: tuple[int, int, int], leaf: float) -> np.ndarray:
    """(n, 4) SIDs: three nested k-means levels (the last sized for ``leaf`` items a cluster), suffix 0."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    codes = np.zeros((len(x), 4), np.int64)
    codes[:, 0] = kmeans(x, sizes[0], 0)
    for a in range(sizes[0]):
        ia = np.flatnonzero(codes[:, 0] == a)
        codes[ia, 1] = kmeans(x[ia], sizes[1], a + 1)
        for b in np.unique(codes[ia, 1]):
            ib = ia[codes[ia, 1] == b]
            codes[ib, 2] = kmeans(x[ib], min(sizes[2], int(np.ceil(len(ib) / leaf))), 1000 + a * 64 + int(b))
    return codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--products", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--sizes", type=int, nargs=3, default=[18, 32, 32], help="k of each level (CQ-SID's on HD)")
    ap.add_argument("--leaf", type=float, default=5.0, help="items per SID the last level aims at")
    ap.add_argument("--train-generator", action="store_true", help="also train and score eval-real's generator")
    args = ap.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    cfg = from_dict(EvalRealConfig, {**load_params().get("eval_real", {}), "methods": ["cq_sid"]})
    run = load_run(cfg, args.products, args.train, args.test)
    codes = hierarchical_codes(run.x, tuple(args.sizes), args.leaf)
    _, cluster = np.unique(codes[:, :3], axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    best = evaluate_ranked_items(cluster_oracle(run.test_vectors, run.x, run.ids, codes), run.targets).items
    centre = evaluate_ranked_items(centroid_order(run.test_vectors, run.x, run.ids, cluster, 1000), run.targets)
    n = int(cluster.max()) + 1
    print(
        f"{n:,} SIDs ({len(codes) / n:.2f} items each); items@1000 with clusters ordered by best item "
        f"{best[1000]:.3f}, by centroid {centre.items[1000]:.3f}"
    )
    if args.train_generator:
        index = SidIndex.build(run.ids, codes, codebook_sizes=args.sizes, suffix_mode="group")
        t0 = time.perf_counter()
        gen_run = train_and_search(cfg, cfg.train, index, run, Path(tempfile.mkdtemp(prefix="kmeans-sids-")))
        m = score_run(from_dict(EvaluateConfig, cfg.evaluate), run, gen_run, index)
        print(
            f"generator ({time.perf_counter() - t0:.0f} s): items@100 {m.items[100]:.3f}  items@1000 "
            f"{m.items[1000]:.3f}  hitrate@1/10/100 "
            f"{m.hitrate_at(1):.3f} {m.hitrate_at(10):.3f} {m.hitrate_at(100):.3f}"
        )


if __name__ == "__main__":
    main()
