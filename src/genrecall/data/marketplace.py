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
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from genrecall.data import vocab
from genrecall.data.schema import (
    CATEGORIES, GROUND_TRUTH, ITEMS, MARKETPLACE_TABLES, PRICE_EVENTS, REQUESTS, TS, USERS, TableSpec,
    read_table, write_table,
)

DAY_US = 86_400_000_000
NEVER = np.iinfo(np.int64).max  # "not delisted" as a timestamp in microseconds


@dataclass(frozen=True)
class Preset:
    """Sizes of one preset. ``tops``/``mids``/``leaves`` trim the tree (None = the whole vocabulary)."""

    items: int
    users: int
    requests_per_day: int
    days: int
    brands: int
    tops: tuple[int, ...] | None = None  # indices into vocab.TREE
    mids: int | None = None  # middle categories per top
    leaves: int | None = None  # leaves per middle category (before audience split)


PRESETS: dict[str, Preset] = {
    # tests: a few seconds; 6 tops, 32 leaves
    "tiny": Preset(600, 100, 400, 5, 40, tops=(0, 4, 7, 8, 11, 17), mids=2, leaves=2),
    # the default demo: 20 tops, ~240 leaves, ~60k requests over two weeks
    "small": Preset(20_000, 5_000, 4_300, 14, 600),
    "medium": Preset(100_000, 25_000, 21_500, 14, 2_000),
    # benchmarks: 1M items; requests scaled far less than items (ground truth grows with leaf size)
    "large": Preset(1_000_000, 200_000, 20_000, 14, 8_000),
}


