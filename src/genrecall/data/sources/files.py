"""A landing directory of daily exports: ``<root>/date=YYYY-MM-DD/<table>.parquet`` (or ``.csv``).

The usual lake layout, on any fsspec URL (a local path by default). Each partition holds one day:
rows of the state tables (CATEGORIES, ITEMS, USERS: each row is the key's current state, upserted by
key; a delisting is an ITEMS row with ``delisted_at``) and of the event tables (PRICE_EVENTS,
REQUESTS, GROUND_TRUTH: appended). Day 0's partition also carries everything before it (the catalog
as it stood, the users, the price history). REQUESTS is required every day, GROUND_TRUTH is optional,
a state table may be absent on a day nothing changed. Names starting with ``_`` or ``.`` (``_SUCCESS``
markers) are ignored; anything else that is not ``<contract table>.parquet|csv`` is an error.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genrecall.data import schema as S
from genrecall.data.held import Held
from genrecall.data.sources.base import CATALOG_TABLES, LOG_TABLES, STATE_TABLES, BoundaryError, FilesConfig
from genrecall.data.sources.contract import conform_arrow, conform_values

_DIR = re.compile(r"^date=(.+)$")
FORMATS = ("parquet", "csv")
SPECS = {t.name: t for t in S.MARKETPLACE_TABLES}


@dataclass(frozen=True)
class Partition:
    """One day's directory: its date, its URL and the table files it holds (table -> URL)."""

    date: date
    url: str
    files: dict[str, str]


class Landing:
    """The landing directory of a files (or sql: the log) source."""

    def __init__(self, cfg: FilesConfig, *, tables: tuple[str, ...] = CATALOG_TABLES + LOG_TABLES) -> None:
        self.cfg, self.tables = cfg, tables
        self.fs, self.root = fsspec.core.url_to_fs(cfg.root, **cfg.storage_options)

    def partitions(self) -> list[Partition]:
        """Every partition, by date; a malformed name or a day present twice is a BoundaryError."""
        if not self.fs.exists(self.root):
            raise BoundaryError(f"landing directory {self.cfg.root} does not exist")
        seen: dict[date, str] = {}
        out = []
        for entry in sorted(self.fs.ls(self.root, detail=True), key=lambda e: e["name"]):
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(("_", ".")):
                continue
            m = _DIR.match(name)
            if entry["type"] != "directory" or not m:
                raise BoundaryError(f"{entry['name']}: not a day partition (expected date=YYYY-MM-DD/)")
            try:
                day = date.fromisoformat(m.group(1))
            except ValueError:
                raise BoundaryError(f"{entry['name']}: {m.group(1)!r} is not a date (YYYY-MM-DD)") from None
            if day in seen:
                raise BoundaryError(f"day {day} arrives twice: {seen[day]} and {entry['name']}; keep one")
            seen[day] = entry["name"]
            out.append(self._partition(day, entry["name"]))
        return sorted(out, key=lambda p: p.date)

    def _partition(self, day: date, url: str) -> Partition:
        files: dict[str, str] = {}
        for entry in sorted(self.fs.ls(url, detail=True), key=lambda e: e["name"]):
            name = entry["name"].rsplit("/", 1)[-1]
            if name.startswith(("_", ".")):
                continue
            stem, _, ext = name.rpartition(".")
            if ext not in FORMATS or stem not in SPECS:
                names = sorted(SPECS)
                raise BoundaryError(f"{entry['name']}: expected <table>.parquet or <table>.csv, table one of {names}")
            if stem not in self.tables:
                raise BoundaryError(f"{entry['name']}: this source reads {stem!r} from elsewhere (source.kind sql?)")
            if stem in files:
                raise BoundaryError(f"day {day}: table {stem!r} arrives twice ({files[stem]} and {entry['name']})")
            files[stem] = entry["name"]
        if "requests" not in files:
            raise BoundaryError(f"day {day}: {url} has no requests table (the search log is daily)")
        return Partition(day, url, files)

    def fingerprint(self, part: Partition) -> str:
        """``<file>:<sha256 of its bytes>;...``: a partition re-delivered with other content (even of the
        same size) is noticed. Reads every byte, so only partitions that are compared are hashed."""
        out = []
        for url in sorted(part.files.values()):
            digest = hashlib.sha256()
            with self.fs.open(url, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            out.append(f"{url.rsplit('/', 1)[-1]}:{digest.hexdigest()}")
        return ";".join(out)

    def read(self, part: Partition, table: str, held: Held | None = None) -> pa.Table | None:
        """A partition's table, contract-typed (or a BoundaryError); None when the day has none. ``held``
        receives CSV rows with one unparsable value (``contract.conform_values``)."""
        url = part.files.get(table)
        if url is None:
            return None
        spec = SPECS[table]
        with self.fs.open(url, "rb") as f:
            if url.endswith(".parquet"):
                try:
                    raw = pq.read_table(f)
                except (pa.ArrowInvalid, OSError) as e:
                    raise BoundaryError(f"{url}: not a readable Parquet file ({e}); re-export it") from e
                return conform_arrow(raw, spec, url)
            df = pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""])
        return conform_values(df.astype(object).where(df.notna(), None), spec, url, first_row=2, held=held)


