"""A catalog database through SQLAlchemy: one query per table (``source.sql.queries``), read by window.

``read_catalog`` runs each catalog table's query with ``:since`` (the table's watermark: the largest
value of its watermark column read so far, exclusive; 1970 on the first run) and ``:until`` (the end
of the day being ingested, exclusive) and returns contract-typed tables plus the new watermarks.
Whatever the query, the window is enforced on its result too: a row whose watermark value is not
after ``:since`` was read before, one not before ``:until`` is left for its own day (so a query
without ``:until`` cannot pull later rows into the first run or an earlier day).

Limits, as with any incremental extract of a database that holds only the current state: a row
committed later with a watermark value at or below one already read is never seen (it belongs in a
later update, with a new ``updated_at``); a row changed after the day being read is invisible in its
earlier state (the first run sees the catalog as the database holds it, minus the rows changed since
the cutoff, which arrive with the day of their change); a table without a watermark (CATEGORIES) is
read as it is now; and USERS' watermark is ``created_at``, so a changed profile is not read again.

``write_catalog`` is the other direction, for ``genrecall export``: the contract tables as SQL tables
(list columns as JSON text, timestamps with time zone), replaced whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from genrecall.data import schema as S
from genrecall.data.held import Held
from genrecall.data.sources.base import CATALOG_TABLES, SqlConfig
from genrecall.data.sources.contract import conform_values

SPECS = {t.name: t for t in S.MARKETPLACE_TABLES}


@dataclass
class CatalogRead:
    """The catalog tables read in one window, and each table's watermark after it (ISO)."""

    tables: dict[str, pa.Table]
    watermarks: dict[str, str]


def _engine(cfg: SqlConfig) -> sa.Engine:
    if not cfg.url:
        raise ValueError("source.sql.url is not set")
    return sa.create_engine(cfg.url)


def _statement(query: str, since: datetime, until: datetime) -> tuple[sa.TextClause, dict[str, Any]]:
    stmt, binds = sa.text(query), {}
    for name, value in (("since", since), ("until", until)):
        if re.search(rf":{name}\b", query):
            stmt = stmt.bindparams(sa.bindparam(name, type_=sa.DateTime(timezone=True)))
            binds[name] = value
    return stmt, binds


def read_catalog(cfg: SqlConfig, until: datetime, watermarks: dict[str, str], held: Held | None = None) -> CatalogRead:
    """Every catalog table's rows in (watermark, until); the whole table where it has no watermark.
    ``held`` receives rows with one unparsable value (``contract.conform_values``)."""
    from genrecall.data.sources.base import EPOCH

    tables, marks = {}, dict(watermarks)
    engine = _engine(cfg)
    with engine.connect() as conn:
        for name in CATALOG_TABLES:
            since = datetime.fromisoformat(watermarks[name]) if name in watermarks else EPOCH
            stmt, binds = _statement(cfg.query(name), since, until)
            result = conn.execute(stmt, binds)
            df = pd.DataFrame(result.fetchall(), columns=list(result.keys()), dtype=object)
            where = f"query source.sql.queries.{name} on {_safe(cfg.url)}"
            table = conform_values(df, SPECS[name], where, first_row=1, held=held)
            col = cfg.watermarks.get(name)
            if col:  # the window, whatever the query: rows read before are not read again, later ones wait
                table = _window(table, col, since, until)
            if col and table.num_rows:
                top = pc.max(table[col]).as_py()
                if name not in marks or top > datetime.fromisoformat(marks[name]):
                    marks[name] = top.isoformat()
            tables[name] = table
    engine.dispose()
    return CatalogRead(tables, marks)


def _window(table: pa.Table, col: str, since: datetime, until: datetime) -> pa.Table:
    """Rows with ``since < col < until`` (a null stays: validation quarantines it)."""
    t = table[col].type
    inside = pc.and_(pc.greater(table[col], pa.scalar(since, t)), pc.less(table[col], pa.scalar(until, t)))
    return table.filter(pc.fill_null(inside, True))


def _safe(url: str | None) -> str:
    return sa.make_url(url).render_as_string(hide_password=True) if url else "?"


def _column_type(t: pa.DataType) -> Any:
    if pa.types.is_int8(t) or pa.types.is_int16(t):
        return sa.SmallInteger()
    if pa.types.is_int32(t):
        return sa.Integer()
    if pa.types.is_integer(t):
        return sa.BigInteger()
    if pa.types.is_floating(t):
        return sa.Double()
    if pa.types.is_timestamp(t):
        return sa.DateTime(timezone=True)
    return sa.Text()  # strings, and lists as JSON text


def write_catalog(url: str, tables: dict[str, pa.Table]) -> dict[str, int]:
    """Replace the database's catalog tables with ``tables`` (contract-typed); rows written per table."""
    engine, meta = sa.create_engine(url), sa.MetaData()
    defs = {
        name: sa.Table(name, meta, *(sa.Column(f.name, _column_type(f.type)) for f in SPECS[name].schema))
        for name in tables
    }
    counts = {}
    with engine.begin() as conn:
        for name, table in tables.items():
            defs[name].drop(conn, checkfirst=True)
            defs[name].create(conn)
            rows = table.to_pylist()
            for f in table.schema:
                if pa.types.is_list(f.type):
                    for r in rows:
                        r[f.name] = None if r[f.name] is None else json.dumps(r[f.name])
            if rows:
                conn.execute(defs[name].insert(), rows)
            counts[name] = len(rows)
    engine.dispose()
    return counts
