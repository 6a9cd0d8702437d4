"""The synthetic marketplace: determinism, daily churn, the table contracts and the simulated log."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrecall.data import vocab
from genrecall.data.marketplace import Marketplace, MarketplaceConfig, generate_marketplace, next_day
from genrecall.data.schema import MARKETPLACE_TABLES, read_table
from genrecall.pipeline.generate import extend, generate

CFG = MarketplaceConfig(preset="tiny", seed=3)
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def market() -> Marketplace:
    return generate_marketplace(CFG)


def _bytes(directory: Path) -> dict[str, bytes]:
    return {t.name: (directory / t.filename()).read_bytes() for t in MARKETPLACE_TABLES}


def test_same_seed_gives_identical_parquet_and_another_seed_differs(market, tmp_path):
    market.save(tmp_path / "a")
    generate_marketplace(CFG).save(tmp_path / "b")
    generate_marketplace(dataclasses.replace(CFG, seed=4)).save(tmp_path / "c")
    a, b, c = _bytes(tmp_path / "a"), _bytes(tmp_path / "b"), _bytes(tmp_path / "c")
    assert a == b
    assert all(a[name] != c[name] for name in ("items", "users", "requests", "ground_truth"))


def test_next_day_continues_byte_identically_and_after_load(tmp_path):
    short = generate_marketplace(dataclasses.replace(CFG, days=2))
    short.save(tmp_path / "short")
    continued = short.apply(next_day(short, 2))
    continued.save(tmp_path / "continued")
    generate_marketplace(dataclasses.replace(CFG, days=3)).save(tmp_path / "long")
    assert _bytes(tmp_path / "continued") == _bytes(tmp_path / "long")
    # from disk: the same next day (the daily rebuild runs this way)
    loaded = Marketplace.load(tmp_path / "short")
    assert loaded.days == 2
    d1, d2 = next_day(short), next_day(loaded)
    pd.testing.assert_frame_equal(d1.requests, d2.requests)
    pd.testing.assert_frame_equal(d1.ground_truth, d2.ground_truth)
    pd.testing.assert_frame_equal(d1.new_items, d2.new_items)
    with pytest.raises(ValueError):
        next_day(short, 5)  # days must come in order


def test_category_tree_has_three_levels_and_unknown_share(market):
    cats = market.categories.set_index("category_id")
    assert set(cats["level"]) == {1, 2, 3}
    leaves = cats[cats["level"] == 3]
    assert (cats.loc[leaves["parent_id"], "level"].to_numpy() == 2).all()
    assert (cats.loc[cats.loc[leaves["parent_id"], "parent_id"], "level"].to_numpy() == 1).all()
    assert leaves["noun"].notna().all() and all(len(s) > 0 for s in leaves["synonyms"])
    items = market.items
    known = items["category_id"].dropna().astype(int)
    assert set(known) <= set(leaves.index)
    share = items["category_id"].isna().mean()
    assert 0.01 <= share <= 0.06, share  # param 0.03 on ~650 items


def test_daily_churn_new_items_delistings_and_prices(market):
    items, start = market.items, pd.Timestamp(CFG.start_date, tz="UTC")
    for d in range(market.days):
        d0 = start + d * DAY
        listed = ((items["listed_at"] < d0) & (items["delisted_at"].isna() | (items["delisted_at"] >= d0))).sum()
        new = ((items["listed_at"] >= d0) & (items["listed_at"] < d0 + DAY)).sum()
        assert 0.01 - 1 / listed <= new / listed <= 0.03 + 1 / listed, (d, new, listed)
    gone = items["delisted_at"].notna()
    assert gone.sum() > 0 and (items.loc[gone, "delisted_at"] > items.loc[gone, "listed_at"]).all()
    # items.price is the latest price event; updated_at is at least that event's time
    pe = market.price_events
    changes = pe.groupby("item_id").size()
    assert (changes > 1).sum() > 0
    last = pe.sort_values("ts", kind="stable").groupby("item_id").last()
    merged = items.set_index("item_id").join(last, rsuffix="_event")
    assert np.allclose(merged["price"], merged["price_event"])
    assert (merged["updated_at"] >= merged["ts"]).all()
    assert set(pe["item_id"]) == set(items["item_id"])


def test_log_contracts_exposures_clicks_purchases(market):
    req = market.requests
    items = market.items.set_index("item_id")
    n_exp = req["exposed"].map(len)
    assert n_exp.between(*CFG.exposures).all()
    for exp, clk, buy in zip(req["exposed"], req["clicked"], req["purchased"]):
        assert len(set(exp)) == len(exp)
        assert set(buy) <= set(clk) <= set(exp)
    shown = req[["ts", "exposed"]].explode("exposed").join(items, on="exposed")
    assert (shown["listed_at"] <= shown["ts"]).all()
    assert (shown["delisted_at"].isna() | (shown["delisted_at"] > shown["ts"])).all()  # never after delisting
    assert 0.3 < req["clicked"].map(len).mean() < 3.0
    assert 0 < req["purchased"].map(len).sum() < req["clicked"].map(len).sum()
    anon = req["user_id"].isna().mean()
    assert 0.015 <= anon <= 0.07, anon  # param 0.04 on 2000 requests
    assert set(req["query_kind"]) == set(vocab.QUERY_KINDS)
    brands = set(market.items["brand"])
    assert set(req.loc[req["query_kind"] == "brand", "query"]) <= {b.lower() for b in brands}
    assert req["request_id"].is_monotonic_increasing and req["ts"].is_monotonic_increasing


def test_ground_truth_is_listed_and_matches_the_intent(market):
    gt = market.ground_truth.merge(market.requests[["request_id", "ts", "exposed", "clicked"]], on="request_id")
    items = market.items.set_index("item_id")
    leaf_of = market.item_truth.set_index("item_id")["leaf_id"]
    assert len(gt) == len(market.requests) and (gt["relevant"].map(len) > 0).all()
    rel = gt[["request_id", "intent_category_id", "ts", "relevant"]].explode("relevant")
    rel = rel.join(items, on="relevant").join(leaf_of, on="relevant")
    assert (rel["leaf_id"] == rel["intent_category_id"]).all()  # the item's true leaf is the intent's
    known = rel["category_id"].notna()
    assert (rel.loc[known, "category_id"] == rel.loc[known, "intent_category_id"]).all()
    assert (rel["listed_at"] <= rel["ts"]).all()
    assert (rel["delisted_at"].isna() | (rel["delisted_at"] > rel["ts"])).all()
    hits = sum(len(set(r) & set(c)) for r, c in zip(gt["relevant"], gt["clicked"]))
    # clicks go mostly, not only, to items that satisfy the intent
    n_clicks = gt["clicked"].map(len).sum()
    assert 0.3 < hits / n_clicks < 0.95


def test_clicks_depend_on_the_users_profile(market):
    """Affinity brands and a fitting price tier get clicked more often at the same rank."""
    req = market.requests.dropna(subset=["user_id"]).merge(market.users, on="user_id")
    brand = market.items.set_index("item_id")["brand"]
    shown = liked_shown = clicks = liked_clicks = 0
    for exp, clk, aff in zip(req["exposed"], req["clicked"], req["brand_affinity"]):
        top = exp[:5]  # similar examination probability
        liked = {i for i in top if brand[i] in set(aff)}
        liked_shown += len(liked)
        shown += len(top) - len(liked)
        liked_clicks += len(liked & set(clk))
        clicks += len(set(top) & set(clk)) - len(liked & set(clk))
    assert liked_shown > 50
    assert liked_clicks / liked_shown > 1.3 * clicks / shown


def test_pipeline_stage_writes_tables_and_extends(tmp_path):
    cfg = dataclasses.replace(CFG, days=2)
    res = generate(cfg, tmp_path, show_progress=False)
    assert res.days == 2 and set(res.rows) == {t.name for t in MARKETPLACE_TABLES}
    for t in MARKETPLACE_TABLES:
        assert len(read_table(t, tmp_path)) == res.rows[t.name]
    res2 = extend(tmp_path, 1, show_progress=False)
    assert res2.days == 3 and res2.rows["requests"] > res.rows["requests"]
    assert (tmp_path / "generate.json").exists()
