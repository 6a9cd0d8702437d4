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
ISO timestamps, list cells as JSON arrays, empty = null). A column none of whose values parse has
the wrong type: an error naming table, column, row and value. A row with a value that does not parse
in a column whose other values do is held back (``held.py``: ``<column>:type``, with the value and
where it came from) and quarantined by the validate stage; a reader that passes no ``held`` makes it
an error too.
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
from genrecall.data.held import Held
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


_PARSE_ERRORS = (ValueError, TypeError, OverflowError, json.JSONDecodeError)


def _parse_column(values: list[Any], t: pa.DataType) -> tuple[list[Any], dict[int, str]]:
    """Each value parsed to type ``t`` (None where it does not parse) and row -> why, for those."""
    out, bad = [], {}
    for i, v in enumerate(values):
        try:
            out.append(_scalar(v, t))
        except _PARSE_ERRORS as e:
            out.append(None)
            bad[i] = str(e)
    return out, bad


def conform_values(
    df: pd.DataFrame, spec: S.TableSpec, where: str, *, first_row: int = 1, held: Held | None = None
) -> pa.Table:
    """Untyped values (CSV text, SQL rows) -> the contract schema; see the module docstring.

    ``first_row``: the row number of the frame's first row in messages (2 in a CSV: after the header).
    ``held``: where rows with one unparsable value go (None: they are a BoundaryError).
    """
    check_columns(df.columns, spec, where)
    raw = {f.name: df[f.name].tolist() for f in spec.schema}
    parsed: dict[str, list[Any]] = {}
    reasons: dict[int, list[str]] = {}  # row -> the columns whose value does not parse, as reasons
    details: dict[int, list[str]] = {}
    for f in spec.schema:
        parsed[f.name], bad = _parse_column(raw[f.name], f.type)
        whole = len(bad) == sum(not _null(v) for v in raw[f.name])  # no value of the column parses
        for i, why in bad.items():
            msg = f"column {f.name!r}, row {i + first_row}: {raw[f.name][i]!r} is not {f.type} ({why})"
            if whole or held is None:
                hint = "the whole column: a changed type?" if whole else "a changed type?"
                raise BoundaryError(f"table {spec.name!r} from {where}: {msg}; {hint}")
            reasons.setdefault(i, []).append(f"{f.name}:type")
            details.setdefault(i, []).append(msg)
    for i in sorted(reasons):
        assert held is not None  # without a collector the first bad value raised above
        row = {c: raw[c][i] for c in spec.columns}
        held.add(spec.name, row, i + first_row, reasons[i], f"{where}: " + "; ".join(details[i]))
    keep = [i not in reasons for i in range(len(df))]
    arrays = []
    for f in spec.schema:
        try:
            arrays.append(pa.array([v for v, k in zip(parsed[f.name], keep) if k], type=f.type))
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
