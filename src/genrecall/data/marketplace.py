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

This file holds the state and the day loop; the pieces live beside it: ``market_config`` (presets,
knobs, hidden-state schemas), ``catalog`` (tree, brands, items, titles, users), ``traffic`` (intents,
queries, exposures, clicks, purchases) and ``simkit`` (small shared helpers).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from genrecall.data.schema import GROUND_TRUTH, MARKETPLACE_TABLES, PRICE_EVENTS, REQUESTS, TableSpec, write_table
from genrecall.data.market_config import DAY_US, NEVER, PRESETS, SIM_TABLES, MarketplaceConfig, Preset  # noqa: F401 (re-export)
from genrecall.data.simkit import _concat, _conform, _empty, _rng, _shop_price, _to_pandas, _ts, _us
from genrecall.data.catalog import brand_pool, build_tree, make_brands, make_items, make_users
from genrecall.data.traffic import simulate_requests


@dataclass
class DayDelta:
    """Everything one simulated day adds or changes (rows shaped like the contract tables)."""

    day: int
    new_items: pd.DataFrame  # ITEMS rows listed this day
    new_item_truth: pd.DataFrame  # SIM_ITEMS rows of the new items
    delisted: pd.DataFrame  # item_id, delisted_at
    price_events: pd.DataFrame  # PRICE_EVENTS rows: listing prices of new items + price changes
    new_brands: pd.DataFrame  # SIM_BRANDS rows
    new_users: pd.DataFrame  # USERS rows
    requests: pd.DataFrame  # REQUESTS rows of this day
    ground_truth: pd.DataFrame  # GROUND_TRUTH rows of this day


