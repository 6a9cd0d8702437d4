"""``genrecall export``: the simulator's days as a shop would deliver them, to point the sources at.

Day ``d`` of the simulator becomes the partition ``<root>/date=<start_date + d>/`` in the files layout
(``files.py``): day 0 carries the catalog, the users and the price history as they stand at its end,
with its log; each later day carries the items it touched (new, delisted, repriced: their full
current rows), its price events, its new users and its log. With a database URL the catalog (the
state after the last exported day) goes to the database instead (``sql.py``) and the partitions hold
only the log. Partitions already in the landing directory are kept as they are (a landing directory
is append-only); the database is rewritten, as a shop's database simply moves on. Exporting days
0..4, then 0..5, is how the tests advance a shop by one day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genrecall.data import schema as S
from genrecall.data.marketplace import DayDelta, Marketplace, MarketplaceConfig, init_marketplace, next_day
from genrecall.data.sources.base import CATALOG_TABLES
from genrecall.data.sources.contract import to_csv_frame
from genrecall.data.sources.files import FORMATS


@dataclass
class ExportResult:
    """What the export wrote: partitions (new and kept), rows per table, the database's rows."""

    root: str
    days: int
    written: list[str] = field(default_factory=list)  # dates of partitions written now
    kept: list[str] = field(default_factory=list)  # dates already there, left as they were
    rows: dict[str, int] = field(default_factory=dict)  # rows written to the landing directory, per table
    sql_rows: dict[str, int] = field(default_factory=dict)  # rows written to the database, per table


def _day_tables(delta: DayDelta, after: Marketplace) -> dict[str, pa.Table]:
    if delta.day == 0:  # the first partition: everything as it stands at the end of day 0
        return {t.name: S.to_arrow(df, t) for t, df in zip(S.MARKETPLACE_TABLES, after.tables().values())}
    touched = np.union1d(
        np.union1d(delta.new_items["item_id"], delta.delisted["item_id"]), delta.price_events["item_id"]
    )
    frames = {
        S.ITEMS: after.items[after.items["item_id"].isin(touched)].reset_index(drop=True),
        S.PRICE_EVENTS: delta.price_events,
        S.USERS: delta.new_users,
        S.REQUESTS: delta.requests,
        S.GROUND_TRUTH: delta.ground_truth,
    }
    return {spec.name: S.to_arrow(df.reset_index(drop=True), spec) for spec, df in frames.items()}


def export(
    cfg: MarketplaceConfig,
    root: str,
    *,
    days: int | None = None,
    fmt: str = "parquet",
    sql_url: str | None = None,
    ground_truth: bool = True,
) -> ExportResult:
    """Simulate ``days`` days (default: the preset's) and write them to ``root`` (and ``sql_url``)."""
    from genrecall.data.sources.sql import write_catalog

    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {FORMATS}")
    days = cfg.sizes().days if days is None else days
    fs, base = fsspec.core.url_to_fs(root)
    fs.makedirs(base, exist_ok=True)
    result = ExportResult(root, days)
    market = init_marketplace(cfg)
    first = date.fromisoformat(cfg.start_date)
    log_only = sql_url is not None
    for d in range(days):
        delta = next_day(market)
        after = market.apply(delta)
        when = str(first + timedelta(days=d))
        part = f"{base}/date={when}"
        if fs.exists(part):
            result.kept.append(when)
        else:
            tables = _day_tables(delta, after)
            tmp = f"{base}/_tmp-date={when}"  # names starting with _ are ignored by readers until the move
            fs.makedirs(tmp, exist_ok=True)
            skip = set(CATALOG_TABLES if log_only else ()) | (set() if ground_truth else {"ground_truth"})
            for name, table in tables.items():
                if name in skip:
                    continue
                with fs.open(f"{tmp}/{name}.{fmt}", "wb") as f:
                    if fmt == "parquet":
                        pq.write_table(table, f)
                    else:
                        to_csv_frame(table).to_csv(f, index=False)
                result.rows[name] = result.rows.get(name, 0) + table.num_rows
            fs.mv(tmp, part, recursive=True)
            result.written.append(when)
        market = after
    if sql_url is not None:
        catalog = {t.name: S.to_arrow(df, t) for t, df in zip(S.MARKETPLACE_TABLES, market.tables().values())}
        result.sql_rows = write_catalog(sql_url, {n: catalog[n] for n in CATALOG_TABLES})
    return result
