"""The embed -> sid stages end to end on hand-made tables, and the incremental update."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import genrecall.data.marketplace as marketplace
from genrecall.data.schema import ITEMS, REQUESTS, SID_ASSIGNMENTS, read_table, write_table
from genrecall.pipeline.embed import EmbedConfig, embed
from genrecall.pipeline.sid import SidConfig, sid, sid_update
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import SidTokenizer

torch.set_num_threads(1)

NOUNS = {11: "kettle", 12: "toaster", 13: "blender", 21: "sneaker", 22: "sandal", 23: "boot"}
COLORS = ["red", "black", "white", "blue"]
TS = pd.Timestamp("2026-01-01", tz="UTC")
HASH = EmbedConfig(encoder="hash", hash_dim=32)
SMALL = SidConfig(
    test_days=None,
    epochs=2,
    hidden_dims=(32,),
    latent_dim=8,
    codebook_sizes=("auto", 8, 4),
    kmeans_iters=5,
    batch_size=64,
)


def _items(n: int, start: int = 1, seed: int = 0, delisted: tuple[int, ...] = ()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cats = rng.choice(list(NOUNS), n)
    colors = rng.choice(COLORS, n)
    brands = rng.choice(["Acme", "Zeta", "Nordia"], n)
    ids = np.arange(start, start + n, dtype=np.int64)
    category = pd.array(cats, dtype="Int32")
    category[rng.random(n) < 0.1] = pd.NA  # a few unknown categories
    delist = pd.Series([TS if i in delisted else pd.NaT for i in ids], dtype="datetime64[us, UTC]")
    return pd.DataFrame(
        {
            "item_id": ids,
            "title": [f"{b} {c} {NOUNS[k]} model {i % 7}" for b, c, k, i in zip(brands, colors, cats, ids)],
            "brand": brands,
            "category_id": category,
            "color": colors,
            "material": None,
            "size": None,
            "style": None,
            "price": 10.0,
            "listed_at": TS,
            "delisted_at": delist,
            "updated_at": TS,
        }
    )


def _requests(items: pd.DataFrame, n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n):
        item = items.iloc[int(rng.integers(len(items)))]
        noun = item["title"].split()[2]
        rows.append(
            {
                "request_id": r,
                "ts": TS,
                "user_id": None,
                "query": f"{item['color']} {noun}",
                "query_kind": "attr_noun",
                "exposed": [int(item["item_id"])],
                "clicked": [int(item["item_id"])],
                "purchased": [],
            }
        )
    return pd.DataFrame(rows)


def _run(tmp: Path, items: pd.DataFrame) -> None:
    write_table(items, ITEMS, tmp / "data")
    write_table(_requests(items), REQUESTS, tmp / "data")
    embed(HASH, tmp / "data", tmp / "cache", tmp / "emb", show_progress=False)


def test_sid_stage_fits_both_methods_and_writes_contracts(tmp_path: Path) -> None:
    items = _items(400, delisted=(5, 6, 7))
    _run(tmp_path, items)
    res = sid(
        SMALL,
        tmp_path / "data",
        tmp_path / "emb",
        tmp_path / "models",
        tmp_path / "sids",
        tmp_path / "reports",
        show_progress=False,
    )
    assert set(res.methods) == {"cq_sid", "rq_vae"}
    assert res.methods["cq_sid"].items == 397 and res.methods["cq_sid"].items_with_queries > 0
    assert res.methods["rq_vae"].items_with_queries == 0  # the baseline has no contrastive term
    health = json.loads((tmp_path / "reports" / "sid_health.json").read_text())
    assert health["cq_sid"]["category_match"] == 1.0
    assert health["rq_vae"]["collision_rate"] == 0.0  # dedup suffix: unique IDs
    assert (tmp_path / "reports" / "sid_cluster_sizes.png").stat().st_size > 1000
    for method in ("cq_sid", "rq_vae"):
        assert (tmp_path / "models" / method / "model.safetensors").exists()
        df = read_table(SID_ASSIGNMENTS, tmp_path / "sids" / method)
        assert len(df) == 397 and not set(df["item_id"]) & {5, 6, 7}
        index = SidIndex.load(tmp_path / "sids" / method)
        index.check()
        assert len(index) == 397 and len(index.sid_vocab_sizes) == 4
    # the forced level-1 code is the category's code
    tok = SidTokenizer.load(tmp_path / "models" / "cq_sid")
    df = read_table(SID_ASSIGNMENTS, tmp_path / "sids" / "cq_sid").merge(
        items[["item_id", "category_id"]], on="item_id"
    )
    known = df[df["category_id"].notna()]
    assert all(tok.category_ids[c[0]] == cat for c, cat in zip(known["codes"], known["category_id"]))


def test_sid_update_adds_new_items_and_removes_delisted(tmp_path: Path) -> None:
    items = _items(300)
    _run(tmp_path, items)
    sid(
        SMALL,
        tmp_path / "data",
        tmp_path / "emb",
        tmp_path / "models",
        tmp_path / "sids",
        tmp_path / "reports",
        show_progress=False,
    )
    before = {m: SidIndex.load(tmp_path / "sids" / m) for m in ("cq_sid", "rq_vae")}
    day2 = pd.concat([_items(300, delisted=(1, 2, 3, 4)), _items(20, start=1000, seed=9)], ignore_index=True)
    _run(tmp_path, day2)
    res = sid_update(
        tmp_path / "data", tmp_path / "emb", tmp_path / "models", tmp_path / "sids", reports_dir=tmp_path / "reports"
    )
    assert res.added == {"cq_sid": 20, "rq_vae": 20} and res.removed == {"cq_sid": 4, "rq_vae": 4}
    tok = SidTokenizer.load(tmp_path / "models" / "cq_sid")
    for method in ("cq_sid", "rq_vae"):
        index = SidIndex.load(tmp_path / "sids" / method)
        index.check()
        assert len(index) == 316 and 1 not in index and 1000 in index
        kept = np.arange(5, 301)
        assert np.array_equal(index.sid_of(kept), before[method].sid_of(kept))  # old items keep their SIDs
        for sid_row in index.sid_of(np.arange(1000, 1020)):
            assert tuple(sid_row) in index.trie
    new = day2[day2["item_id"] >= 1000]
    cq = SidIndex.load(tmp_path / "sids" / "cq_sid").sid_of(new["item_id"].to_numpy())
    known = new["category_id"].notna().to_numpy()
    assert np.all(tok.category_ids[cq[known, 0]] == new["category_id"].to_numpy()[known].astype(int))
    rq = SidIndex.load(tmp_path / "sids" / "rq_vae")
    assert len(np.unique(rq.sid_of(rq.item_ids()), axis=0)) == len(rq)  # still unique after the update
    assert json.loads((tmp_path / "reports" / "sid_health.json").read_text())["cq_sid"]["items"] == 316


def test_stage_is_reproducible(tmp_path: Path) -> None:
    _run(tmp_path, _items(200))
    cfg = SidConfig(**{**SMALL.__dict__, "methods": ("cq_sid",)})
    for run in ("a", "b"):
        sid(
            cfg,
            tmp_path / "data",
            tmp_path / "emb",
            tmp_path / run / "m",
            tmp_path / run / "s",
            tmp_path / run / "r",
            show_progress=False,
        )
    a = read_table(SID_ASSIGNMENTS, tmp_path / "a" / "s" / "cq_sid")
    b = read_table(SID_ASSIGNMENTS, tmp_path / "b" / "s" / "cq_sid")
    assert a.equals(b)


def test_unknown_method_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        sid(SidConfig(methods=("tiger",)), tmp_path, tmp_path, tmp_path, tmp_path, tmp_path)


def test_end_to_end_on_the_tiny_marketplace(tmp_path: Path) -> None:
    market = marketplace.generate_marketplace(marketplace.MarketplaceConfig(preset="tiny"))
    market.save(tmp_path / "data")
    embed(HASH, tmp_path / "data", tmp_path / "cache", tmp_path / "emb", show_progress=False)
    res = sid(
        SMALL,
        tmp_path / "data",
        tmp_path / "emb",
        tmp_path / "models",
        tmp_path / "sids",
        tmp_path / "reports",
        show_progress=False,
    )
    items = read_table(ITEMS, tmp_path / "data")
    listed = items[items["delisted_at"].isna()]
    n_cat = listed["category_id"].dropna().nunique()
    assert res.methods["cq_sid"].items == len(listed) and res.methods["cq_sid"].codebook_sizes[0] == n_cat
    assert res.methods["cq_sid"].items_with_queries > 0  # clicks/purchases in the log feed the InfoNCE
    health = json.loads((tmp_path / "reports" / "sid_health.json").read_text())
    assert health["cq_sid"]["category_match"] == 1.0
    assert health["cq_sid"]["items_per_sid"]["max"] <= SMALL.t_max or health["cq_sid"]["max_suffix"] > 0
    for method in ("cq_sid", "rq_vae"):
        index = SidIndex.load(tmp_path / "sids" / method)
        index.check()
        assert set(index.item_ids()) == set(listed["item_id"])


def test_contrastive_pairs_exclude_the_held_out_days(tmp_path: Path) -> None:
    """With test_days set, only the training period's clicks feed the query-item InfoNCE."""
    from genrecall.data.schema import REQUESTS
    from genrecall.data.split import time_split
    from genrecall.pipeline.embed import load_embeddings
    from genrecall.pipeline.sid import listed_items, query_pairs

    marketplace.generate_marketplace(marketplace.MarketplaceConfig(preset="tiny")).save(tmp_path / "data")
    embed(HASH, tmp_path / "data", tmp_path / "cache", tmp_path / "emb", show_progress=False)
    cfg = SidConfig(**{**SMALL.__dict__, "methods": ("cq_sid",), "test_days": 2})
    res = sid(
        cfg, tmp_path / "data", tmp_path / "emb", tmp_path / "m", tmp_path / "s", tmp_path / "r", show_progress=False
    )
    ids = listed_items(tmp_path / "data")["item_id"].to_numpy()
    emb = load_embeddings(tmp_path / "emb")
    log = read_table(REQUESTS, tmp_path / "data")
    train_pairs = query_pairs(time_split(log, 2).train, ids, emb, cfg.query_signals)
    all_pairs = query_pairs(log, ids, emb, cfg.query_signals)
    assert res.methods["cq_sid"].items_with_queries == len(np.unique(train_pairs.item_index))
    assert len(np.unique(train_pairs.item_index)) < len(np.unique(all_pairs.item_index))
