"""Rows a source held back at its boundary, each with its reasons, for the validate stage's quarantine.

A files or sql source holds a row back when it cannot or must not pass it on: one value in a CSV cell
or SQL result that does not parse while the rest of its column does (``price:type``), or a state row
older than the state already stored (``updated_at:older_than_stored``: a late row must not overwrite
a newer one). They are written to ``<dir>/rejected/<table>.parquet`` beside the tables the source wrote
(the raw directory on the first run, the day's delta on a daily run): every contract column as text,
the value as it came; ``source_row`` (its row in its file or query result, numbered as ``detail``
names it: a CSV row by its line, the header being line 1); ``reasons``; and
``detail`` (where it came from and what was wrong). The validate stage appends them to the table's
quarantine and counts them in its report, so a table with too many of them fails like one with too
many bad values. Nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genrecall.data import schema as S

REJECTED_DIR = "rejected"  # beside the tables a source wrote
SOURCE_ROW, REASONS, DETAIL = "source_row", "reasons", "detail"


def _text(v: Any) -> str | None:
    """A value as a CSV cell would hold it: lists as JSON arrays, timestamps as ISO 8601."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return json.dumps([x.item() if hasattr(x, "item") else x for x in v], default=str)
    if isinstance(v, (datetime, date, pd.Timestamp)):
        return v.isoformat()
    return str(v)


@dataclass
class Held:
    """The rows held back while reading one run's or one day's tables, by table."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, table: str, row: Mapping[str, Any], source_row: int, reasons: list[str], detail: str) -> None:
        spec = S.ALL_TABLES[table]
        cells = {c: _text(row.get(c)) for c in spec.columns}
        self.rows.setdefault(table, []).append({**cells, SOURCE_ROW: source_row, REASONS: reasons, DETAIL: detail})

    def counts(self) -> dict[str, int]:
        return {t: len(r) for t, r in sorted(self.rows.items())}

    def write(self, directory: str | Path) -> dict[str, int]:
        """``<directory>/rejected/<table>.parquet`` for every table with held rows (none: no directory)."""
        out = Path(directory) / REJECTED_DIR
        for table, rows in self.rows.items():
            spec = S.ALL_TABLES[table]
            schema = pa.schema(
                [(c, pa.string()) for c in spec.columns]
                + [(SOURCE_ROW, pa.int64()), (REASONS, pa.list_(pa.string())), (DETAIL, pa.string())]
            )
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / spec.filename())
        return self.counts()


def read_held(directory: str | Path) -> dict[str, pd.DataFrame]:
    """The rows a source held back beside the tables in ``directory``, by table (none: empty)."""
    out = {}
    for name, spec in S.ALL_TABLES.items():
        path = Path(directory) / REJECTED_DIR / spec.filename()
        if path.exists():
            df = pq.read_table(path).to_pandas()
            df[REASONS] = [list(r) for r in df[REASONS]]
            out[name] = df
    return out
