"""A files or sql source into the pipeline: the first run (``bootstrap``) and one day (``ingest_day``).

``bootstrap`` (the first stage, ``genrecall generate`` with ``source.kind`` files or sql) reads every
partition up to ``source.files.until`` (consecutive days from the first) and, for sql, the catalog up
to the end of that day, and writes the contract tables and ``source.json`` to the raw directory.

``ingest_day`` (the daily ``ingest`` step) reads the next day only: the partition dated
``first_date + day`` and, for sql, the catalog rows past each table's watermark. It writes the day's
delta (what the validate step checks and merges) and a staged raw directory (the live one with the
delta merged, and the new ``source.json``) that the ``commit`` step swaps in. It refuses, with a
message saying why: a day already ingested, a day that has not arrived (or is missing while later
days exist), a partition that appeared or changed after its day was ingested. Row-level arrival
problems (a request delivered again, log rows dated before the day) go to validation's quarantine.

Rows held back at the boundary (``data/held.py``) are written to ``rejected/`` beside the tables (the
raw directory, the day's delta) for the validate stage's quarantine: a CSV/SQL row with one value that
does not parse, and a late state row. Late: an ITEMS row whose ``updated_at`` is older than the state
it would replace (the live raw row on a daily run; on the first run, the newest row of an earlier
partition: ``files.merge``) is never applied. CATEGORIES and USERS carry no ``updated_at`` in the
contract: for them the last delivered row is the state.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genrecall.data import schema as S
from genrecall.data.held import REJECTED_DIR, Held
from genrecall.data.sources.base import (
    CATALOG_TABLES,
    LOG_TABLES,
    STATE_TABLES,
    BootstrapResult,
    BoundaryError,
    IngestResult,
    SourceConfig,
    SourceState,
    day_bounds,
)
from genrecall.data.sources.files import LATE, SPECS, Landing, Partition, contiguous, key_text, merge, until_date


def _landing(cfg: SourceConfig) -> Landing:
    tables = LOG_TABLES if cfg.kind == "sql" else CATALOG_TABLES + LOG_TABLES
    return Landing(cfg.files_config(), tables=tables)


def _write(tables: dict[str, pa.Table], out_dir: Path) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, out_dir / SPECS[name].filename())
    return {name: t.num_rows for name, t in tables.items()}


def bootstrap(cfg: SourceConfig, out_dir: str | Path) -> BootstrapResult:
    """The first run: every partition up to the cutoff (and the sql catalog) -> raw tables + state."""
    from genrecall.data.sources.sql import read_catalog

    out_dir, landing = Path(out_dir), _landing(cfg)
    parts = landing.partitions()
    cutoff = until_date(landing.cfg, parts)
    parts = [p for p in parts if p.date <= cutoff]
    if not parts:
        raise BoundaryError(f"no partitions up to {cutoff} in {landing.cfg.root}")
    contiguous(parts, landing.cfg.root)
    names = LOG_TABLES if cfg.kind == "sql" else CATALOG_TABLES + LOG_TABLES
    tables, held, labels = {}, Held(), [f"date={p.date}" for p in parts]
    for name in names:
        read = [(i, t) for i, p in enumerate(parts) if (t := landing.read(p, name, held)) is not None]
        if read or name != "ground_truth":  # ground truth is optional: absent means no table
            tables[name] = merge(read, name, held, labels)
    watermarks: dict[str, str] = {}
    if cfg.kind == "sql":
        catalog = read_catalog(cfg.sql_config(), day_bounds(cutoff)[1], {}, held)
        tables.update(catalog.tables)
        watermarks = catalog.watermarks
        tables["items"] = tables["items"].sort_by("item_id")
    missing = [n for n in ("categories", "items") if tables[n].num_rows == 0]
    if missing:
        raise BoundaryError(f"no rows for {missing} up to {cutoff}: day 0 must carry the catalog as it stands")
    for stale in out_dir.glob("*.parquet") if out_dir.exists() else []:
        stale.unlink()  # a rerun with fewer tables (no ground truth) leaves none behind
    shutil.rmtree(out_dir / REJECTED_DIR, ignore_errors=True)
    rows = _write(tables, out_dir)
    held.write(out_dir)
    state = SourceState(
        kind=cfg.kind,
        first_date=str(parts[0].date),
        days=len(parts),
        partitions={str(p.date): landing.fingerprint(p) for p in parts},
        watermarks=watermarks,
    )
    state.save(out_dir)
    first, last = str(parts[0].date), str(parts[-1].date)
    return BootstrapResult(str(out_dir), cfg.kind, len(parts), first, last, rows, held=held.counts())


def _next_partition(landing: Landing, state: SourceState, day: int) -> Partition:
    """Day ``day``'s partition, after checking the ingested ones were not re-delivered or back-filled."""
    want = state.date_of(day)
    parts = {p.date: p for p in landing.partitions()}
    for d, p in sorted(parts.items()):
        if d >= want:
            break
        if str(d) not in state.partitions:
            raise BoundaryError(
                f"partition date={d} appeared after day {d} was ingested (or before the first day); "
                "deliver late rows in the next day's partition"
            )
        now = landing.fingerprint(p)
        if state.partitions[str(d)] != now:
            raise BoundaryError(
                f"day {d} arrives twice: date={d} changed after it was ingested "
                f"({_changed_files(state.partitions[str(d)], now)}); corrections go into a later partition"
            )
    if want in parts:
        return parts[want]
    later = [str(d) for d in parts if d > want]
    if later:
        raise BoundaryError(f"day {want} is missing in {landing.cfg.root}: date={want} is absent while {later} exist")
    raise BoundaryError(f"day {want} has not arrived: no date={want} in {landing.cfg.root} yet")


