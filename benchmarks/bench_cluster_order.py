"""How much of the clusters' recall ceiling depends on ordering them by their *best* item.

    genrecall eval-real ... --out reports/dev-base.json --set 'methods=[cq_sid]'   # saves reports/dev-base/index
    python benchmarks/bench_cluster_order.py --work reports/dev-base \\
        --products ../shared/data/homedepot/products.csv --train data/hd/dev-train.csv --test data/hd/dev-val.csv

For the test queries of ``--test``, the saved CQ-SID clusters are ordered several ways and expanded whole
(items in id order, first 1000 kept), as `cluster_oracle` (eval/oracle.py) does:

- ``max``: by the best cosine between the query's MiniLM vector and any item of the cluster (the oracle);
- ``centroid``: by the cosine to the cluster's mean item vector, at the full SID and at its first
  ``D - 1`` levels (what a cluster-level dense index, or a prior over trie nodes, could reach);
- ``fused``: by the cluster's best rank in the reciprocal-rank fusion of BM25 and dense (their first
  5000 items each; clusters with no item there last): the ceiling of a generator that understood the
  query's wording *and* meaning as well as the two together do;
- ``sid_hybrid``: by the fusion of BM25 over each cluster's titles and the cluster centroid's cosine
  (gen/sid_hybrid.py, eval-real's ``sid_hybrid`` row): what needs no item-level index at all;
  with ``--generator`` also the saved generator's beam (300 SIDs) alone and as a third ranking in
  that fusion: does the trained generator add anything to it?

A generator that learns "query meaning -> cluster" from a cluster's items as a whole behaves more like
the second. Run it on a split of the *training* queries (``genrecall split-judged`` on the train half):
it reads the test queries' item similarities, so it is a diagnostic, not a method.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from genrecall.config import from_dict, load_params
from genrecall.eval.fusion import rrf
from genrecall.eval.metrics import evaluate_ranked_items
from genrecall.eval.oracle import cluster_oracle, expand_clusters
from genrecall.gen.sid_hybrid import SidHybrid, cluster_centroids
from genrecall.pipeline.eval_real import EvalRealConfig, baseline_rankings, load_run, search
from genrecall.sid.index import SidIndex


def centroid_order(
    query_vectors: np.ndarray, item_vectors: np.ndarray, item_ids: np.ndarray, cluster: np.ndarray, n: int
) -> list[np.ndarray]:
    """First ``n`` items per query, clusters ordered by the cosine to their mean (unit) item vector."""
    centres = cluster_centroids(cluster, item_vectors)
    return [expand_clusters(centres @ q, cluster, item_ids, n) for q in np.asarray(query_vectors, dtype=np.float64)]


def ranked_order(ranked: list[np.ndarray], item_ids: np.ndarray, cluster: np.ndarray, n: int) -> list[np.ndarray]:
    """First ``n`` items per query, clusters ordered by their best item's rank in ``ranked`` (item ids)."""
    row = {int(i): r for r, i in enumerate(item_ids)}
    out = []
    for items in ranked:
        score = np.full(int(cluster.max()) + 1, -np.inf)
        rows = np.array([row[int(i)] for i in items], dtype=np.int64)
        # one score per cluster: minus the rank of its first item (np.maximum keeps the best)
        np.maximum.at(score, cluster[rows], -np.arange(len(rows), dtype=np.float64))
        out.append(expand_clusters(score, cluster, item_ids, n))
    return out


def _first_ranked(order: np.ndarray, k: int) -> np.ndarray:
    """Cluster scores for `expand_clusters` from a ranked list of cluster numbers (unlisted: last)."""
    score = np.full(k, -np.inf)
    score[order] = -np.arange(len(order), dtype=np.float64)
    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="an eval-real work dir (its index/cq_sid is read)")
    ap.add_argument("--products", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--method", default="cq_sid")
    ap.add_argument("--generator", action="store_true", help="also decode <work>/generator/<method>")
    args = ap.parse_args()
    cfg = from_dict(EvalRealConfig, load_params().get("eval_real", {}))
    run = load_run(cfg, args.products, args.train, args.test)
    sids = SidIndex.load(args.work / "index" / args.method).sid_of(run.ids)
    rows: dict[str, list[np.ndarray]] = {"max (cluster_oracle)": cluster_oracle(run.test_vectors, run.x, run.ids, sids)}
    for depth in (sids.shape[1], sids.shape[1] - 1):
        _, cluster = np.unique(sids[:, :depth], axis=0, return_inverse=True)
        cluster = cluster.reshape(-1)
        name = f"centroid, first {depth} levels ({int(cluster.max()) + 1:,} clusters)"
        rows[name] = centroid_order(run.test_vectors, run.x, run.ids, cluster, 1000)
    _, cluster = np.unique(sids, axis=0, return_inverse=True)
    ranked = {k: [r[r >= 0] for r in v] for k, v in baseline_rankings(run, 5000).items()}
    rows["fused: best item in RRF(BM25, dense)"] = ranked_order(
        rrf([ranked["bm25"], ranked["dense"]], 5000), run.ids, cluster.reshape(-1), 1000
    )
    start = time.perf_counter()
    hybrid = SidHybrid().fit(sids, run.items["title"].astype(str).tolist(), run.x)
    fit_s = time.perf_counter() - start
    queries = run.test_log["query"].tolist()

    def expand(found: list[np.ndarray]) -> list[np.ndarray]:  # SIDs, best first -> first 1000 items
        ranks = (_first_ranked(hybrid.numbers(f), len(hybrid)) for f in found)
        return [expand_clusters(r, cluster.reshape(-1), run.ids, 1000) for r in ranks]

    start = time.perf_counter()
    found = hybrid.search(queries, run.test_vectors, 1000)
    search_s = time.perf_counter() - start
    print(f"sid_hybrid: fit {fit_s:.1f} s ({len(hybrid):,} SIDs), search {1e3 * search_s / len(queries):.1f} ms/query")
    rows["sid_hybrid: RRF(BM25 over cluster titles, centroid)"] = expand(found)
    if args.generator:
        index = SidIndex.load(args.work / "index" / args.method)
        generated = search(cfg, index, run, args.work / "generator" / args.method).sids
        rows["generator's beam"] = expand(generated)
        both = hybrid.search(queries, run.test_vectors, 1000, generated=generated)
        rows["sid_hybrid + generator: RRF of the three"] = expand(both)
    print(f"{len(run.test_log)} test queries, {len(run.ids):,} items")
    for name, lists in rows.items():
        m = evaluate_ranked_items(lists, run.targets, n_items=(100, 1000))
        print(f"{name:45s} items@100 {m.items[100]:.3f}  items@1000 {m.items[1000]:.3f}")


if __name__ == "__main__":
    main()