@dataclass(frozen=True)
class MarketplaceConfig:
    """Every knob of the simulator. Sizes come from ``preset`` unless overridden here."""

    preset: str = "small"  # tiny | small | medium | large (PRESETS)
    seed: int = 42  # everything is a function of (seed, day)
    start_date: str = "2026-01-01"  # day 0 (UTC); the initial catalog is listed in the 180 days before
    days: int | None = None  # simulated days of traffic; None = the preset's
    items: int | None = None  # initial catalog size; None = the preset's
    users: int | None = None  # initial users; None = the preset's
    requests_per_day: int | None = None  # None = the preset's
    unknown_category_share: float = 0.03  # items with category_id null (issue: "a few percent")
    anonymous_share: float = 0.04  # requests with user_id null (logged-out shoppers)
    new_item_rate: tuple[float, float] = (0.01, 0.03)  # daily new items, uniform in this share range
    delist_rate: float = 0.01  # daily share of listed items delisted (low quality goes first)
    price_change_rate: float = 0.02  # daily share of listed items with a price change
    new_brand_rate: float = 0.002  # expected new brands per day as a share of brands (Poisson)
    new_user_rate: float = 0.003  # daily new users as a share of users
    exposures: tuple[int, int] = (10, 20)  # items the simulated ranker shows per request (inclusive)
    query_mix: tuple[float, ...] = (0.14, 0.18, 0.22, 0.12, 0.07, 0.12, 0.15)  # shares of vocab.QUERY_KINDS
    interest_share: float = 0.85  # P(a known user's intent is in one of their category interests)
    synonym_in_title: float = 0.12  # P(a title says a synonym instead of the noun)
    cross_leaf_title: float = 0.15  # P(a title names a sibling leaf's noun: "... for Running Shoes")
    title_typo_rate: float = 0.03  # P(a title carries one typo)
    preference_weight: float = 1.0  # scales profile effects on clicks (0 = clicks ignore the user)
    position_bias: float = 0.8  # P(examine rank r) = (1 / (1 + r)) ** position_bias

    def sizes(self) -> Preset:
        """The preset with this config's overrides applied."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        over = {k: getattr(self, k) for k in ("items", "users", "requests_per_day", "days")}
        return dataclasses.replace(PRESETS[self.preset], **{k: v for k, v in over.items() if v is not None})

    def start_us(self) -> int:
        return int(pd.Timestamp(self.start_date, tz="UTC").value // 1000)


# Hidden simulator state: not part of the log contract, saved under <dir>/sim/.
SIM_LEAVES = TableSpec("sim_leaves", pa.schema([
    ("category_id", pa.int32()), ("top_id", pa.int32()), ("mid_id", pa.int32()), ("top", pa.string()),
    ("mid", pa.string()), ("noun", pa.string()), ("synonyms", pa.list_(pa.string())), ("domain", pa.string()),
    ("audience", pa.string()), ("price_level", pa.float64()), ("popularity", pa.float64()),
    ("gender_lean", pa.float64()), ("age_lean", pa.float64()),
    *[(a, pa.list_(pa.string())) for a in vocab.ATTRIBUTE_NAMES],
]), ("category_id",))
SIM_BRANDS = TableSpec("sim_brands", pa.schema([
    ("brand", pa.string()), ("tier", pa.int8()), ("weight", pa.float64()), ("tops", pa.list_(pa.int32())),
    ("created_at", TS),
]), ("brand",))
SIM_ITEMS = TableSpec("sim_items", pa.schema([
    ("item_id", pa.int64()), ("leaf_id", pa.int32()), ("gender_lean", pa.float64()),
    ("age_lean", pa.float64()), ("quality", pa.float64()),
]), ("item_id",))
SIM_TABLES = (SIM_LEAVES, SIM_BRANDS, SIM_ITEMS)


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
        paths = {name: write_table(_plain(df), _SPECS[name], directory) for name, df in self.tables().items()}
        for spec, df in zip(SIM_TABLES, (self.leaves, self.brands, self.item_truth)):
            write_table(_plain(df), spec, directory / "sim")
        meta = {"config": dataclasses.asdict(self.cfg), "days": self.days}
        (directory / "sim" / "marketplace.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return paths

    @classmethod
    def load(cls, directory: str | Path) -> Marketplace:
        """Read what ``save`` wrote; ``next_day`` continues from it exactly as from the original."""
        directory = Path(directory)
        meta = json.loads((directory / "sim" / "marketplace.json").read_text())
        conf = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        frames = {t.name: _conform(read_table(t, directory), t) for t in MARKETPLACE_TABLES}
        sim = {s.name: _conform(read_table(s, directory / "sim"), s) for s in SIM_TABLES}
        return cls(MarketplaceConfig(**conf), **frames, leaves=sim["sim_leaves"], brands=sim["sim_brands"],
                   item_truth=sim["sim_items"], days=int(meta["days"]))


_SPECS = {t.name: t for t in MARKETPLACE_TABLES}


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
    categories, leaves = _build_tree(rng, size)
    pool = _brand_pool(cfg.seed)
    brands = _make_brands(rng, pool[: size.brands], leaves, np.full(size.brands, start - 365 * DAY_US), None)
    listed = np.sort(start - rng.integers(1, 180 * DAY_US, size.items))
    items, truth, prices = _make_items(rng, cfg, np.arange(1, size.items + 1), listed, leaves, brands)
    created = np.sort(start - rng.integers(1, 365 * DAY_US, size.users))
    users = _make_users(rng, np.arange(size.users), created, leaves, brands)
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
    pool = _brand_pool(cfg.seed)[len(market.brands): len(market.brands) + n_brands]
    new_brands = _make_brands(rng, pool, market.leaves, np.full(n_brands, d0), market.brands)
    brands = _concat(market.brands, new_brands)
    # new items: 1-3 % of the listed catalog, listed during the day
    n_new = int(round(rng.uniform(*cfg.new_item_rate) * len(listed)))
    next_id = int(items["item_id"].iloc[-1]) + 1 if len(items) else 1
    new_items, new_truth, listing_prices = _make_items(
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
    new_users = _make_users(rng, np.arange(len(market.users), len(market.users) + n_users),
                            np.sort(d0 + rng.integers(0, DAY_US, n_users)), market.leaves, brands)
    delta = DayDelta(day, new_items, new_truth, delisted, prices, new_brands, new_users,
                     _empty(REQUESTS), _empty(GROUND_TRUTH))
    during = market.apply(delta)  # the catalog as it is during the day (traffic not yet added)
    delta.requests, delta.ground_truth = _simulate_requests(_rng(cfg, day, 1), during, d0, size.requests_per_day)
    return delta


# ---------------------------------------------------------------------------------------------------
# Catalog: tree, brands, items, titles, users
# ---------------------------------------------------------------------------------------------------


def _build_tree(rng: np.random.Generator, size: Preset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CATEGORIES (ids: tops, then mids, then leaves) and the leaves' hidden properties."""
    tops = [vocab.TREE[i] for i in (size.tops or range(len(vocab.TREE)))]
    cats: list[dict] = [dict(category_id=i + 1, parent_id=None, level=1, name=t.name, path=t.name, noun=None,
                             synonyms=None) for i, t in enumerate(tops)]
    mids = []
    for ti, t in enumerate(tops):
        for name, spec in list(t.mids.items())[: size.mids]:
            mids.append((ti, len(cats) + 1, name, spec))
            cats.append(dict(category_id=len(cats) + 1, parent_id=ti + 1, level=2, name=name,
                             path=f"{t.name} > {name}", noun=None, synonyms=None))
    leaves: list[dict] = []
    for ti, mid_id, mid_name, spec in mids:
        top = tops[ti]
        for leaf_spec in spec.split(";")[: size.leaves]:
            noun, syns, base = (x.strip() for x in leaf_spec.split("|"))
            for aud in top.audiences or ("",):
                name = f"{aud} {vocab.cap(noun)}".strip()
                cid = len(cats) + 1
                cats.append(dict(category_id=cid, parent_id=mid_id, level=3, name=name,
                                 path=f"{top.name} > {mid_name} > {name}", noun=noun,
                                 synonyms=[s.strip() for s in syns.split(",")]))
                g, a = vocab.AUDIENCE_LEANS.get(aud, (0.5 * top.gender_lean, 0.5 * top.age_lean))
                row = dict(category_id=cid, top_id=ti + 1, mid_id=mid_id, top=top.name, mid=mid_name, noun=noun,
                           synonyms=cats[-1]["synonyms"], domain=top.domain, audience=aud,
                           price_level=float(base) * float(np.exp(rng.normal(0, 0.15))),
                           popularity=float(np.exp(rng.normal(0, 0.7))), gender_lean=g, age_lean=a)
                for attr, (lo, hi) in zip(vocab.ATTRIBUTE_NAMES, ((4, 8), (3, 6), (3, 6), (4, 7))):
                    words = vocab.ATTRIBUTES[top.domain][attr]
                    pick = np.sort(rng.choice(len(words), min(len(words), int(rng.integers(lo, hi + 1))), replace=False))
                    row[attr] = [words[j] for j in pick]
                leaves.append(row)
    return _conform(pd.DataFrame(cats), CATEGORIES), _conform(pd.DataFrame(leaves), SIM_LEAVES)


_POOLS: dict[int, tuple[str, ...]] = {}


def _brand_pool(seed: int) -> tuple[str, ...]:
    """Every synthetic brand name, in a seeded order: brands are taken from the front."""
    if seed not in _POOLS:
        names = [h + t for h in vocab.BRAND_HEADS for t in vocab.BRAND_TAILS]
        names += [h + m + t for h in vocab.BRAND_HEADS for m in vocab.BRAND_MIDS for t in vocab.BRAND_TAILS]
        names = list(dict.fromkeys(names))
        _POOLS[seed] = tuple(names[i] for i in np.random.default_rng([seed, 0, 999]).permutation(len(names)))
    return _POOLS[seed]


