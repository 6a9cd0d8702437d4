"""The synthetic marketplace's sizes and knobs (``Preset``, ``MarketplaceConfig``) and the schemas of
its hidden simulator state (saved under ``sim/``, apart from the log contract). See ``marketplace.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from genrecall.data import vocab
from genrecall.data.schema import TS, TableSpec

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
SIM_LEAVES = TableSpec(
    "sim_leaves",
    pa.schema(
        [
            ("category_id", pa.int32()),
            ("top_id", pa.int32()),
            ("mid_id", pa.int32()),
            ("top", pa.string()),
            ("mid", pa.string()),
            ("noun", pa.string()),
            ("synonyms", pa.list_(pa.string())),
            ("domain", pa.string()),
            ("audience", pa.string()),
            ("price_level", pa.float64()),
            ("popularity", pa.float64()),
            ("gender_lean", pa.float64()),
            ("age_lean", pa.float64()),
            *[(a, pa.list_(pa.string())) for a in vocab.ATTRIBUTE_NAMES],
        ]
    ),
    ("category_id",),
)
SIM_BRANDS = TableSpec(
    "sim_brands",
    pa.schema(
        [
            ("brand", pa.string()),
            ("tier", pa.int8()),
            ("weight", pa.float64()),
            ("tops", pa.list_(pa.int32())),
            ("created_at", TS),
        ]
    ),
    ("brand",),
)
SIM_ITEMS = TableSpec(
    "sim_items",
    pa.schema(
        [
            ("item_id", pa.int64()),
            ("leaf_id", pa.int32()),
            ("gender_lean", pa.float64()),
            ("age_lean", pa.float64()),
            ("quality", pa.float64()),
        ]
    ),
    ("item_id",),
)
SIM_TABLES = (SIM_LEAVES, SIM_BRANDS, SIM_ITEMS)
