"""A synthetic marketplace: catalog, users and a day-by-day search log, deterministic from a seed.

    cfg = MarketplaceConfig(preset="tiny", seed=7)
    market = generate_marketplace(cfg)          # days 0..cfg.days-1
    market.save("data/raw")                     # the six contract tables (+ sim/ hidden state)
    market = market.apply(next_day(market))     # one more simulated day, for the daily rebuild

The model (see docs/DATA.md): a 3-level category tree whose leaves have a noun, synonyms and their own
attribute words; Zipf-popular brands, some spread over several top categories; shop-style noisy
titles; users with gender, age band, price tier, brand affinities and category interests; requests
whose query is one of several variants of a hidden intent (leaf + attributes); a simulated ranker
that exposes 10-20 items; position-biased, preference-driven clicks and purchases. The catalog churns
daily (new items, delistings, price changes, new brands, new users).

``generate_marketplace`` is literally ``init`` followed by ``apply(next_day(...))`` per day, and every
random draw of day ``d`` comes from ``(seed, d)`` and the state, so generating days 0..13 in one go
and generating 0..12 then ``next_day(13)`` give byte-identical Parquet tables.

Hidden simulator state (leaf price levels, brand tiers, each item's true leaf and audience fit) lives
in three extra tables saved under ``sim/``, apart from the log, like GROUND_TRUTH.

This file holds the day loop; the pieces live beside it: ``market_state`` (``Marketplace`` and
``DayDelta``: the state, apply/save/load), ``market_config`` (presets, knobs, hidden-state schemas),
``catalog`` (tree, brands, items, titles, users), ``traffic`` (intents, queries, exposures, clicks,
purchases) and ``simkit`` (small shared helpers).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genrecall.data.catalog import brand_pool, build_tree, make_brands, make_items, make_users
from genrecall.data.market_config import DAY_US, NEVER, PRESETS, SIM_TABLES, MarketplaceConfig, Preset  # noqa: F401 (re-export)
from genrecall.data.market_state import DayDelta, Marketplace
from genrecall.data.schema import GROUND_TRUTH, PRICE_EVENTS, REQUESTS
from genrecall.data.simkit import concat_rows, conform, day_rng, empty_frame, shop_price, to_ts, to_us
from genrecall.data.traffic import simulate_requests


def generate_marketplace(cfg: MarketplaceConfig | None = None, *, progress: bool = False) -> Marketplace:
    """Initial catalog and users, then ``cfg.days`` simulated days (a rich progress bar if asked)."""
    cfg = cfg or MarketplaceConfig()
    market = init_marketplace(cfg)
    days = cfg.sizes().days
    if not progress:
        for _ in range(days):
            market = market.apply(next_day(market))
        return market
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"simulating {days} days ({cfg.preset})", total=days)
        for _ in range(days):
            market = market.apply(next_day(market))
            bar.advance(task)
    return market


def init_marketplace(cfg: MarketplaceConfig) -> Marketplace:
    """Day-0 state: category tree, brands, the initial catalog (listed before start) and users."""
    size, start = cfg.sizes(), cfg.start_us()
    rng = day_rng(cfg, -1, 0)
    categories, leaves = build_tree(rng, size)
    pool = brand_pool(cfg.seed)
    brands = make_brands(rng, pool[: size.brands], leaves, np.full(size.brands, start - 365 * DAY_US), None)
    listed = np.sort(start - rng.integers(1, 180 * DAY_US, size.items))
    items, truth, prices = make_items(rng, cfg, np.arange(1, size.items + 1), listed, leaves, brands)
    created = np.sort(start - rng.integers(1, 365 * DAY_US, size.users))
    users = make_users(rng, np.arange(size.users), created, leaves, brands)
    return Marketplace(
        cfg,
        categories,
        items,
        prices,
        users,
        empty_frame(REQUESTS),
        empty_frame(GROUND_TRUTH),
        leaves,
        brands,
        truth,
        days=0,
    )


def next_day(market: Marketplace, day: int | None = None) -> DayDelta:
    """Simulate day ``market.days`` (pass ``day`` to assert which): churn first, then the day's traffic.

    Deterministic from (seed, day) and the state; ``market.apply(next_day(market))`` is exactly what
    ``generate_marketplace`` does, so a continued marketplace is byte-identical to a longer one.
    """
    day = market.days if day is None else day
    if day != market.days:
        raise ValueError(f"the marketplace is at day {market.days}; cannot simulate day {day}")
    cfg, size = market.cfg, market.cfg.sizes()
    d0 = cfg.start_us() + day * DAY_US
    rng = day_rng(cfg, day, 0)
    items, truth = market.items, market.item_truth
    listed_at = to_us(items["listed_at"])
    listed = np.flatnonzero((to_us(items["delisted_at"]) == NEVER) & (listed_at < d0))
    # new brands (a Poisson handful), launched at the start of the day
    n_brands = rng.poisson(cfg.new_brand_rate * len(market.brands))
    pool = brand_pool(cfg.seed)[len(market.brands) : len(market.brands) + n_brands]
    new_brands = make_brands(rng, pool, market.leaves, np.full(n_brands, d0), market.brands)
    brands = concat_rows(market.brands, new_brands)
    # new items: 1-3 % of the listed catalog, listed during the day
    n_new = round(rng.uniform(*cfg.new_item_rate) * len(listed))
    next_id = int(items["item_id"].iloc[-1]) + 1 if len(items) else 1
    new_items, new_truth, listing_prices = make_items(
        rng,
        cfg,
        np.arange(next_id, next_id + n_new),
        np.sort(d0 + rng.integers(0, DAY_US, n_new)),
        market.leaves,
        brands,
    )
    # delistings: low-quality items go first
    n_del = rng.binomial(len(listed), cfg.delist_rate)
    p = np.exp(-truth["quality"].to_numpy()[listed])
    gone = np.sort(rng.choice(listed, n_del, replace=False, p=p / p.sum()))
    delisted = pd.DataFrame(
        {"item_id": items["item_id"].to_numpy()[gone], "delisted_at": to_ts(d0 + rng.integers(0, DAY_US, n_del))}
    )
    # price changes among items that stay listed all day (mostly small cuts, sometimes a rise)
    stay = np.setdiff1d(listed, gone)
    changed = np.sort(rng.choice(stay, rng.binomial(len(stay), cfg.price_change_rate), replace=False))
    old = items["price"].to_numpy()[changed]
    changes = pd.DataFrame(
        {
            "item_id": items["item_id"].to_numpy()[changed],
            "ts": d0 + rng.integers(0, DAY_US, len(changed)),
            "price": shop_price(old * np.exp(rng.normal(-0.02, 0.1, len(changed)))),
        }
    )
    changes = changes.sort_values(["ts", "item_id"], kind="stable")
    changes["ts"] = to_ts(changes["ts"].to_numpy())
    prices = conform(pd.concat([listing_prices, changes]).sort_values(["ts", "item_id"], kind="stable"), PRICE_EVENTS)
    # new users, who start searching the next day
    n_users = rng.binomial(len(market.users), cfg.new_user_rate)
    new_users = make_users(
        rng,
        np.arange(len(market.users), len(market.users) + n_users),
        np.sort(d0 + rng.integers(0, DAY_US, n_users)),
        market.leaves,
        brands,
    )
    delta = DayDelta(
        day,
        new_items,
        new_truth,
        delisted,
        prices,
        new_brands,
        new_users,
        empty_frame(REQUESTS),
        empty_frame(GROUND_TRUTH),
    )
    during = market.apply(delta)  # the catalog as it is during the day (traffic not yet added)
    delta.requests, delta.ground_truth = simulate_requests(day_rng(cfg, day, 1), during, d0, size.requests_per_day)
    return delta