def _make_brands(rng: np.random.Generator, names: tuple[str, ...], leaves: pd.DataFrame, created_us: np.ndarray,
                 existing: pd.DataFrame | None) -> pd.DataFrame:
    """Brands with a price tier, a Zipf weight and 1-3 top categories (the biggest span 4-6)."""
    n = len(names)
    if n == 0:
        return _empty(SIM_BRANDS)
    top_ids = np.unique(leaves["top_id"].to_numpy())
    tier = rng.choice(3, n, p=vocab.BRAND_TIER_SHARES)
    if existing is None:  # names come in random order, so rank = position
        weight = (1.0 + np.arange(n)) ** -0.8
    else:  # a newcomer sells like an established mid-table brand
        weight = np.quantile(existing["weight"].to_numpy(), 0.9) * rng.uniform(0.5, 1.0, n)
    u = rng.random(n)
    n_tops = 1 + (u < 0.35) + (u < 0.10)
    if existing is None:
        n_tops[: max(1, n // 33)] = rng.integers(4, 7, max(1, n // 33))  # umbrella brands
    order = np.argsort(rng.random((n, len(top_ids))), axis=1)
    tops = [[int(top_ids[j]) for j in order[i, : min(n_tops[i], len(top_ids))]] for i in range(n)]
    df = pd.DataFrame({"brand": list(names), "tier": tier.astype(np.int8), "weight": weight, "tops": tops,
                       "created_at": _ts(created_us)})
    return _conform(df, SIM_BRANDS)


def _make_items(rng: np.random.Generator, cfg: MarketplaceConfig, ids: np.ndarray, listed_us: np.ndarray,
                leaves: pd.DataFrame, brands: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """New items (ITEMS rows), their hidden truth (SIM_ITEMS rows) and listing prices (PRICE_EVENTS)."""
    n, n_leaves = len(ids), len(leaves)
    if n == 0:
        return _empty(ITEMS), _empty(SIM_ITEMS), _empty(PRICE_EVENTS)
    pop = leaves["popularity"].to_numpy()
    leaf = rng.choice(n_leaves, n, p=pop / pop.sum())
    top = leaves["top_id"].to_numpy()[leaf]
    # brand: Zipf-weighted among the brands selling in the item's top category
    b_top, b_idx = _flat(brands["tops"])
    b_weight = brands["weight"].to_numpy()
    brand = np.zeros(n, dtype=np.int64)
    for t in np.unique(top):
        cand = b_idx[b_top == t]
        if len(cand) == 0:
            cand = np.arange(len(brands))
        sel = np.flatnonzero(top == t)
        w = b_weight[cand]
        brand[sel] = cand[rng.choice(len(cand), len(sel), p=w / w.sum())]
    # attributes: uniform over the leaf's own words
    attrs = {}
    for a in vocab.ATTRIBUTE_NAMES:
        words, parent = _flat(leaves[a])
        start = np.searchsorted(parent, np.arange(n_leaves))
        count = np.bincount(parent, minlength=n_leaves)
        attrs[a] = words[start[leaf] + (rng.random(n) * count[leaf]).astype(np.int64)]
    tier = brands["tier"].to_numpy()[brand]
    price = _shop_price(leaves["price_level"].to_numpy()[leaf] * np.asarray(vocab.BRAND_TIER_PRICE)[tier]
                        * np.exp(rng.normal(0, 0.3, n)))
    # hidden audience fit: the leaf's audience, nudged by style and colour words
    lean = _leans(attrs["style"]) + 0.5 * _leans(attrs["color"])  # (2, n): gender, age
    g = np.clip(leaves["gender_lean"].to_numpy()[leaf] + lean[0] + rng.normal(0, 0.2, n), -1, 1)
    age = np.clip(leaves["age_lean"].to_numpy()[leaf] + lean[1] + 0.25 * (tier - 1) + rng.normal(0, 0.2, n), -1, 1)
    logw = np.log(b_weight)
    quality = rng.normal(0, 1, n) + 0.3 * (logw[brand] - logw.mean()) / (logw.std() + 1e-9)
    leaf_id = leaves["category_id"].to_numpy()[leaf]
    category = pd.array(np.where(rng.random(n) < cfg.unknown_category_share, -1, leaf_id), dtype="Int32")
    category[category == -1] = pd.NA
    brand_names = brands["brand"].to_numpy()[brand]
    titles = _titles(rng, cfg, leaf, leaves, brand_names, attrs)
    listed = _ts(listed_us)
    items = pd.DataFrame({"item_id": ids.astype(np.int64), "title": titles, "brand": brand_names,
                          "category_id": category, **attrs, "price": price, "listed_at": listed,
                          "delisted_at": _ts(np.full(n, NEVER)), "updated_at": listed})
    truth = pd.DataFrame({"item_id": ids.astype(np.int64), "leaf_id": leaf_id.astype(np.int32),
                          "gender_lean": g, "age_lean": age, "quality": quality})
    prices = pd.DataFrame({"item_id": ids.astype(np.int64), "ts": listed, "price": price})
    return _conform(items, ITEMS), _conform(truth, SIM_ITEMS), _conform(prices, PRICE_EVENTS)


def _leans(words: np.ndarray) -> np.ndarray:
    """(2, n) gender and age leans of style/colour words (vocab.LEANS; unlisted words are 0)."""
    codes, uniq = pd.factorize(words)
    table = np.array([vocab.LEANS.get(w, (0.0, 0.0)) for w in uniq]).reshape(-1, 2)
    return table[codes].T


def _titles(rng: np.random.Generator, cfg: MarketplaceConfig, leaf: np.ndarray, leaves: pd.DataFrame,
            brand: np.ndarray, attrs: dict[str, np.ndarray]) -> list[str]:
    """Shop-style titles: brand, some attributes, noun (or a synonym), fillers, model number, noise."""
    n = len(leaf)
    cap = {}  # title-case each distinct word once
    info = [(vocab.cap(nn), [vocab.cap(x) for x in sy], aud, [vocab.cap(x) for x in sb])
            for nn, sy, aud, sb in _leaf_words(leaves)]
    words = {}
    for a in vocab.ATTRIBUTE_NAMES:
        codes, uniq = pd.factorize(attrs[a])
        words[a] = np.asarray([cap.setdefault(w, vocab.cap(w)) for w in uniq], dtype=object)[codes]
    r = rng.random((n, 12))
    ints = rng.integers(0, 1 << 30, (n, 6))
    show = {a: r[:, j] < p for a, j, p in (("style", 1, 0.45), ("color", 2, 0.6), ("material", 3, 0.45), ("size", 4, 0.4))}
    tmpl, abbrevs = vocab.TITLE_TEMPLATES, [(vocab.cap(k), v) for k, v in vocab.ABBREVIATIONS.items()]
    phrases = [vocab.cap(p.replace("{}", "@")).replace("@", "{}") for p in vocab.CROSS_PHRASES]
    out = []
    for i in range(n):
        noun, syns, aud, sibs = info[leaf[i]]
        word = syns[ints[i, 0] % len(syns)] if r[i, 7] < cfg.synonym_in_title and syns else noun
        if aud and r[i, 11] < 0.7:
            word = f"{aud} {word}"
        text = tmpl[ints[i, 1] % len(tmpl)].format(
            brand=brand[i], noun=word, **{a: words[a][i] if show[a][i] else "" for a in show},
            model=f"{brand[i][:2].upper()}-{100 + ints[i, 2] % 9900}" if r[i, 5] < 0.35 else "",
            filler=vocab.FILLERS[ints[i, 3] % len(vocab.FILLERS)] if r[i, 6] < 0.5 else "")
        if sibs and r[i, 8] < cfg.cross_leaf_title:
            text += ", " + phrases[ints[i, 4] % len(phrases)].format(sibs[ints[i, 5] % len(sibs)])
        # tidy what empty slots leave behind: double spaces, " ,", ",,", "- ,"
        text = " ".join(text.split()).replace(" ,", ",").replace(",,", ",").replace(",,", ",")
        text = text.replace("-,", "-").strip(" ,-")
        if r[i, 10] < 0.1:  # one shop abbreviation ("Stainless Steel" -> "SS", "With" -> "w/")
            for k, v in abbrevs:
                if f" {k} " in f" {text} ":
                    text = f" {text} ".replace(f" {k} ", f" {v} ", 1).strip()
                    break
        if r[i, 9] < cfg.title_typo_rate:
            ws = text.split(" ")
            j = ints[i, 4] % len(ws)
            ws[j] = vocab.typo(ws[j], int(ints[i, 5] % 3), r[i, 0])
            text = " ".join(ws)
        out.append(text)
    return out


def _leaf_words(leaves: pd.DataFrame) -> list[tuple[str, list[str], str, list[str]]]:
    """Per leaf position: (noun, synonyms, audience, nouns of sibling leaves in the same middle category)."""
    nouns, mids = leaves["noun"].tolist(), leaves["mid_id"].to_numpy()
    rows = []
    for i, (syns, aud) in enumerate(zip(leaves["synonyms"], leaves["audience"])):
        sibs = sorted({nouns[j] for j in np.flatnonzero(mids == mids[i])} - {nouns[i]})
        rows.append((nouns[i], list(syns), aud, sibs))
    return rows


def _make_users(rng: np.random.Generator, uids: np.ndarray, created_us: np.ndarray, leaves: pd.DataFrame,
                brands: pd.DataFrame) -> pd.DataFrame:
    """USERS rows: gender, age band, price tier (age-dependent), 2-4 top-category interests that fit
    gender and age, and 1-4 affinity brands from those categories that fit the price tier."""
    n = len(uids)
    if n == 0:
        return _empty(USERS)
    gender = rng.choice(3, n, p=vocab.GENDER_SHARES)
    age = rng.choice(len(vocab.AGE_BANDS), n, p=vocab.AGE_BAND_SHARES)
    cum = np.cumsum(np.asarray(vocab.PRICE_TIER_BY_AGE), axis=1)[age]
    tier = np.minimum((rng.random(n)[:, None] > cum).sum(1), 2)
    top_ids, top_of_leaf = np.unique(leaves["top_id"].to_numpy(), return_inverse=True)
    pop = np.bincount(top_of_leaf, leaves["popularity"].to_numpy())
    tg = np.bincount(top_of_leaf, leaves["gender_lean"].to_numpy()) / np.bincount(top_of_leaf)
    ta = np.bincount(top_of_leaf, leaves["age_lean"].to_numpy()) / np.bincount(top_of_leaf)
    g, a = _GENDER_SIGN[gender], _AGE_POS[age]
    logw = np.log(pop)[None] + 1.2 * g[:, None] * tg[None] - 1.0 * np.abs(a[:, None] - ta[None])
    order = np.argsort(-(logw + rng.gumbel(size=logw.shape)), axis=1)  # weighted sampling w/o replacement
    k = np.minimum(rng.integers(2, 5, n), len(top_ids))
    # affinity brands: per slot, a random interest, then a brand of that category near the user's tier
    b_top, b_idx = _flat(brands["tops"])
    b_tier, b_w = brands["tier"].to_numpy()[b_idx], brands["weight"].to_numpy()[b_idx]
    slot_top = top_ids[order[np.arange(n)[:, None], (rng.random((n, 4)) * k[:, None]).astype(np.int64)]]
    picks = np.full((n, 4), -1, dtype=np.int64)
    u = rng.random((n, 4))
    for t in top_ids:
        for ut in range(3):
            sel = (slot_top == t) & (tier[:, None] == ut)
            cand = b_top == t
            if not sel.any() or not cand.any():
                continue
            w = b_w[cand] * np.exp(-1.5 * np.abs(b_tier[cand] - ut))
            cdf = np.cumsum(w) / w.sum()
            picks[sel] = b_idx[cand][np.minimum(np.searchsorted(cdf, u[sel]), len(cdf) - 1)]
    n_aff = rng.integers(1, 5, n)
    names = brands["brand"].to_numpy()
    affinity = [list(dict.fromkeys(names[p] for p in row[:m] if p >= 0)) for row, m in zip(picks, n_aff)]
    df = pd.DataFrame({
        "user_id": [f"u{i:06d}" for i in uids],
        "gender": np.asarray(vocab.GENDERS)[gender], "age_band": np.asarray(vocab.AGE_BANDS)[age],
        "price_tier": np.asarray(vocab.PRICE_TIERS)[tier], "brand_affinity": affinity,
        "category_interests": [top_ids[order[i, : k[i]]].astype(np.int32).tolist() for i in range(n)],
        "created_at": _ts(created_us),
    })
    return _conform(df, USERS)


_GENDER_SIGN = np.array([1.0, -1.0, 0.0])  # f, m, u: sign against an item's gender lean
_AGE_POS = np.linspace(-1.0, 1.0, len(vocab.AGE_BANDS))  # age bands on the same [-1, 1] scale as age leans


# ---------------------------------------------------------------------------------------------------
# Traffic: intents, queries, the ranker's exposures, clicks and purchases
# ---------------------------------------------------------------------------------------------------

_MATCH_COLS = ("brand", *vocab.ATTRIBUTE_NAMES)  # what an intent can constrain, brand first
_INCLUDE_P = np.array([0.25, 0.5, 0.3, 0.3, 0.3])  # P(an intent constrains brand, color, material, size, style)
# How sure the ranker is of the intended leaf, per query kind (vague and brand-only queries are not).
_LEAF_CONF = np.array([1.0, 0.9, 1.0, 1.0, 0.3, 0.3, 0.7])
# Where the ranker's near misses come from, per query kind: (same middle category, same top, same brand).
_NEAR_MIX = np.array([[0.6, 0.25, 0.15]] * 4 + [[0.1, 0.1, 0.8], [0.5, 0.5, 0.0], [0.6, 0.25, 0.15]])
_K_IN, _K_NEAR = 48, 24  # ranker candidates: best in-leaf items + random near misses
_AUD_QUERY = {"Women's": "womens", "Men's": "mens", "Kids'": "kids"}
_VAGUE = {t.name: t.vague for t in vocab.TREE}


def _simulate_requests(rng: np.random.Generator, market: Marketplace, d0: int, n: int
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day of search traffic over the catalog as it is during the day: REQUESTS + GROUND_TRUTH."""
    cfg, items, truth, leaves = market.cfg, market.items, market.item_truth, market.leaves
    lo, hi = _us(items["listed_at"]), _us(items["delisted_at"])
    A = np.flatnonzero((lo < d0 + DAY_US) & (hi > d0))  # items listed at some point of the day
    lo, hi = lo[A], hi[A]
    leaf = np.searchsorted(leaves["category_id"].to_numpy(), truth["leaf_id"].to_numpy()[A])
    mid, top = leaves["mid_id"].to_numpy()[leaf], leaves["top_id"].to_numpy()[leaf]
    factorized = [pd.factorize(items[c].to_numpy()[A]) for c in _MATCH_COLS]
    codes = np.stack([f[0] for f in factorized], axis=1)
    brand_index = pd.Index(factorized[0][1])
    cat_f = np.where(items["category_id"].isna().to_numpy()[A], 0.6, 1.0)  # uncategorised: found less
    q = truth["quality"].to_numpy()[A]
    glean, alean = truth["gender_lean"].to_numpy()[A], truth["age_lean"].to_numpy()[A]
    ppos = np.clip(np.log(items["price"].to_numpy()[A] / leaves["price_level"].to_numpy()[leaf]) / 0.35, -1.5, 1.5)
    leaf_ok = np.bincount(leaf[(lo < d0) & (hi > d0 + DAY_US)], minlength=len(leaves)) > 0  # listed all day

    # who searches, when, with which profile (anonymous shoppers get a random hidden profile)
    ts = np.sort(d0 + rng.integers(0, DAY_US, n))
    users = market.users
    elig = np.flatnonzero(_us(users["created_at"]) < d0)
    act = (np.array([zlib.crc32(u.encode()) for u in users["user_id"].to_numpy()[elig]]) / 2**32 + 0.01) ** -0.6
    uidx = elig[rng.choice(len(elig), n, p=act / act.sum())]
    anon = rng.random(n) < cfg.anonymous_share
    gender = np.where(anon, rng.choice(3, n, p=vocab.GENDER_SHARES),
                      pd.Index(vocab.GENDERS).get_indexer(users["gender"].to_numpy()[uidx]))
    age = np.where(anon, rng.choice(len(_AGE_POS), n, p=vocab.AGE_BAND_SHARES),
                   pd.Index(vocab.AGE_BANDS).get_indexer(users["age_band"].to_numpy()[uidx]))
    tier = np.where(anon, rng.integers(0, 3, n), pd.Index(vocab.PRICE_TIERS).get_indexer(users["price_tier"].to_numpy()[uidx])) - 1.0
    g, a = _GENDER_SIGN[gender], _AGE_POS[age]
    interests = np.where(anon[:, None], -1, _pad(users["category_interests"], 4, None)[uidx])
    aff = np.where(anon[:, None], -1, _pad(users["brand_affinity"], 4, brand_index)[uidx])

    # intent: a top category (mostly an interest), a leaf in it that fits the shopper, some attributes
    kind = rng.choice(len(vocab.QUERY_KINDS), n, p=np.asarray(cfg.query_mix) / np.sum(cfg.query_mix))
    top_ids = np.unique(leaves["top_id"].to_numpy())
    pop = leaves["popularity"].to_numpy() * leaf_ok
    n_int = (interests >= 0).sum(1)
    own = interests[np.arange(n), (rng.random(n) * np.maximum(n_int, 1)).astype(np.int64)]
    top_pop = np.bincount(np.searchsorted(top_ids, leaves["top_id"].to_numpy()), pop, len(top_ids))
    top_r = np.where((rng.random(n) < cfg.interest_share) & (n_int > 0), own,
                     top_ids[rng.choice(len(top_ids), n, p=top_pop / top_pop.sum())])
    aud = leaves["audience"].to_numpy()
    fit = np.ones((n, len(leaves)))
    fit[:, aud == "Women's"] = np.where(g > 0, 1.6, np.where(g < 0, 0.25, 1.0))[:, None]
    fit[:, aud == "Men's"] = np.where(g < 0, 1.6, np.where(g > 0, 0.25, 1.0))[:, None]
    fit[:, aud == "Kids'"] = np.where((a > -0.6) & (a < 0.6), 1.5, 0.4)[:, None]
    w = pop[None] * fit * (leaves["top_id"].to_numpy()[None] == top_r[:, None])
    w[w.sum(1) == 0] = pop  # an interest with nothing listed today: any leaf
    leaf_r = _sample_rows(rng, w)
    include = rng.random((n, 5)) < _INCLUDE_P
    visible = np.zeros((n, 5), dtype=bool)
    brandish = np.isin(kind, [3, 4])
    include[brandish, 0] = visible[brandish, 0] = True
    attrish = (kind == 2) | ((kind == 6) & (rng.random(n) < 0.4))
    for extra in (np.ones(n, dtype=bool), rng.random(n) < 0.3):
        k = 1 + rng.choice(4, n, p=_INCLUDE_P[1:] / _INCLUDE_P[1:].sum())
        sel = np.flatnonzero(attrish & extra)
        include[sel, k[sel]] = visible[sel, k[sel]] = True
    conf = _LEAF_CONF[kind]

    # per intended leaf: the seed item the shopper has in mind, the ground truth, the in-leaf candidates
    seed, intent = np.zeros(n, dtype=np.int64), np.full((n, 5), -1)
    cand_in = np.full((n, _K_IN), -1)
    gt_r, gt_i = [], []
    by_leaf = np.argsort(leaf, kind="stable")
    bounds = np.searchsorted(leaf[by_leaf], np.arange(len(leaves) + 1))
    for l in np.unique(leaf_r):
        R, I = np.flatnonzero(leaf_r == l), by_leaf[bounds[l]: bounds[l + 1]]
        t = ts[R][:, None]
        alive = (lo[I][None] <= t) & (hi[I][None] > t)
        w = alive * np.exp(q[I])[None]
        for k in range(aff.shape[1]):  # affinity brands are distinct, so at most one slot matches
            w *= 1 + 2 * (codes[I, 0][None] == aff[R, k][:, None])
        s = I[_sample_rows(rng, w)]
        seed[R] = s
        it = intent[R] = np.where(include[R], codes[s], -1)
        full, hit = alive.copy(), np.zeros(alive.shape, dtype=np.float32)
        for k in range(len(_MATCH_COLS)):  # 2-D passes: (requests x items) per attribute
            eq = codes[I, k][None] == it[:, k][:, None]
            full &= eq | (it[:, k] < 0)[:, None]
            hit += eq & visible[R, k][:, None]
        rr, cc = np.nonzero(full)
        gt_r.append(R[rr]), gt_i.append(A[I[cc]])
        n_vis = visible[R].sum(1)[:, None]
        vis_frac = np.where(n_vis > 0, hit / np.maximum(n_vis, 1), 1.0)
        pre = conf[R][:, None] * cat_f[I][None] + vis_frac + 0.4 * q[I][None]
        pre = np.where(alive, pre + 0.6 * rng.random(pre.shape, dtype=np.float32), -np.inf)
        keep = np.argpartition(-pre, _K_IN - 1, axis=1)[:, :_K_IN] if len(I) > _K_IN else np.broadcast_to(
            np.arange(len(I)), pre.shape)
        cand_in[R, : keep.shape[1]] = np.where(np.isfinite(np.take_along_axis(pre, keep, 1)), I[keep], -1)

    # near misses: random items of the same middle category, top category or brand
    src = _sample_rows(rng, np.repeat(_NEAR_MIX[kind], _K_NEAR, axis=0)).reshape(n, _K_NEAR)
    u = rng.random((n, _K_NEAR))
    near = np.select([src == 0, src == 1], [_pool_draw(mid, mid[seed][:, None], u), _pool_draw(top, top[seed][:, None], u)],
                     _pool_draw(codes[:, 0], codes[seed, 0][:, None], u))

    # the ranker: relevance to the query + popularity + a little personalization + noise
    C = np.hstack([cand_in, near])
    valid = C >= 0
    C = np.where(valid, C, 0)
    valid &= (lo[C] <= ts[:, None]) & (hi[C] > ts[:, None]) & ~_dup(C, valid)
    stable = np.flatnonzero((lo < d0) & (hi > d0 + DAY_US))
    for _ in range(20):  # tiny leaves: top up short rows with items from anywhere until 10 can be shown
        short = valid.sum(1) < cfg.exposures[0]
        if not short.any():
            break
        extra = np.where(short[:, None], stable[rng.integers(0, len(stable), (n, 8))], 0)
        C, valid = np.hstack([C, extra]), np.hstack([valid, np.repeat(short[:, None], 8, axis=1)])
        valid &= ~_dup(C, valid)
    match = codes[C] == intent[:, None, :]
    leaf_eq = leaf[C] == leaf_r[:, None]
    full = leaf_eq & (match | (intent[:, None, :] < 0)).all(-1)
    liked = (codes[C, 0][:, :, None] == aff[:, None, :]).any(-1)
    price_fit = -np.abs(ppos[C] - tier[:, None])
    rel = (conf[:, None] * leaf_eq * cat_f[C] + 0.3 * (mid[C] == mid[leaf_r][:, None])
           + 0.15 * (top[C] == top_r[:, None]) + _vis_frac(match, visible))
    score = rel + 0.4 * q[C] + 0.3 * liked + 0.2 * price_fit + 0.4 * rng.gumbel(size=C.shape)
    score = np.where(valid, score, -np.inf)
    lo_e, hi_e = cfg.exposures
    n_exp = np.minimum(rng.integers(lo_e, hi_e + 1, n), valid.sum(1))
    rank = np.argsort(-score, axis=1, kind="stable")[:, :hi_e]
    shown = np.arange(hi_e)[None] < n_exp[:, None]
    E, full, liked, price_fit = (np.take_along_axis(x, rank, 1) for x in (C, full, liked, price_fit))
    partial = np.take_along_axis(leaf_eq, rank, 1) & ~full

    # clicks: position-biased examination x attraction (relevance + the shopper's own preferences)
    pref = (liked + (0.35 + 0.7 * price_fit) + 0.9 * g[:, None] * glean[E]
            + (0.3 - 0.6 * np.abs(a[:, None] - alean[E])))
    pw = cfg.preference_weight
    examine = (1.0 / (1.0 + np.arange(hi_e))) ** cfg.position_bias
    click = shown & (rng.random(E.shape) < examine * _sigmoid(-2.0 + 2.2 * full + 1.0 * partial + pw * pref))
    buy = click & (rng.random(E.shape) < _sigmoid(-2.5 + 1.2 * full + 0.6 * pw * pref))

    ids = items["item_id"].to_numpy()[A]
    first = int(market.requests["request_id"].iloc[-1]) + 1 if len(market.requests) else 1
    rid = np.arange(first, first + n, dtype=np.int64)
    gift = np.where(glean[seed] > 0.3, "f", np.where(glean[seed] < -0.3, "m", "u"))
    requests = pd.DataFrame({
        "request_id": rid, "ts": _ts(ts),
        "user_id": np.where(anon, None, users["user_id"].to_numpy()[uidx]),
        "query": _queries(rng, kind, leaf_r, A[seed], visible, gift, leaves, items),
        "query_kind": np.asarray(vocab.QUERY_KINDS)[kind],
        "exposed": _lists(ids[E], shown), "clicked": _lists(ids[E], click), "purchased": _lists(ids[E], buy),
    })
    rows, its = np.concatenate(gt_r), items["item_id"].to_numpy()[np.concatenate(gt_i)]
    order = np.lexsort((its, rows))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    gt = pd.DataFrame({"request_id": rid, "intent_category_id": leaves["category_id"].to_numpy()[leaf_r],
                       "relevant": pd.arrays.ArrowExtensionArray(
                           pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(its[order])))})
    return _conform(requests, REQUESTS), _conform(gt, GROUND_TRUTH)


def _queries(rng: np.random.Generator, kind: np.ndarray, leaf_r: np.ndarray, seed_rows: np.ndarray,
             visible: np.ndarray, gift: np.ndarray, leaves: pd.DataFrame, items: pd.DataFrame) -> list[str]:
    """The query each shopper types for their intent, in the variant ``kind`` (vocab.QUERY_KINDS)."""
    words = _leaf_words(leaves)
    vals = {c: items[c].to_numpy()[seed_rows] for c in _MATCH_COLS}
    top_names, mid_names = leaves["top"].to_numpy(), leaves["mid"].to_numpy()
    r = rng.random((len(kind), 6))
    ints = rng.integers(0, 1 << 30, (len(kind), 4))
    out = []
    for i in range(len(kind)):
        noun, syns, aud, _ = words[leaf_r[i]]
        k = vocab.QUERY_KINDS[kind[i]]
        base = noun
        if syns and (k == "synonym" or (k in ("attr_noun", "brand_noun", "misspelled") and r[i, 0] < 0.4)):
            base = syns[ints[i, 0] % len(syns)]
        if aud and r[i, 1] < 0.35:
            base = f"{_AUD_QUERY[aud]} {base}"
        attrs = [vals[c][i] for j, c in enumerate(_MATCH_COLS) if j > 0 and visible[i, j]]
        brand = vals["brand"][i]
        if k == "brand":
            text = brand
        elif k == "brand_noun":
            text = f"{brand} {base}" if r[i, 2] < 0.7 else f"{base} {brand}"
        elif k == "vague":
            opts = (_VAGUE[top_names[leaf_r[i]]], vocab.GIFT_PHRASES[gift[i]], (mid_names[leaf_r[i]],))
            pick = opts[0 if r[i, 2] < 0.5 else 1 if r[i, 2] < 0.8 else 2]
            text = pick[ints[i, 1] % len(pick)]
        elif attrs:
            text = " ".join([*attrs, base]) if r[i, 3] < 0.75 else " ".join([base, *attrs])
        else:
            text = base
        if k == "misspelled":
            ws = text.split(" ")
            j = max(range(len(ws)), key=lambda x: len(ws[x]))
            ws[j] = vocab.typo(ws[j], int(ints[i, 2] % 3), r[i, 4])
            text = " ".join(ws)
        out.append(text.lower())
    return out


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------


def _rng(cfg: MarketplaceConfig, day: int, stream: int) -> np.random.Generator:
    """The random stream for (seed, day, purpose); day -1 is the initial state."""
    return np.random.default_rng([cfg.seed, day + 1, stream])


def _us(col: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch; NaT (not delisted) becomes NEVER."""
    v = pd.DatetimeIndex(col).as_unit("us").asi8.copy()
    v[v == np.iinfo(np.int64).min] = NEVER
    return v


def _ts(us: np.ndarray) -> pd.arrays.DatetimeArray:
    """int64 microseconds (NEVER = NaT) as a UTC timestamp array."""
    v = np.asarray(us, dtype=np.int64).astype("datetime64[us]")
    v[np.asarray(us) == NEVER] = np.datetime64("NaT")
    return pd.DatetimeIndex(v).tz_localize("UTC").array


def _conform(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """``df`` with exactly the spec's columns and types (lists as Arrow-backed columns, nullable ints)."""
    return _to_pandas(pa.Table.from_pandas(df[spec.columns], schema=spec.schema, preserve_index=False))


def _empty(spec: TableSpec) -> pd.DataFrame:
    return _to_pandas(spec.schema.empty_table())


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    mapper = {pa.int32(): pd.Int32Dtype()}
    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_list(t) else mapper.get(t))


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed list columns as plain object columns of NumPy arrays, so the Parquet's pandas
    metadata says "object" and any reader (``schema.read_table``, plain pandas) gets lists back."""
    out = df.copy(deep=False)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.ArrowDtype):
            out[c] = pa.array(df[c].array).to_pandas().to_numpy()
    return out


def _concat(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Row-append with one Arrow chunk per list column (so the Parquet bytes never depend on history)."""
    out = pd.concat([a, b], ignore_index=True)
    for c in out.columns:
        if isinstance(out[c].dtype, pd.ArrowDtype):
            arr = pa.array(out[c].array)
            arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
            out[c] = pd.arrays.ArrowExtensionArray(arr)
    return out


def _flat(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (all values, index of the row each value came from)."""
    arr = pa.array(col.array) if isinstance(col.dtype, pd.ArrowDtype) else pa.array(list(col))
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return (arr.flatten().to_numpy(zero_copy_only=False),
            pc.list_parent_indices(arr).to_numpy(zero_copy_only=False).astype(np.int64))


def _pad(col: pd.Series, width: int, index: pd.Index | None) -> np.ndarray:
    """A list column as an (n, width) int matrix padded with -1; ``index`` maps values to codes."""
    values, parent = _flat(col)
    out = np.full((len(col), width), -1, dtype=np.int64)
    if len(values):
        codes = index.get_indexer(values) if index is not None else values.astype(np.int64)
        pos = np.arange(len(values)) - np.searchsorted(parent, parent)
        ok = pos < width
        out[parent[ok], pos[ok]] = codes[ok]
    return out


def _sample_rows(rng: np.random.Generator, w: np.ndarray) -> np.ndarray:
    """One column index per row of a non-negative weight matrix (rows must not be all zero)."""
    cdf = np.cumsum(w, axis=1)
    u = rng.random(len(w)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(1), w.shape[1] - 1)


def _pool_draw(keys: np.ndarray, want: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each wanted key, a uniform random position among the positions whose key is equal."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    start, end = np.searchsorted(sk, want, "left"), np.searchsorted(sk, want, "right")
    return order[np.minimum(start + (u * (end - start)).astype(np.int64), len(order) - 1)]


def _dup(C: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """True where a row repeats an item already seen further left in the row."""
    key = np.where(valid, C, -1 - np.arange(C.shape[1])[None])  # invalid cells never collide
    order = np.argsort(key, axis=1, kind="stable")
    s = np.take_along_axis(key, order, 1)
    d = np.zeros_like(valid)
    d[:, 1:] = s[:, 1:] == s[:, :-1]
    out = np.zeros_like(valid)
    np.put_along_axis(out, order, d, 1)
    return out


def _vis_frac(match: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Share of the query's visible attributes an item matches (1 where the query shows none)."""
    n_vis = visible.sum(1)[:, None]
    hit = (match & visible[:, None, :]).sum(-1)
    return np.where(n_vis > 0, hit / np.maximum(n_vis, 1), 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _lists(values: np.ndarray, mask: np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Row-wise ``values[mask]`` as an Arrow list<int64> column, keeping the column order."""
    offsets = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    return pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[mask], pa.int64())))


def _shop_price(p: np.ndarray) -> np.ndarray:
    """Round to shop prices on a 50-cent grid ending in .49 / .99 (never below 0.99)."""
    return np.round(np.ceil(np.maximum(p, 1.0) * 2) / 2 - 0.01, 2)