def _changed_files(before: str, after: str) -> str:
    """Which files of a partition differ between two fingerprints (``Landing.fingerprint``)."""
    a, b = (dict(x.split(":", 1) for x in f.split(";") if x) for f in (before, after))
    parts = [f"{n} changed" for n in sorted(a) if n in b and a[n] != b[n]]
    parts += [f"{n} removed" for n in sorted(set(a) - set(b))] + [f"{n} added" for n in sorted(set(b) - set(a))]
    return ", ".join(parts) or "its files differ"


def _changed_rows(new: pa.Table, live: pa.Table) -> pa.Table:
    """Rows of ``new`` not in ``live`` as they are (a whole-table read: only its changes are a delta)."""
    seen = {tuple(map(repr, r.values())) for r in live.to_pylist()}
    keep = [tuple(map(repr, r.values())) not in seen for r in new.to_pylist()]
    return new.filter(pa.array(keep, pa.bool_()))


def ingest_day(
    cfg: SourceConfig, raw_dir: str | Path, day: int, staged_raw: str | Path, delta_dir: str | Path
) -> IngestResult:
    """Read day ``day`` of the source: the delta to ``delta_dir``, the next raw state to ``staged_raw``."""
    from genrecall.data.sources.sql import read_catalog

    raw_dir, staged_raw, delta_dir = Path(raw_dir), Path(staged_raw), Path(delta_dir)
    state = SourceState.load(raw_dir)
    if day != state.days:
        done = "was already ingested" if day < state.days else "is not the next day"
        raise BoundaryError(f"day {day} ({state.date_of(day)}) {done}: the live data holds days 0..{state.days - 1}")
    landing = _landing(cfg)
    part = _next_partition(landing, state, day)
    start, end = day_bounds(part.date)
    names = LOG_TABLES if cfg.kind == "sql" else CATALOG_TABLES + LOG_TABLES
    held = Held()
    delta = {n: t for n in names if (t := landing.read(part, n, held)) is not None}
    watermarks = state.watermarks
    if cfg.kind == "sql":
        catalog = read_catalog(cfg.sql_config(), end, state.watermarks, held)
        watermarks = catalog.watermarks
        delta.update(catalog.tables)
        live_categories = pq.read_table(raw_dir / S.CATEGORIES.filename())
        delta["categories"] = _changed_rows(catalog.tables["categories"], live_categories)
    delta = _hold_late(delta, raw_dir, held, f"date={part.date}")
    delta = {n: t for n, t in delta.items() if t.num_rows or n == "requests"}
    counts = _write(delta, delta_dir)
    held.write(delta_dir)
    staged_raw.mkdir(parents=True, exist_ok=True)
    for name in SPECS:
        if (raw_dir / SPECS[name].filename()).exists() or name in delta:
            S.upsert_table(SPECS[name], raw_dir, delta_dir, staged_raw, sort_by_key=name == "items")
    after = dataclasses.replace(
        state,
        days=day + 1,
        partitions={**state.partitions, str(part.date): landing.fingerprint(part)},
        watermarks=watermarks,
    )
    after.save(staged_raw)
    return IngestResult(
        day=day,
        date=str(part.date),
        **_counts(raw_dir, delta),
        requests=delta["requests"].num_rows,
        day_start=start.isoformat(),
        day_end=end.isoformat(),
        tables=counts,
        held=held.counts(),
    )


