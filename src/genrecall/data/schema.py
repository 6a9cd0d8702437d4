"""Data contracts: the tables genrecall reads and writes, as Arrow schemas.

Every table on disk is a Parquet file whose columns match one of the specs below, in that order.
Stages exchange data only through these tables, so a real log source can replace the synthetic
marketplace by writing the same files.

Conventions (chosen once, used everywhere):
- ``item_id`` is int64 (Home Depot's ``product_uid`` is an integer too); ``user_id`` is a string
  ("u000042"), because HTTP clients pass it as one and anonymous requests carry null.
- Timestamps are UTC, microsecond precision (``timestamp[us, tz=UTC]``).
- A request's ``exposed``/``clicked``/``purchased`` are lists of item ids; the contract is
  purchased ⊆ clicked ⊆ exposed, checked by validation.
- An item whose category is unknown has ``category_id`` null (never a made-up id).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    """One table contract: its name (also the Parquet file stem), schema and primary key."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def filename(self) -> str:
        return f"{self.name}.parquet"


CATEGORIES = TableSpec(
    "categories",
    pa.schema(
        [
            ("category_id", pa.int32()),
            ("parent_id", pa.int32()),  # null for a top-level category
            ("level", pa.int8()),  # 1 = top, 2 = middle, 3 = leaf
            ("name", pa.string()),
            ("path", pa.string()),  # "Home > Kitchen > Kettles"
            ("noun", pa.string()),  # the product noun of a leaf; null above leaves
            ("synonyms", pa.list_(pa.string())),  # other words shoppers use for the noun
        ]
    ),
    ("category_id",),
)

ITEMS = TableSpec(
    "items",
    pa.schema(
        [
            ("item_id", pa.int64()),
            ("title", pa.string()),
            ("brand", pa.string()),
            ("category_id", pa.int32()),  # leaf category; null = unknown
            ("color", pa.string()),
            ("material", pa.string()),
            ("size", pa.string()),
            ("style", pa.string()),
            ("price", pa.float64()),  # current price
            ("listed_at", TS),
            ("delisted_at", TS),  # null while listed
            ("updated_at", TS),  # last change of any field (price, delisting)
        ]
    ),
    ("item_id",),
)

PRICE_EVENTS = TableSpec(
    "price_events",
    pa.schema([("item_id", pa.int64()), ("ts", TS), ("price", pa.float64())]),
    ("item_id", "ts"),
)

USERS = TableSpec(
    "users",
    pa.schema(
        [
            ("user_id", pa.string()),
            ("gender", pa.string()),  # "f", "m", "u" (unknown)
            ("age_band", pa.string()),  # "18-24", "25-34", ...
            ("price_tier", pa.string()),  # "low", "mid", "high"
            ("brand_affinity", pa.list_(pa.string())),
            ("category_interests", pa.list_(pa.int32())),  # top-level category ids
            ("created_at", TS),
        ]
    ),
    ("user_id",),
)

REQUESTS = TableSpec(
    "requests",
    pa.schema(
        [
            ("request_id", pa.int64()),
            ("ts", TS),
            ("user_id", pa.string()),  # null = anonymous
            ("query", pa.string()),
            ("query_kind", pa.string()),  # synonym, brand, attr_noun, vague, misspelled, ...
            ("exposed", pa.list_(pa.int64())),  # in ranked order
            ("clicked", pa.list_(pa.int64())),
            ("purchased", pa.list_(pa.int64())),
        ]
    ),
    ("request_id",),
)

# The simulator's ground truth, kept apart from the log so nothing trains on it by accident.
GROUND_TRUTH = TableSpec(
    "ground_truth",
    pa.schema(
        [
            ("request_id", pa.int64()),
            ("intent_category_id", pa.int32()),
            ("relevant", pa.list_(pa.int64())),  # items that satisfy the intent at request time
        ]
    ),
    ("request_id",),
)

# Real judged data (e.g. Home Depot): products and query-item relevance judgments.
PRODUCTS = TableSpec(
    "products",
    pa.schema([("item_id", pa.int64()), ("title", pa.string()), ("category", pa.string())]),
    ("item_id",),
)

JUDGMENTS = TableSpec(
    "judgments",
    pa.schema([("query", pa.string()), ("item_id", pa.int64()), ("relevance", pa.float64())]),
    ("query", "item_id"),
)

# Output of the sid stage: one row per listed item. ``codes`` is the full SID (levels + suffix);
# ``sid`` is the same as a string "c1-c2-c3-s", the form used by Feast features and the HTTP API.
SID_ASSIGNMENTS = TableSpec(
    "sid_assignments",
    pa.schema([("item_id", pa.int64()), ("sid", pa.string()), ("codes", pa.list_(pa.int32()))]),
    ("item_id",),
)

