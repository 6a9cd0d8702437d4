"""The boundary check: whatever a shop exported becomes a contract-typed Arrow table, or a clear error.

Schema-level problems are errors, never defaults: a missing column, an extra one (a renamed column is
both), a column whose type is not the contract's kind (a price stored as text in Parquet). The error
names the table, the column and where it came from (a file, a query). Values inside a well-typed
column (a negative price, a null title, a click outside the exposures) are the validate stage's: its
suites quarantine such rows with reasons.

Types: Parquet columns must have the contract's *kind* (integer, floating, string, timestamp, list of
the same) and are cast to the exact contract type (int32 -> int64, a timestamp in ms or another zone
-> us UTC; an integer column may stand where a float is expected). A timestamp without a zone is read
as UTC. CSV files and SQL results have no column types to compare: every value is parsed (numbers,
ISO timestamps, list cells as JSON arrays, empty = null) and the first value that does not parse is
an error naming table, column, row and value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from genrecall.data import schema as S
from genrecall.data.sources.base import BoundaryError


def check_columns(names: Iterable[str], spec: S.TableSpec, where: str) -> None:
    """The columns are exactly the contract's (order is free); else a BoundaryError saying which."""
    names = list(names)
    missing = [c for c in spec.columns if c not in names]
    extra = [c for c in names if c not in spec.columns]
    dup = sorted({c for c in names if names.count(c) > 1})
    if not (missing or extra or dup):
        return
    parts = []
    if missing:
        parts.append(f"missing column(s) {missing}")
    if extra:
        parts.append(f"unexpected column(s) {extra}")
    if dup:
        parts.append(f"repeated column(s) {dup}")
    hint = " (a renamed column?)" if missing and extra else ""
    raise BoundaryError(
        f"table {spec.name!r} from {where}: {'; '.join(parts)}{hint}; the contract's columns are {spec.columns} "
        "(docs/CONTRACTS.md)"
    )


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "floating"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_kind(t.value_type)}>"
    return str(t)


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    g, w = _kind(got), _kind(want)
    return g == w or g == "null" or (g, w) == ("integer", "floating") or (g, w) == ("list<null>", w)


def conform_arrow(table: pa.Table, spec: S.TableSpec, where: str) -> pa.Table:
    """A typed table (Parquet) -> the contract schema, or a BoundaryError."""
    check_columns(table.column_names, spec, where)
    cols = []
    for f in spec.schema:
        col = table[f.name]
        if not _compatible(col.type, f.type):
            raise BoundaryError(
                f"table {spec.name!r} from {where}: column {f.name!r} has type {col.type}; the contract says "
                f"{f.type} (a changed type; re-export the column as {_kind(f.type)})"
            )
        if pa.types.is_timestamp(col.type) and col.type.tz is None:
            col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))  # no zone: the contract's UTC
        try:
            cols.append(col.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise _unfit(spec, where, f, e) from e
    return pa.Table.from_arrays(cols, schema=spec.schema)


def _unfit(spec: S.TableSpec, where: str, f: pa.Field, e: Exception) -> BoundaryError:
    return BoundaryError(f"table {spec.name!r} from {where}: column {f.name!r} does not fit {f.type}: {e}")


def _null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT or (isinstance(v, str) and v == "")


def _scalar(v: Any, t: pa.DataType) -> Any:
    """One value parsed to the Python value of contract type ``t``; ValueError when it does not parse."""
    if _null(v):
        return None
    if pa.types.is_integer(t):
        if isinstance(v, (bool, np.bool_)):
            raise ValueError("a boolean")
        if isinstance(v, (int, np.integer)):
            return int(v)
        f = float(v) if isinstance(v, (float, np.floating, Decimal)) else float(str(v).strip())
        if not f.is_integer():
            raise ValueError("not an integer")
        return int(str(v).strip()) if isinstance(v, str) and str(v).strip().lstrip("-").isdigit() else int(f)
    if pa.types.is_floating(t):
        if isinstance(v, (bool, np.bool_)):
            raise ValueError("a boolean")
        return float(v) if not isinstance(v, str) else float(v.strip())
    if pa.types.is_timestamp(t):
        ts = pd.Timestamp(v)
        if pd.isna(ts):
            return None
        return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
    if pa.types.is_list(t):
        if isinstance(v, str):
            v = json.loads(v)
        if not isinstance(v, (list, tuple, np.ndarray)):
            raise ValueError("not a list (a JSON array in CSV and SQL text)")
        return [_scalar(x, t.value_type) for x in v]
    if not isinstance(v, str):
        raise ValueError(f"a {type(v).__name__}, not text")
    return v


def conform_values(df: pd.DataFrame, spec: S.TableSpec, where: str, *, first_row: int = 1) -> pa.Table:
    """Untyped values (CSV text, SQL rows) -> the contract schema, or a BoundaryError naming the value.

    ``first_row``: the row number of the frame's first row in the error (2 in a CSV: after the header).
    """
    check_columns(df.columns, spec, where)
    arrays = []
    for f in spec.schema:
        values = []
        for i, v in enumerate(df[f.name].tolist()):
            try:
                values.append(_scalar(v, f.type))
            except (ValueError, TypeError, OverflowError, json.JSONDecodeError) as e:
                raise BoundaryError(
                    f"table {spec.name!r} from {where}: column {f.name!r}, row {i + first_row}: {v!r} is not "
                    f"{f.type} ({e}); a changed type?"
                ) from e
        try:
            arrays.append(pa.array(values, type=f.type))
        except (pa.ArrowInvalid, OverflowError) as e:
            raise _unfit(spec, where, f, e) from e
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def to_csv_frame(table: pa.Table) -> pd.DataFrame:
    """A contract table as CSV cells: lists as JSON arrays, timestamps as ISO 8601 with the zone."""
    df = table.to_pandas(ignore_metadata=True)
    for f in table.schema:
        if pa.types.is_list(f.type):
            df[f.name] = [
                None if v is None else json.dumps([x.item() if hasattr(x, "item") else x for x in v])
                for v in df[f.name]
            ]
        elif pa.types.is_timestamp(f.type):
            df[f.name] = [None if pd.isna(v) else v.isoformat() for v in df[f.name]]
    return df
