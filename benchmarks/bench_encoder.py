"""The MiniLM encoder: ONNX Runtime (the default runtime) vs sentence-transformers, in one run.

    python benchmarks/bench_encoder.py                 # 1,000 titles, 200 single-query calls
    python benchmarks/bench_encoder.py --quick         # 300 titles, 100 single-query calls
    python benchmarks/bench_encoder.py --out reports/bench_encoder.json

Texts are Home Depot product titles (``../shared/data/homedepot/products.csv``) when present, else
item texts of the synthetic ``small`` marketplace. For each runtime: the serving case (one query per
call, p50/p99 ms, the request path of a semantic generator) and the embed stage's case (every text
in batches of ``--batch-size``, items/s); and the cosine of every ONNX vector to its
sentence-transformers vector (min, p1, mean). Both runtimes run interleaved on one torch/ORT thread
(``--threads``), so their ratio is fair on a shared machine; absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _texts(n: int) -> tuple[list[str], str]:
    products = REPO.parent / "shared" / "data" / "homedepot" / "products.csv"
    if products.exists():
        return pd.read_csv(products, nrows=n)["title"].astype(str).tolist(), "Home Depot titles"
    from genrecall.data.marketplace import MarketplaceConfig, generate_marketplace
    from genrecall.sid.encoder import item_texts

    return item_texts(generate_marketplace(MarketplaceConfig(preset="small", seed=0)).items)[:n], "synthetic items"


def _single(encoder: Any, texts: list[str]) -> list[float]:
    out = []
    for t in texts:
        start = time.perf_counter()
        encoder.encode([t])
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=1000, help="texts for the batch (embed stage) case")
    ap.add_argument("--queries", type=int, default=200, help="single-text calls (serving case)")
    ap.add_argument("--batch-size", type=int, default=64, help="EncoderConfig.batch_size")
    ap.add_argument("--max-seq-length", type=int, default=48, help="EncoderConfig.max_seq_length")
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--quick", action="store_true", help="300 texts, 100 queries")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.texts, args.queries = 300, 100

    from genrecall.env import apply_defaults

    apply_defaults()
    import torch

    torch.set_num_threads(args.threads)
    from genrecall.sid.encoder import MiniLMEncoder
    from genrecall.sid.onnx_encoder import OnnxMiniLMEncoder

    texts, source = _texts(args.texts)
    encoders = {
        "torch": MiniLMEncoder(batch_size=args.batch_size, max_seq_length=args.max_seq_length),
        "onnx": OnnxMiniLMEncoder(batch_size=args.batch_size, max_seq_length=args.max_seq_length, threads=args.threads),
    }
    vectors = {name: enc.encode(texts[:50]) for name, enc in encoders.items()}  # warm-up
    single: dict[str, list[float]] = {name: [] for name in encoders}
    queries = texts[: args.queries]
    for lo in range(0, len(queries), 20):  # interleaved: both runtimes see the same machine load
        for name, enc in encoders.items():
            single[name] += _single(enc, queries[lo : lo + 20])
    rows = []
    for name, enc in encoders.items():
        start = time.perf_counter()
        vectors[name] = enc.encode(texts)
        rate = len(texts) / (time.perf_counter() - start)
        rows.append(
            {
                "runtime": name,
                "query_p50_ms": float(np.percentile(single[name], 50)),
                "query_p99_ms": float(np.percentile(single[name], 99)),
                "items_per_s": rate,
            }
        )
    cosine = (vectors["onnx"] * vectors["torch"]).sum(axis=1)
    print(f"{len(texts)} {source}, {args.queries} single-text calls, {args.threads} thread(s)")
    for r in rows:
        print(
            f"{r['runtime']:>6}  one query p50 {r['query_p50_ms']:6.2f} ms  p99 {r['query_p99_ms']:6.2f} ms  "
            f"batch {r['items_per_s']:7.1f} items/s"
        )
    t, o = rows
    print(
        f"onnx/torch: query p50 {t['query_p50_ms'] / o['query_p50_ms']:.2f}x faster, "
        f"items/s {o['items_per_s'] / t['items_per_s']:.2f}x; cosine min {cosine.min():.6f} "
        f"p1 {np.percentile(cosine, 1):.6f} mean {cosine.mean():.6f}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "texts": len(texts),
            "source": source,
            "queries": args.queries,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "results": rows,
            "cosine": {"min": float(cosine.min()), "p1": float(np.percentile(cosine, 1)), "mean": float(cosine.mean())},
        }
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