@dataclass
class Marketplace:
    """The six contract tables, the hidden simulator state, and how many days were simulated."""

    cfg: MarketplaceConfig
    categories: pd.DataFrame
    items: pd.DataFrame
    price_events: pd.DataFrame
    users: pd.DataFrame
    requests: pd.DataFrame
    ground_truth: pd.DataFrame
    leaves: pd.DataFrame
    brands: pd.DataFrame
    item_truth: pd.DataFrame
    days: int = 0  # days simulated so far; next_day() makes day number ``days``

    def tables(self) -> dict[str, pd.DataFrame]:
        return {t.name: getattr(self, t.name) for t in MARKETPLACE_TABLES}

    def apply(self, delta: DayDelta) -> Marketplace:
        """A new Marketplace with ``delta`` applied (``delta.day`` must be the next day)."""
        if delta.day != self.days:
            raise ValueError(f"delta is for day {delta.day}, but the marketplace is at day {self.days}")
        items = _concat(self.items, delta.new_items)
        ids = items["item_id"].to_numpy()
        gone = _us(items["delisted_at"])
        gone[np.searchsorted(ids, delta.delisted["item_id"].to_numpy())] = _us(delta.delisted["delisted_at"])
        last = delta.price_events.drop_duplicates("item_id", keep="last")  # events are sorted by ts
        pos = np.searchsorted(ids, last["item_id"].to_numpy())
        price = items["price"].to_numpy().copy()
        price[pos] = last["price"].to_numpy()
        upd = _us(items["updated_at"])
        upd[pos] = np.maximum(upd[pos], _us(last["ts"]))
        upd = np.where(gone != NEVER, np.maximum(upd, gone), upd)
        items["price"], items["delisted_at"], items["updated_at"] = price, _ts(gone), _ts(upd)
        return dataclasses.replace(
            self, items=items, days=self.days + 1,
            price_events=_concat(self.price_events, delta.price_events),
            users=_concat(self.users, delta.new_users),
            requests=_concat(self.requests, delta.requests),
            ground_truth=_concat(self.ground_truth, delta.ground_truth),
            brands=_concat(self.brands, delta.new_brands),
            item_truth=_concat(self.item_truth, delta.new_item_truth),
        )

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write the six tables to ``directory`` and the hidden state to ``directory/sim``."""
        directory = Path(directory)
        # Arrow-backed list columns go to Parquet as they are (no detour through Python lists)
        paths = {name: write_table(df, _SPECS[name], directory) for name, df in self.tables().items()}
        for spec, df in zip(SIM_TABLES, (self.leaves, self.brands, self.item_truth)):
            write_table(df, spec, directory / "sim")
        meta = {"config": dataclasses.asdict(self.cfg), "days": self.days}
        (directory / "sim" / "marketplace.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return paths

    @classmethod
    def load(cls, directory: str | Path) -> Marketplace:
        """Read what ``save`` wrote; ``next_day`` continues from it exactly as from the original."""
        directory = Path(directory)
        meta = json.loads((directory / "sim" / "marketplace.json").read_text())
        conf = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        frames = {t.name: _read(t, directory) for t in MARKETPLACE_TABLES}
        sim = {s.name: _read(s, directory / "sim") for s in SIM_TABLES}
        return cls(MarketplaceConfig(**conf), **frames, leaves=sim["sim_leaves"], brands=sim["sim_brands"],
                   item_truth=sim["sim_items"], days=int(meta["days"]))


_SPECS = {t.name: t for t in MARKETPLACE_TABLES}


def _read(spec: TableSpec, directory: Path) -> pd.DataFrame:
    """A saved table in the simulator's own dtypes (Arrow-backed lists, as ``_conform`` makes them),
    read straight from Arrow: turning 10^5-10^6 list cells into Python lists and back cost seconds."""
    path = directory / spec.filename()
    if not path.exists():
        raise FileNotFoundError(f"no {spec.name!r} table at {path}")
    return _to_pandas(pq.read_table(path, columns=spec.columns).cast(spec.schema).combine_chunks())


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
    rng = _rng(cfg, -1, 0)
    categories, leaves = build_tree(rng, size)
    pool = brand_pool(cfg.seed)
    brands = make_brands(rng, pool[: size.brands], leaves, np.full(size.brands, start - 365 * DAY_US), None)
    listed = np.sort(start - rng.integers(1, 180 * DAY_US, size.items))
    items, truth, prices = make_items(rng, cfg, np.arange(1, size.items + 1), listed, leaves, brands)
    created = np.sort(start - rng.integers(1, 365 * DAY_US, size.users))
    users = make_users(rng, np.arange(size.users), created, leaves, brands)
    return Marketplace(cfg, categories, items, prices, users, _empty(REQUESTS), _empty(GROUND_TRUTH),
                       leaves, brands, truth, days=0)


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
    rng = _rng(cfg, day, 0)
    items, truth = market.items, market.item_truth
    listed_at = _us(items["listed_at"])
    listed = np.flatnonzero((_us(items["delisted_at"]) == NEVER) & (listed_at < d0))
    # new brands (a Poisson handful), launched at the start of the day
    n_brands = rng.poisson(cfg.new_brand_rate * len(market.brands))
    pool = brand_pool(cfg.seed)[len(market.brands): len(market.brands) + n_brands]
    new_brands = make_brands(rng, pool, market.leaves, np.full(n_brands, d0), market.brands)
    brands = _concat(market.brands, new_brands)
    # new items: 1-3 % of the listed catalog, listed during the day
    n_new = int(round(rng.uniform(*cfg.new_item_rate) * len(listed)))
    next_id = int(items["item_id"].iloc[-1]) + 1 if len(items) else 1
    new_items, new_truth, listing_prices = make_items(
        rng, cfg, np.arange(next_id, next_id + n_new), np.sort(d0 + rng.integers(0, DAY_US, n_new)),
        market.leaves, brands)
    # delistings: low-quality items go first
    n_del = rng.binomial(len(listed), cfg.delist_rate)
    p = np.exp(-truth["quality"].to_numpy()[listed])
    gone = np.sort(rng.choice(listed, n_del, replace=False, p=p / p.sum()))
    delisted = pd.DataFrame({"item_id": items["item_id"].to_numpy()[gone],
                             "delisted_at": _ts(d0 + rng.integers(0, DAY_US, n_del))})
    # price changes among items that stay listed all day (mostly small cuts, sometimes a rise)
    stay = np.setdiff1d(listed, gone)
    changed = np.sort(rng.choice(stay, rng.binomial(len(stay), cfg.price_change_rate), replace=False))
    old = items["price"].to_numpy()[changed]
    changes = pd.DataFrame({"item_id": items["item_id"].to_numpy()[changed],
                            "ts": d0 + rng.integers(0, DAY_US, len(changed)),
                            "price": _shop_price(old * np.exp(rng.normal(-0.02, 0.1, len(changed))))})
    changes = changes.sort_values(["ts", "item_id"], kind="stable")
    changes["ts"] = _ts(changes["ts"].to_numpy())
    prices = _conform(pd.concat([listing_prices, changes]).sort_values(["ts", "item_id"], kind="stable"), PRICE_EVENTS)
    # new users, who start searching the next day
    n_users = rng.binomial(len(market.users), cfg.new_user_rate)
    new_users = make_users(rng, np.arange(len(market.users), len(market.users) + n_users),
                            np.sort(d0 + rng.integers(0, DAY_US, n_users)), market.leaves, brands)
    delta = DayDelta(day, new_items, new_truth, delisted, prices, new_brands, new_users,
                     _empty(REQUESTS), _empty(GROUND_TRUTH))
    during = market.apply(delta)  # the catalog as it is during the day (traffic not yet added)
    delta.requests, delta.ground_truth = simulate_requests(_rng(cfg, day, 1), during, d0, size.requests_per_day)
    return delta


