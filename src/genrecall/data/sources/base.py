"""The source setting (params.yaml ``source``), what a source remembers between runs, and its errors.

A *source* feeds the pipeline's first stage (``genrecall generate``: the first run) and the daily
``ingest`` step (one day per run) with the contract tables of ``schema.py``. Three kinds:

- ``marketplace``: the simulator (the default; ``make run`` uses it).
- ``files``: a landing directory of daily exports, ``<root>/date=YYYY-MM-DD/<table>.parquet|csv``.
- ``sql``: the catalog (CATEGORIES, ITEMS, PRICE_EVENTS, USERS) from a database through SQLAlchemy,
  one query per table, incrementally by a watermark column; the log (REQUESTS, optional
  GROUND_TRUTH) from the same landing layout as ``files``.

A files or sql source writes ``source.json`` beside the raw tables (``SourceState``): the first
partition's date (day 0), how many days were ingested, a fingerprint of each ingested partition and
the SQL watermarks. Day ``d`` is the partition dated ``first_date + d``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from genrecall.config import from_dict

STATE_FILE = "source.json"  # beside the raw tables of a files/sql source
KINDS = ("marketplace", "files", "sql")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The catalog tables a sql source reads, with the column its watermark follows (None: read whole).
CATALOG_TABLES = ("categories", "items", "price_events", "users")
LOG_TABLES = ("requests", "ground_truth")
STATE_TABLES = ("categories", "items", "users")  # current state per key: a later row replaces (upsert)
OPTIONAL_TABLES = ("ground_truth",)  # real shops have no ground truth; evaluation then uses clicks


@dataclass(frozen=True)
class FilesConfig:
    """A landing directory of daily partitions (``source.files``)."""

    root: str = "data/landing"  # any fsspec URL: a local path (default), s3://bucket/prefix, gs://...
    until: str | None = None  # the first run reads partitions up to this date (YYYY-MM-DD); None = all present
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec options (credentials come from env)


DEFAULT_QUERIES = {  # one query per catalog table; :since / :until bind the watermark window
    "categories": "SELECT * FROM categories ORDER BY category_id",
    "items": "SELECT * FROM items WHERE updated_at > :since AND updated_at < :until ORDER BY item_id",
    "price_events": "SELECT * FROM price_events WHERE ts > :since AND ts < :until ORDER BY ts, item_id",
    "users": "SELECT * FROM users WHERE created_at > :since AND created_at < :until ORDER BY user_id",
}
DEFAULT_WATERMARKS = {"items": "updated_at", "price_events": "ts", "users": "created_at"}


@dataclass(frozen=True)
class SqlConfig:
    """A catalog database (``source.sql``); the log still comes from ``source.files``."""

    url: str | None = None  # SQLAlchemy URL, e.g. postgresql+psycopg://user@host/shop or sqlite:///shop.db
    # table -> SQL text; a query may use :since (the table's watermark: the largest value read so far,
    # exclusive) and :until (the end of the day being ingested, exclusive). Missing tables use the defaults.
    queries: dict[str, str] = field(default_factory=dict)
    # table -> the column whose largest value read becomes the next run's :since; a table absent here
    # (categories) is read whole every day and only its changed rows go into the day's delta
    watermarks: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_WATERMARKS))

    def query(self, table: str) -> str:
        return self.queries.get(table) or DEFAULT_QUERIES[table]


@dataclass(frozen=True)
class SourceConfig:
    """Where the pipeline's data comes from (params.yaml ``source``)."""

    kind: str = "marketplace"  # marketplace (the simulator, params ``generate``) | files | sql
    files: dict[str, Any] = field(default_factory=dict)  # FilesConfig (files and sql: the landing directory)
    sql: dict[str, Any] = field(default_factory=dict)  # SqlConfig (sql only)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"source.kind is {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind == "sql" and not self.sql_config().url:
            raise ValueError("source.kind is sql but source.sql.url is not set (a SQLAlchemy URL)")

    def files_config(self) -> FilesConfig:
        return from_dict(FilesConfig, self.files)

    def sql_config(self) -> SqlConfig:
        return from_dict(SqlConfig, self.sql)


def source_config(params: dict[str, Any]) -> SourceConfig:
    """The ``source`` namespace of params (absent = the simulator)."""
    return from_dict(SourceConfig, params.get("source"))


class BoundaryError(ValueError):
    """An export genrecall will not guess about: a missing/renamed/extra column, a changed type, a
    missing or twice-delivered day. The message names the table, the column and the file or query."""


@dataclass
class SourceState:
    """What a files/sql source has ingested (``source.json`` beside the raw tables)."""

    kind: str
    first_date: str  # day 0's partition date, YYYY-MM-DD
    days: int  # days ingested; the next run ingests day ``days``
    partitions: dict[str, str] = field(default_factory=dict)  # date -> fingerprint (file names, sha256 of bytes)
    watermarks: dict[str, str] = field(default_factory=dict)  # table -> largest watermark value read (ISO)

    def date_of(self, day: int) -> date:
        return date.fromisoformat(self.first_date) + timedelta(days=day)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / STATE_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> SourceState:
        path = Path(directory) / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no source state; run the first stage (`dvc repro`) on this source first")
        return cls(**json.loads(path.read_text()))


def day_bounds(d: date) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in UTC."""
    start = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def days_ingested(raw_dir: str | Path) -> int:
    """Days the live raw data holds: the source state's count, else the simulator's."""
    raw_dir = Path(raw_dir)
    if (raw_dir / STATE_FILE).exists():
        return SourceState.load(raw_dir).days
    meta = raw_dir / "sim" / "marketplace.json"
    if not meta.exists():
        raise FileNotFoundError(f"{raw_dir}: neither {STATE_FILE} (files/sql source) nor sim/marketplace.json")
    return int(json.loads(meta.read_text())["days"])


@dataclass
class IngestResult:
    """One source day ingested: counts for the day's report, and the day's UTC bounds."""

    day: int
    date: str
    new_items: int
    delisted: int
    price_changes: int
    new_users: int
    requests: int
    day_start: str  # ISO; validation quarantines log rows outside [day_start, day_end) as late (or early)
    day_end: str
    tables: dict[str, int] = field(default_factory=dict)  # rows per table in the day's delta
    held: dict[str, int] = field(default_factory=dict)  # rows held back per table (data/held.py: quarantined)


@dataclass
class BootstrapResult:
    """The first run on a source: the raw tables written, and through which day."""

    out_dir: str
    kind: str
    days: int
    first_date: str
    last_date: str
    rows: dict[str, int]
    held: dict[str, int] = field(default_factory=dict)  # rows held back per table (data/held.py: quarantined)