MARKETPLACE_TABLES: tuple[TableSpec, ...] = (
    CATEGORIES,
    ITEMS,
    PRICE_EVENTS,
    USERS,
    REQUESTS,
    GROUND_TRUTH,
)
ALL_TABLES: dict[str, TableSpec] = {t.name: t for t in (*MARKETPLACE_TABLES, PRODUCTS, JUDGMENTS, SID_ASSIGNMENTS)}


def to_arrow(df: pd.DataFrame, spec: TableSpec) -> pa.Table:
    """Convert a DataFrame to the spec's schema (column order and types); raises on a mismatch."""
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise ValueError(f"table {spec.name!r} is missing columns {missing}")
    table = pa.Table.from_pandas(df[spec.columns], schema=spec.schema, preserve_index=False)
    # Drop pandas metadata: frames with Arrow-backed dtypes record types pandas cannot rebuild on
    # read; the Arrow schema alone is the contract.
    return table.replace_schema_metadata(None)


def write_table(df: pd.DataFrame, spec: TableSpec, directory: str | Path) -> Path:
    """Write ``df`` as ``<directory>/<spec.name>.parquet`` with the contract's schema."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / spec.filename()
    pq.write_table(to_arrow(df, spec), path)
    return path


def read_table(
    spec: TableSpec,
    directory: str | Path,
    *,
    columns: list[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
) -> pd.DataFrame:
    """Read ``<directory>/<spec.name>.parquet``; list columns come back as Python lists.

    ``columns``: read only these (Parquet is columnar: the others are never decoded). ``filters``:
    pyarrow's row filters, e.g. ``[("request_id", "in", ids)]``, applied before any Python object
    is made.
    """
    path = Path(directory) / spec.filename()
    if not path.exists():
        raise FileNotFoundError(f"no {spec.name!r} table at {path}")
    table = pq.read_table(path, columns=columns, filters=filters)
    df = table.to_pandas(ignore_metadata=True)
    for field in spec.schema:
        if pa.types.is_list(field.type) and field.name in df.columns:
            df[field.name] = [list(v) if v is not None else None for v in df[field.name]]
    return df


def _ascending(rows: pa.ChunkedArray) -> pa.ChunkedArray:
    return rows.take(pc.sort_indices(rows))


def upsert_table(
    spec: TableSpec, live_dir: str | Path, delta_dir: str | Path, out_dir: str | Path, *, sort_by_key: bool = False
) -> Path:
    """Write ``live`` with ``delta``'s rows merged in (a delta row replaces the live row with its key)
    to ``out_dir``, in Arrow without a round trip through pandas: live rows keep their order, delta
    rows follow (or everything sorted by key with ``sort_by_key``). Either input may be absent.
    """
    live_path, delta_path = Path(live_dir) / spec.filename(), Path(delta_dir) / spec.filename()
    out = Path(out_dir) / spec.filename()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not delta_path.exists():
        if live_path.exists():
            shutil.copyfile(live_path, out)
        return out
    delta = pq.read_table(delta_path).cast(spec.schema)
    key = list(spec.key)
    if delta.num_rows:  # a key repeated within the delta: its last row wins
        last = pa.table({**{k: delta[k] for k in key}, "_row": pa.array(range(delta.num_rows))})
        last = last.group_by(key, use_threads=False).aggregate([("_row", "max")])
        delta = delta.take(_ascending(last["_row_max"]))
    parts = [delta]
    if live_path.exists():
        live = pq.read_table(live_path).cast(spec.schema)
        rows = pa.table({**{k: live[k] for k in key}, "_row": pa.array(range(live.num_rows))})
        kept = rows.join(delta.select(key), keys=key, join_type="left anti", use_threads=False)["_row"]
        parts.insert(0, live if len(kept) == live.num_rows else live.take(_ascending(kept)))  # append-only: no take
    table = pa.concat_tables(parts)
    if sort_by_key:
        table = table.sort_by([(k, "ascending") for k in key])
    pq.write_table(table.replace_schema_metadata(None), out)
    return out


def sid_to_str(codes: list[int] | tuple[int, ...]) -> str:
    """(12, 5, 33, 0) -> "12-5-33-0"."""
    return "-".join(str(int(c)) for c in codes)


def sid_from_str(sid: str) -> tuple[int, ...]:
    """ "12-5-33-0" -> (12, 5, 33, 0); raises ValueError on anything else."""
    try:
        return tuple(int(p) for p in sid.split("-"))
    except (AttributeError, ValueError):
        raise ValueError(f"not a SID string: {sid!r}") from None