def until_date(cfg: FilesConfig, parts: list[Partition]) -> date:
    if cfg.until is not None:
        return date.fromisoformat(str(cfg.until))
    if not parts:
        raise BoundaryError(f"no partitions (date=YYYY-MM-DD/) in {cfg.root}")
    return parts[-1].date


def contiguous(parts: list[Partition], where: str) -> None:
    """Partitions are consecutive days; a gap is a BoundaryError naming the missing days."""
    for a, b in itertools.pairwise(parts):
        if (b.date - a.date).days != 1:
            gap = [str(a.date + timedelta(days=i)) for i in range(1, (b.date - a.date).days)]
            raise BoundaryError(f"day(s) {', '.join(gap)} missing in {where} (between {a.date} and {b.date})")


LATE = "updated_at:older_than_stored"  # the reason a late state row is held back


def key_text(row: dict[str, Any], key: list[str]) -> str:
    return ", ".join(f"{k} {row[k]!r}" for k in key)


def merge(
    parts: list[tuple[int, pa.Table]], table: str, held: Held | None = None, labels: list[str] | None = None
) -> pa.Table:
    """Several days of one table: events keep all rows; state tables keep each key's newest day's row(s).

    The newest day is the last partition holding the key, or, where the table has ``updated_at``
    (ITEMS), the partition of the row with the latest ``updated_at`` (ties: the later partition). A row
    of that key in a later partition is older than the state it would replace: a late row, held back
    (``held``, reason ``updated_at:older_than_stored``), never applied. Rows of earlier days are history.
    ``labels``: each part's name in the held rows' detail (its partition's date).
    """
    spec = SPECS[table]
    tables = [t.append_column("_part", pa.array([i] * t.num_rows, pa.int32())) for i, t in parts]
    if not tables:
        return spec.schema.empty_table()
    allrows = pa.concat_tables(tables)
    if table not in STATE_TABLES:
        return allrows.select(spec.columns)
    key, by = list(spec.key), ["updated_at"] if "updated_at" in spec.columns else []
    rows = pa.table({c: allrows[c] for c in [*key, *by, "_part"]}).append_column("_row", pa.array(range(len(allrows))))
    order = rows.sort_by([(c, "ascending", "at_start") for c in [*key, *by, "_part"]])
    newest = order.group_by(key, use_threads=False).aggregate([(c, "last") for c in ["_part", *by]])
    rows = rows.join(newest, keys=key, join_type="inner", use_threads=False)
    keep = rows.filter(pc.equal(rows["_part"], rows["_part_last"]))["_row"]
    late = rows.filter(pc.greater(rows["_part"], rows["_part_last"])).sort_by("_row")
    if held is None and late.num_rows:
        raise BoundaryError(f"table {table!r}: {late.num_rows} late row(s) older than the state they would replace")
    name = (lambda i: labels[i]) if labels else str
    starts = dict(zip([i for i, _ in parts], itertools.accumulate([0] + [t.num_rows for _, t in parts])))
    for r in late.to_pylist():
        assert held is not None  # a late row without a collector raised above
        held.add(
            table,
            allrows.slice(r["_row"], 1).to_pylist()[0],
            r["_row"] - starts[r["_part"]],  # its row in its partition's file
            [LATE],
            f"partition {name(r['_part'])}: {table} {key_text(r, key)} updated_at {r['updated_at']} is "
            f"older than its state from partition {name(r['_part_last'])} (updated_at {r['updated_at_last']}): "
            "a late row, not applied",
        )
    return allrows.take(keep.take(pc.sort_indices(keep))).sort_by([(k, "ascending") for k in key]).select(spec.columns)
