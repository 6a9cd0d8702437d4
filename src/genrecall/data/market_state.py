"""The synthetic marketplace's state (``Marketplace``: the six contract tables, the hidden simulator
state, the day count) and one day's change (``DayDelta``), with ``apply``, ``save`` and ``load``.
The day loop that makes deltas is ``marketplace.py``; ``traffic.py`` reads the state it simulates on.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from genrecall.data.market_config import NEVER, SIM_TABLES, MarketplaceConfig
from genrecall.data.schema import MARKETPLACE_TABLES, TableSpec, write_table
from genrecall.data.simkit import arrow_to_pandas, concat_rows, to_ts, to_us


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
        items = concat_rows(self.items, delta.new_items)
        ids = items["item_id"].to_numpy()
        gone = to_us(items["delisted_at"])
        gone[np.searchsorted(ids, delta.delisted["item_id"].to_numpy())] = to_us(delta.delisted["delisted_at"])
        last = delta.price_events.drop_duplicates("item_id", keep="last")  # events are sorted by ts
        pos = np.searchsorted(ids, last["item_id"].to_numpy())
        price = items["price"].to_numpy().copy()
        price[pos] = last["price"].to_numpy()
        upd = to_us(items["updated_at"])
        upd[pos] = np.maximum(upd[pos], to_us(last["ts"]))
        upd = np.where(gone != NEVER, np.maximum(upd, gone), upd)
        items["price"], items["delisted_at"], items["updated_at"] = price, to_ts(gone), to_ts(upd)
        return dataclasses.replace(
            self,
            items=items,
            days=self.days + 1,
            price_events=concat_rows(self.price_events, delta.price_events),
            users=concat_rows(self.users, delta.new_users),
            requests=concat_rows(self.requests, delta.requests),
            ground_truth=concat_rows(self.ground_truth, delta.ground_truth),
            brands=concat_rows(self.brands, delta.new_brands),
            item_truth=concat_rows(self.item_truth, delta.new_item_truth),
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
        conf: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        frames = {t.name: _read(t, directory) for t in MARKETPLACE_TABLES}
        sim = {s.name: _read(s, directory / "sim") for s in SIM_TABLES}
        return cls(
            MarketplaceConfig(**conf),
            **frames,
            leaves=sim["sim_leaves"],
            brands=sim["sim_brands"],
            item_truth=sim["sim_items"],
            days=int(meta["days"]),
        )


_SPECS = {t.name: t for t in MARKETPLACE_TABLES}


def _read(spec: TableSpec, directory: Path) -> pd.DataFrame:
    """A saved table in the simulator's own dtypes (Arrow-backed lists, as ``conform`` makes them),
    read straight from Arrow: turning 10^5-10^6 list cells into Python lists and back cost seconds."""
    path = directory / spec.filename()
    if not path.exists():
        raise FileNotFoundError(f"no {spec.name!r} table at {path}")
    return arrow_to_pandas(pq.read_table(path, columns=spec.columns).cast(spec.schema).combine_chunks())