def _hold_late(delta: dict[str, pa.Table], raw_dir: Path, held: Held, day: str) -> dict[str, pa.Table]:
    """The delta without its late state rows (``updated_at`` older than the live raw row's), which are held."""
    out = dict(delta)
    for name in STATE_TABLES:
        spec, table = SPECS[name], delta.get(name)
        live_path = raw_dir / spec.filename()
        if table is None or "updated_at" not in spec.columns or not table.num_rows or not live_path.exists():
            continue
        key = list(spec.key)
        live = pq.read_table(live_path, columns=[*key, "updated_at"]).rename_columns([*key, "stored"])
        rows = table.select([*key, "updated_at"]).append_column("_row", pa.array(range(table.num_rows)))
        rows = rows.join(live, keys=key, join_type="inner", use_threads=False)
        late = rows.filter(pc.fill_null(pc.less(rows["updated_at"], rows["stored"]), False)).sort_by("_row")
        for r in late.to_pylist():
            held.add(
                name,
                table.slice(r["_row"], 1).to_pylist()[0],
                r["_row"],
                [LATE],
                f"{day}: {name} {key_text(r, key)} updated_at {r['updated_at']} is older than the "
                f"stored state's ({r['stored']}): a late row, not applied",
            )
        if late.num_rows:
            out[name] = table.filter(pc.invert(pc.is_in(pa.array(range(table.num_rows)), late["_row"])))
    return out


def _counts(raw_dir: Path, delta: dict[str, pa.Table]) -> dict[str, int]:
    """New and delisted items, price changes and new users of the day, against the live raw tables."""
    live = pq.read_table(raw_dir / S.ITEMS.filename(), columns=["item_id", "delisted_at"])
    items = delta.get("items", S.ITEMS.schema.empty_table())
    known = pc.is_in(items["item_id"], live["item_id"])
    was_listed = pc.is_in(items["item_id"], live.filter(pc.is_null(live["delisted_at"]))["item_id"])
    delisted = pc.and_(pc.is_valid(items["delisted_at"]), pc.or_(was_listed, pc.invert(known)))
    new_items = int(pc.sum(pc.invert(known)).as_py() or 0)
    prices = delta.get("price_events")
    changed = len(pc.unique(prices["item_id"])) if prices is not None else 0
    users = delta.get("users")
    new_users = 0
    if users is not None and (raw_dir / S.USERS.filename()).exists():
        old = pq.read_table(raw_dir / S.USERS.filename(), columns=["user_id"])["user_id"]
        new_users = int(pc.sum(pc.invert(pc.is_in(users["user_id"], old))).as_py() or 0)
    return {
        "new_items": new_items,
        "delisted": int(pc.sum(delisted).as_py() or 0),
        "price_changes": max(changed - new_items, 0),
        "new_users": new_users,
    }
