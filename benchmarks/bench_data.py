"""Time and peak memory to generate a synthetic marketplace preset, write it, and validate it.

    python benchmarks/bench_data.py --preset small medium
    python benchmarks/bench_data.py --preset large --out /tmp/large   # minutes, a few GB

Each preset runs in a fresh subprocess so peak RSS (ru_maxrss) is that preset's alone.
Prints one JSON line per preset: wall and CPU seconds to generate (CPU time is the fairer number
on a shared machine), seconds to save, seconds to validate every table with Great Expectations
(the validate stage's function), peak RSS in MiB over all three, Parquet size, row counts.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(preset: str, seed: int, out: str | None) -> dict:
    from genrecall.data.marketplace import MarketplaceConfig, generate_marketplace

    t0, c0 = time.perf_counter(), time.process_time()
    market = generate_marketplace(MarketplaceConfig(preset=preset, seed=seed))
    t1, c1 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(out or tmp)
        market.save(target)
        size = sum(p.stat().st_size for p in target.rglob("*.parquet"))
    t2 = time.perf_counter()
    from genrecall.data.validate import validate_tables

    c2 = time.process_time()
    checked = validate_tables(market.tables())
    t3, c3 = time.perf_counter(), time.process_time()
    quarantined = sum(t.quarantined for t in checked.report.tables.values())
    return {
        "preset": preset,
        "seed": seed,
        "generate_s": round(t1 - t0, 2),
        "generate_cpu_s": round(c1 - c0, 2),
        "save_s": round(t2 - t1, 2),
        "validate_s": round(t3 - t2, 2),
        "validate_cpu_s": round(c3 - c2, 2),
        "quarantined": quarantined,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "parquet_mib": round(size / 2**20, 1),
        "rows": {k: len(v) for k, v in market.tables().items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="+", default=["tiny", "small"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="keep the Parquet output here (default: a temp dir)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.preset[0], args.seed, args.out)))
        return
    for preset in args.preset:
        cmd = [sys.executable, __file__, "--one", "--preset", preset, "--seed", str(args.seed)]
        cmd += ["--out", args.out] if args.out else []
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        print(
            res.stdout.strip() if res.returncode == 0 else json.dumps({"preset": preset, "error": res.stderr[-2000:]}),
            flush=True,
        )


if __name__ == "__main__":
    main()
