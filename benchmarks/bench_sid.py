"""SID benchmarks: (a) MiniLM embedding throughput, (b) incremental assignment vs a full sid fit.

    python benchmarks/bench_sid.py embed --n 2000
    python benchmarks/bench_sid.py incremental --items 100000 --new-share 0.01
    python benchmarks/bench_sid.py health --items 20000          # SID health on a synthetic catalog

(b) runs the real ``sid`` stage (both methods) on a catalog of ``--items`` items, then adds
``--new-share`` new items and delists as many, and times ``sid_update``. Embeddings are synthetic
(clustered 384-d vectors, one cluster family per leaf category) so the numbers measure the SID
stage, not the text encoder (MiniLM on 100k items would take minutes on 2 cores and is measured
separately by (a)). Results are printed and, with ``--out FILE``, written as JSON. No timed assertions live in tests.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from genrecall.data.schema import ITEMS, write_table
from genrecall.pipeline.sid import SidConfig, sid, sid_update
from genrecall.sid.clusters import ClusterConfig, make_sids
from genrecall.sid.health import sid_health
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import SidTokenizer

TS = pd.Timestamp("2026-01-01", tz="UTC")


def bench_embedding(n: int = 2000, batch_size: int = 64) -> dict:
    """Items/s of all-MiniLM-L6-v2 on this machine's CPU, on shop-like titles."""
    from genrecall.sid.encoder import EncoderConfig, make_encoder

    rng = np.random.default_rng(0)
    words = [
        "stainless",
        "steel",
        "electric",
        "kettle",
        "running",
        "shoes",
        "women",
        "men",
        "cotton",
        "t-shirt",
        "wireless",
        "mouse",
        "led",
        "desk",
        "lamp",
    ]
    texts = [" ".join(rng.choice(words, 8)) + f" | brand: B{i % 50} | color: red | size: {i % 9}" for i in range(n)]
    t0 = time.perf_counter()
    enc = make_encoder(EncoderConfig(encoder="minilm", batch_size=batch_size))
    load_s = time.perf_counter() - t0
    enc.encode(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    enc.encode(texts, show_progress=True)
    secs = time.perf_counter() - t0
    import torch

    return {
        "encoder": enc.name,
        "items": n,
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "seconds": round(secs, 2),
        "items_per_s": round(n / secs, 1),
    }


def synthetic_catalog(
    n: int, *, n_cat: int | None = None, d: int = 384, products_per_cat: int = 12, seed: int = 0, unknown: float = 0.03
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item_ids, embeddings (n, d) L2-normalised, categories float with NaN) with category > product >
    variant structure, so similar items can share a SID."""
    rng = np.random.default_rng(seed)
    n_cat = n_cat or max(8, n // 70)
    centres = rng.standard_normal((n_cat, d))
    products = centres[:, None] + 0.6 * rng.standard_normal((n_cat, products_per_cat, d))
    cat = rng.integers(0, n_cat, n)
    x = products[cat, rng.integers(0, products_per_cat, n)] + 0.3 * rng.standard_normal((n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    cats = (cat + 1000).astype(float)
    cats[rng.random(n) < unknown] = np.nan
    return np.arange(1, n + 1, dtype=np.int64), x, cats


def _write_items(directory: Path, ids: np.ndarray, cats: np.ndarray, delisted: np.ndarray) -> None:
    cat = pd.array(np.where(np.isnan(cats), 0, cats).astype(int), dtype="Int32")
    cat[np.isnan(cats)] = pd.NA
    df = pd.DataFrame(
        {
            "item_id": ids,
            "title": [f"item {i}" for i in ids],
            "brand": "B",
            "category_id": cat,
            "color": None,
            "material": None,
            "size": None,
            "style": None,
            "price": 1.0,
            "listed_at": TS,
            "delisted_at": pd.Series(np.where(np.isin(ids, delisted), TS, pd.NaT), dtype="datetime64[us, UTC]"),
            "updated_at": TS,
        }
    )
    write_table(df, ITEMS, directory)


def _write_embeddings(directory: Path, ids: np.ndarray, x: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "item_ids.npy", ids)
    np.save(directory / "items.npy", x)
    np.save(directory / "queries.npy", np.zeros((0, x.shape[1]), np.float32))
    pd.DataFrame({"query": pd.Series([], dtype="string")}).to_parquet(directory / "queries.parquet", index=False)


def bench_incremental(items: int = 100_000, new_share: float = 0.01, epochs: int | None = None, seed: int = 0) -> dict:
    """Full ``sid`` stage (both methods) vs ``sid_update`` with ``new_share`` new + delisted items."""
    n_new = max(1, int(items * new_share))
    ids, x, cats = synthetic_catalog(items + n_new, seed=seed)
    old = slice(0, items)
    cfg = SidConfig() if epochs is None else SidConfig(epochs=epochs)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_items(root / "data", ids[old], cats[old], np.empty(0, np.int64))
        _write_embeddings(root / "emb", ids[old], x[old])
        t0 = time.perf_counter()
        res = sid(cfg, root / "data", root / "emb", root / "models", root / "sids", root / "reports")
        full_s = time.perf_counter() - t0
        rng = np.random.default_rng(seed + 1)
        delist = rng.choice(ids[old], n_new, replace=False)
        _write_items(root / "data", ids, cats, delist)
        _write_embeddings(root / "emb", ids, x)
        t0 = time.perf_counter()
        upd = sid_update(root / "data", root / "emb", root / "models", root / "sids")
        update_s = time.perf_counter() - t0
        # the part that scales with the delta alone: frozen assign + index add/remove, index already in memory
        index = SidIndex.load(root / "sids" / "cq_sid")
        tok = SidTokenizer.load(root / "models" / "cq_sid")
        more_ids, more_x, more_cats = synthetic_catalog(n_new, seed=seed + 2)
        more_ids = more_ids + 10 * (items + n_new)
        t0 = time.perf_counter()
        index.add(more_ids, tok.assign(more_x, more_cats))
        index.remove(more_ids[: n_new // 2])
        core_s = time.perf_counter() - t0
        health = json.loads((root / "reports" / "sid_health.json").read_text())
    return {
        "items": items,
        "new_items": n_new,
        "delisted": n_new,
        "epochs": cfg.epochs,
        "full_sid_stage_s": round(full_s, 2),
        "fit_s": {m: round(s.fit_seconds, 2) for m, s in res.methods.items()},
        "sid_update_s": round(update_s, 2),
        "sid_update_per_method_s": {m: round(s, 2) for m, s in upd.seconds.items()},
        "assign_and_index_core_s": round(core_s, 4),
        "ratio_update_over_full": round(update_s / full_s, 4),
        "ratio_core_over_full": round(core_s / full_s, 5),
        "health": {
            m: {k: h[k] for k in ("codebook_sizes", "utilisation", "items_per_sid", "collision_rate", "category_match")}
            for m, h in health.items()
        },
    }


def bench_health(items: int = 20_000, epochs: int | None = None, seed: int = 0) -> dict:
    """SID health of both methods on a synthetic catalog of ``items`` items (no disk)."""
    _ids, x, cats = synthetic_catalog(items, seed=seed)
    cfg = SidConfig() if epochs is None else SidConfig(epochs=epochs)
    out = {}
    for method in cfg.methods:
        tok = SidTokenizer(cfg.tokenizer_config(method))
        report = tok.fit(x, cats, show_progress=True)
        sids = make_sids(tok.assign(x, cats), ClusterConfig(suffix_mode="group" if method == "cq_sid" else "dedup"))
        h = sid_health(
            sids, tok.codebook_sizes, categories=cats, category_ids=tok.category_ids if tok.cfg.forcing else None
        )
        out[method] = h.to_dict() | {"fit_s": round(report.seconds, 1), "restarts": report.restarts}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("embed")
    e.add_argument("--n", type=int, default=2000)
    e.add_argument("--batch-size", type=int, default=64)
    i = sub.add_parser("incremental")
    i.add_argument("--items", type=int, default=100_000)
    i.add_argument("--new-share", type=float, default=0.01)
    i.add_argument("--epochs", type=int, default=None)
    h = sub.add_parser("health")
    h.add_argument("--items", type=int, default=20_000)
    h.add_argument("--epochs", type=int, default=None)
    for s in (e, i, h):
        s.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    if a.what == "embed":
        result = bench_embedding(a.n, a.batch_size)
    elif a.what == "incremental":
        result = bench_incremental(a.items, a.new_share, a.epochs)
    else:
        result = bench_health(a.items, a.epochs)
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
