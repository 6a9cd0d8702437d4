"""Online feature lookup latency: ``FeatureClient.user_context`` (one user) and ``item_features`` (a batch).

Builds a real store (Parquet offline, SQLite online) from the synthetic marketplace in a temp dir,
then times single-user lookups of random known users, as the search service makes them per request.
SIDs are stand-ins derived from the category (this measures the store, not the tokenizer).

    .venv/bin/python benchmarks/bench_feast_online.py --preset small --lookups 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("FEAST_USAGE", "False")
REPO = Path(__file__).resolve().parents[1]


def _stand_in_sids(items: pd.DataFrame) -> pd.DataFrame:
    cat = items["category_id"].astype("Int64").fillna(0).astype(np.int64).to_numpy()
    ids = items["item_id"].to_numpy(np.int64)
    codes = np.stack([cat, ids % 16, (ids // 16) % 16, np.zeros_like(ids)], axis=1)
    return pd.DataFrame(
        {"item_id": ids, "sid": ["-".join(map(str, c)) for c in codes], "codes": [list(c) for c in codes]}
    )


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "n": len(a),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help="marketplace preset (tiny, small, ...)")
    ap.add_argument("--lookups", type=int, default=1000, help="timed single-user lookups")
    ap.add_argument("--batch", type=int, default=100, help="items per item_features call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = ap.parse_args(argv)

    from genrecall.data import schema as S
    from genrecall.data.marketplace import MarketplaceConfig, generate_marketplace
    from genrecall.features import FeaturesConfig
    from genrecall.features.store import FeatureClient
    from genrecall.pipeline.features import features

    with tempfile.TemporaryDirectory(prefix="bench-feast-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        market = generate_marketplace(MarketplaceConfig(preset=args.preset))
        for name, df in market.tables().items():  # as the validate stage writes them (plain list cells)
            df = df.copy()
            for c in df.columns:
                if isinstance(df[c].dtype, pd.ArrowDtype):
                    df[c] = pd.Series(df[c].tolist(), dtype=object, index=df.index)
            S.write_table(df, S.ALL_TABLES[name], root / "validated")
        S.write_table(_stand_in_sids(market.items), S.SID_ASSIGNMENTS, root / "sid")
        t1 = time.perf_counter()
        built = features(FeaturesConfig(), root / "validated", root / "sid", REPO / "feature_repo", root / "feast")
        t2 = time.perf_counter()

        client = FeatureClient(REPO / "feature_repo", root / "feast")
        rng = np.random.default_rng(args.seed)
        users = market.users["user_id"].to_numpy()
        items = market.items["item_id"].to_numpy()
        for uid in rng.choice(users, 20):  # warm-up: registry load, SQLite page cache
            client.user_context(str(uid))
        user_ms, item_ms = [], []
        for uid in rng.choice(users, args.lookups):
            s = time.perf_counter()
            client.user_context(str(uid))
            user_ms.append((time.perf_counter() - s) * 1e3)
        for _ in range(max(args.lookups // 10, 10)):
            batch = rng.choice(items, args.batch, replace=False)
            s = time.perf_counter()
            client.item_features(batch)
            item_ms.append((time.perf_counter() - s) * 1e3)
        known = sum(client.user_context(str(u)).known for u in users[:200]) / min(len(users), 200)

    result = {
        "preset": args.preset,
        "items": len(items),
        "users": len(users),
        "requests": len(market.requests),
        "source_rows": {
            "item_features": built.item_rows,
            "user_profile": built.profile_rows,
            "user_recent": built.recent_rows,
        },
        "generate_s": round(t1 - t0, 2),
        "build_s": round(t2 - t1, 2),
        "known_user_share": round(known, 3),
        "user_context": _percentiles(user_ms),
        f"item_features_x{args.batch}": _percentiles(item_ms),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
