"""The files and sql sources at the boundary: what a real export gets wrong, each caught with a clear
error or quarantined with a reason, never a silent default; a rerun of an ingested day changes nothing.

One tiny export (7 days, seed 7) is made per module and copied per test; each test breaks one thing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from genrecall.data import schema as S
from genrecall.data.marketplace import MarketplaceConfig
from genrecall.data.sources import BoundaryError, SourceConfig, SourceState, bootstrap, ingest_day
from genrecall.data.sources.export import export

CFG = MarketplaceConfig(preset="tiny", seed=7)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    export(CFG, str(root / "landing"), days=7)
    export(CFG, str(root / "csv"), days=5, fmt="csv")
    export(CFG, str(root / "nogt"), days=5, ground_truth=False)
    export(CFG, str(root / "log"), days=5, sql_url=f"sqlite:///{root / 'shop.db'}")
    return root


@pytest.fixture
def lake(exported: Path, tmp_path: Path) -> Path:
    shutil.copytree(exported / "landing", tmp_path / "landing")
    return tmp_path / "landing"


def files(root: Path, until: str | None = "2026-01-05") -> SourceConfig:
    return SourceConfig(kind="files", files={"root": str(root), "until": until})


def part(lake: Path, day: str, table: str) -> Path:
    return lake / f"date={day}" / f"{table}.parquet"


def rewrite(path: Path, change: Any) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def ingest(cfg: SourceConfig, raw: Path, day: int, tmp: Path) -> tuple[Path, Path]:
    stage, delta = tmp / f"stage{day}", tmp / f"delta{day}"
    ingest_day(cfg, raw, day, stage, delta)
    return stage, delta


# -- schema-level: a clear error naming table, column and file ------------------------------------------
def test_missing_column_names_table_column_and_file(lake: Path, tmp_path: Path) -> None:
    rewrite(part(lake, "2026-01-01", "items"), lambda t: t.drop_columns(["brand"]))
    with pytest.raises(
        BoundaryError, match=r"table 'items' from .*date=2026-01-01/items.parquet: missing column\(s\) \['brand'\]"
    ):
        bootstrap(files(lake), tmp_path / "raw")


def test_renamed_column_is_named_as_such(lake: Path, tmp_path: Path) -> None:
    rewrite(
        part(lake, "2026-01-01", "items"),
        lambda t: t.rename_columns(["price_eur" if c == "price" else c for c in t.column_names]),
    )
    with pytest.raises(
        BoundaryError,
        match=r"missing column\(s\) \['price'\]; unexpected column\(s\) \['price_eur'\] \(a renamed column\?\)",
    ):
        bootstrap(files(lake), tmp_path / "raw")


def test_extra_column_is_an_error(lake: Path, tmp_path: Path) -> None:
    rewrite(part(lake, "2026-01-02", "requests"), lambda t: t.append_column("session", pa.array(["s"] * t.num_rows)))
    with pytest.raises(
        BoundaryError,
        match=r"table 'requests' from .*date=2026-01-02/requests.parquet: unexpected column\(s\) \['session'\]",
    ):
        bootstrap(files(lake), tmp_path / "raw")


def test_changed_type_parquet_and_csv(lake: Path, exported: Path, tmp_path: Path) -> None:
    rewrite(
        part(lake, "2026-01-01", "items"),
        lambda t: t.set_column(t.schema.get_field_index("price"), "price", pc_str(t["price"])),
    )
    with pytest.raises(
        BoundaryError,
        match=r"table 'items' from .*items.parquet: column 'price' has type string; the contract says double",
    ):
        bootstrap(files(lake), tmp_path / "raw")
    csv = tmp_path / "csv"
    shutil.copytree(exported / "csv", csv)
    path = csv / "date=2026-01-03" / "requests.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["request_id"] = [f"r-{i}" for i in range(len(df))]  # the whole column: ids became text
    df.to_csv(path, index=False)
    with pytest.raises(
        BoundaryError,
        match=r"table 'requests' from .*requests.csv: column 'request_id', row 2: 'r-0' is not int64 .*the whole "
        r"column: a changed type\?",
    ):
        bootstrap(files(csv), tmp_path / "raw-csv")


def test_one_unparsable_csv_value_quarantines_its_row(exported: Path, tmp_path: Path) -> None:
    """A CSV column of the right type with one bad value: that row is held back at the boundary and
    quarantined by the validate stage with the reason (``price:type``) and where it came from."""
    from genrecall.data.validate import ValidateConfig
    from genrecall.pipeline.validate import validate

    csv = tmp_path / "csv"
    shutil.copytree(exported / "csv", csv)
    path = csv / "date=2026-01-01" / "items.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    bad_item = int(df.loc[4, "item_id"])
    df.loc[4, "price"] = "12,99 EUR"
    df.to_csv(path, index=False)
    boot = bootstrap(files(csv, until=None), tmp_path / "raw")
    assert boot.held == {"items": 1}
    raw_items = S.read_table(S.ITEMS, tmp_path / "raw")
    assert bad_item not in set(raw_items["item_id"])  # not re-delivered later, so not in the raw tables at all

    report = validate(ValidateConfig(), tmp_path / "raw", tmp_path / "v", tmp_path / "q", tmp_path / "r.json")
    items = report.tables["items"]
    assert (items.rows_in, items.quarantined, items.reasons.get("price:type")) == (len(raw_items) + 1, 1, 1)
    q = pq.read_table(tmp_path / "q" / "items.parquet").to_pandas()
    row = q[q["reasons"].map(lambda r: "price:type" in list(r))]
    assert len(row) == 1 and int(row["item_id"].iloc[0]) == bad_item and row["price"].iloc[0] == "12,99 EUR"
    assert "date=2026-01-01/items.csv: column 'price', row 6: '12,99 EUR' is not double" in row["detail"].iloc[0]
    # the requests that showed the item are quarantined as unknown items, not merged
    assert bad_item not in set(S.read_table(S.ITEMS, tmp_path / "v")["item_id"])


def pc_str(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col.cast(pa.string())


# -- days: missing, twice, already ingested -------------------------------------------------------------------
def test_missing_day(lake: Path, tmp_path: Path) -> None:
    shutil.rmtree(lake / "date=2026-01-03")
    with pytest.raises(BoundaryError, match=r"day\(s\) 2026-01-03 missing"):
        bootstrap(files(lake), tmp_path / "raw")


def test_missing_and_not_yet_arrived_daily_day(lake: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    bootstrap(files(lake), raw)
    shutil.rmtree(lake / "date=2026-01-06")
    with pytest.raises(
        BoundaryError, match=r"day 2026-01-06 is missing .*date=2026-01-06 is absent while \['2026-01-07'\] exist"
    ):
        ingest(files(lake), raw, 5, tmp_path)
    shutil.rmtree(lake / "date=2026-01-07")
    with pytest.raises(BoundaryError, match=r"day 2026-01-06 has not arrived"):
        ingest(files(lake), raw, 5, tmp_path)


def test_day_arriving_twice(lake: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    bootstrap(files(lake), raw)
    # one table twice in a partition (Parquet and CSV)
    pd.DataFrame({"x": [1]}).to_csv(lake / "date=2026-01-06" / "requests.csv", index=False)
    with pytest.raises(BoundaryError, match=r"day 2026-01-06: table 'requests' arrives twice"):
        ingest(files(lake), raw, 5, tmp_path)
    (lake / "date=2026-01-06" / "requests.csv").unlink()
    # an ingested day delivered again with other content
    rewrite(part(lake, "2026-01-04", "requests"), lambda t: t.slice(0, 10))
    with pytest.raises(
        BoundaryError, match=r"day 2026-01-04 arrives twice: date=2026-01-04 changed after it was ingested"
    ):
        ingest(files(lake), raw, 5, tmp_path)


def test_a_same_size_change_to_an_ingested_day_is_caught(exported: Path, tmp_path: Path) -> None:
    """The fingerprint is the bytes' sha256: one letter of a query changed keeps the file's size."""
    csv = tmp_path / "csv"
    shutil.copytree(exported / "csv", csv)
    raw = tmp_path / "raw"
    bootstrap(files(csv, until="2026-01-04"), raw)
    path = csv / "date=2026-01-02" / "requests.csv"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    row = pd.read_csv(path, dtype=str, keep_default_na=False).loc[3]
    query = row["query"]
    i = next(i for i, c in enumerate(query) if c.isalpha())
    changed = query[:i] + ("b" if query[i] != "b" else "c") + query[i + 1 :]
    lines[4] = lines[4].replace(query, changed, 1)
    path.write_text("".join(lines))
    assert len(path.read_bytes()) == len(text.encode()) and path.read_text() != text
    with pytest.raises(
        BoundaryError,
        match=r"day 2026-01-02 arrives twice: date=2026-01-02 changed after it was ingested "
        r"\(requests.csv changed\)",
    ):
        ingest(files(csv, until="2026-01-04"), raw, 4, tmp_path)


def test_rerunning_an_ingested_day_changes_nothing(lake: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    bootstrap(files(lake), raw)
    stage, _ = ingest(files(lake), raw, 5, tmp_path)
    before = {p.name: p.read_bytes() for p in sorted(stage.iterdir())}
    with pytest.raises(BoundaryError, match=r"day 4 \(2026-01-05\) was already ingested"):
        ingest(files(lake), raw, 4, tmp_path)
    again, _ = ingest(files(lake), raw, 5, tmp_path / "again")  # the same day from the same live data: same bytes
    assert {p.name: p.read_bytes() for p in sorted(again.iterdir())} == before
    assert SourceState.load(stage).days == 6 and SourceState.load(raw).days == 5


# -- rows: late, re-delivered -> validation's quarantine with reasons ----------------------------------------
def _validate_day(raw: Path, delta: Path, tmp: Path, day_start: str, day_end: str) -> Any:
    from genrecall.data.validate import ValidateConfig
    from genrecall.pipeline.validate import validate

    validate(ValidateConfig(), raw, tmp / "live", tmp / "q0", tmp / "r0.json")
    cfg = ValidateConfig(day_start=day_start, day_end=day_end, max_bad_share=1.0)
    report = validate(cfg, delta, tmp / "good", tmp / "q", tmp / "r.json", reference_dir=tmp / "live")
    return report, pq.read_table(tmp / "q" / "requests.parquet").to_pandas()


def test_late_and_redelivered_log_rows_are_quarantined_with_reasons(lake: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    bootstrap(files(lake), raw)
    day4, day5 = (
        pq.read_table(part(lake, "2026-01-05", "requests")),
        pq.read_table(part(lake, "2026-01-06", "requests")),
    )
    late = day4.slice(0, 3).set_column(0, "request_id", pa.array([10_000_001, 10_000_002, 10_000_003], pa.int64()))
    pq.write_table(pa.concat_tables([day5, late, day4.slice(5, 2)]), part(lake, "2026-01-06", "requests"))
    ground = pq.read_table(part(lake, "2026-01-06", "ground_truth"))
    pq.write_table(ground, part(lake, "2026-01-06", "ground_truth"))
    _, delta = ingest(files(lake), raw, 5, tmp_path)
    report, q = _validate_day(raw, delta, tmp_path, "2026-01-06T00:00:00+00:00", "2026-01-07T00:00:00+00:00")
    reasons = {int(r): list(x) for r, x in zip(q["request_id"], q["reasons"])}
    assert set(reasons) == {10_000_001, 10_000_002, 10_000_003, *day4.slice(5, 2)["request_id"].to_pylist()}
    assert all("ts:in_day" in reasons[i] for i in (10_000_001, 10_000_002, 10_000_003))
    for rid in day4.slice(5, 2)["request_id"].to_pylist():
        assert "request_id:not_ingested_before" in reasons[rid]
    assert report.tables["requests"].good == day5.num_rows  # the day's own rows all pass


def _older_copy(items: pa.Table, item_id: int, title: str) -> pa.Table:
    """``item_id``'s row with another title and an ``updated_at`` one hour older than its own."""
    row = items.filter(pc.equal(items["item_id"], item_id))
    older = pc.subtract(row["updated_at"], pa.scalar(3600 * 10**6, pa.duration("us")))
    row = row.set_column(
        row.schema.get_field_index("updated_at"), "updated_at", older.cast(row.schema.field("updated_at").type)
    )
    return row.set_column(row.schema.get_field_index("title"), "title", pa.array([title]))


def test_a_late_item_row_never_overwrites_the_newer_state(lake: Path, tmp_path: Path) -> None:
    """Daily: an ITEMS row older than the stored state is held back and quarantined
    (``updated_at:older_than_stored``); the stored state stays."""
    from genrecall.data.validate import ValidateConfig
    from genrecall.pipeline.validate import validate

    raw = tmp_path / "raw"
    bootstrap(files(lake), raw)
    stored = pq.read_table(raw / "items.parquet")
    item = int(stored["item_id"][3].as_py())
    path = part(lake, "2026-01-06", "items")
    pq.write_table(pa.concat_tables([pq.read_table(path), _older_copy(stored, item, "stale title")]), path)
    stage, delta = ingest(files(lake), raw, 5, tmp_path)
    after = S.read_table(S.ITEMS, stage).set_index("item_id")
    assert after.loc[item, "title"] == stored.to_pandas().set_index("item_id").loc[item, "title"] != "stale title"
    assert item not in set(S.read_table(S.ITEMS, delta)["item_id"])

    validate(ValidateConfig(), raw, tmp_path / "live", tmp_path / "q0", tmp_path / "r0.json")
    report = validate(
        ValidateConfig(), delta, tmp_path / "good", tmp_path / "q", tmp_path / "r.json", reference_dir=tmp_path / "live"
    )
    assert report.tables["items"].reasons.get("updated_at:older_than_stored") == 1
    q = pq.read_table(tmp_path / "q" / "items.parquet").to_pandas()
    late = q[q["reasons"].map(lambda r: "updated_at:older_than_stored" in list(r))]
    assert list(late["title"]) == ["stale title"] and "a late row, not applied" in late["detail"].iloc[0]


def test_a_late_item_row_in_the_first_run_is_held_back(lake: Path, tmp_path: Path) -> None:
    """First run: per item the row with the latest ``updated_at`` is the state; a row delivered in a
    later partition with an older ``updated_at`` is held back for the quarantine, never applied."""
    from genrecall.data.validate import ValidateConfig
    from genrecall.pipeline.validate import validate

    day0 = pq.read_table(part(lake, "2026-01-01", "items"))
    item = int(day0["item_id"][7].as_py())
    path = part(lake, "2026-01-03", "items")
    n = pq.read_metadata(path).num_rows
    pq.write_table(pa.concat_tables([pq.read_table(path), _older_copy(day0, item, "stale title")]), path)
    boot = bootstrap(files(lake), tmp_path / "raw")
    assert boot.held == {"items": 1}
    raw = S.read_table(S.ITEMS, tmp_path / "raw").set_index("item_id")
    assert raw.loc[item, "title"] != "stale title"
    report = validate(ValidateConfig(), tmp_path / "raw", tmp_path / "v", tmp_path / "q", tmp_path / "r.json")
    assert report.passed and report.tables["items"].reasons == {"updated_at:older_than_stored": 1}
    q = pq.read_table(tmp_path / "q" / "items.parquet").to_pandas()
    assert int(q["source_row"].iloc[0]) == n  # its row in date=2026-01-03/items.parquet
    assert (
        "partition date=2026-01-03" in q["detail"].iloc[0] and "from partition date=2026-01-01" in q["detail"].iloc[0]
    )


def test_sql_first_run_keeps_to_the_cutoff_whatever_the_query(exported: Path, tmp_path: Path) -> None:
    """The database has moved on two days past the cutoff; a query without ``:since``/``:until`` still
    reads only rows up to the cutoff's end (the window is applied to the result), so the first run
    equals the default queries' read; the later rows wait for their days."""
    db = f"sqlite:///{tmp_path / 'later.db'}"
    export(CFG, str(tmp_path / "log"), days=7, sql_url=db)  # the database as it is after day 6
    plain = {t: f"SELECT * FROM {t}" for t in ("items", "price_events", "users")}
    log = {"root": str(exported / "log"), "until": "2026-01-05"}
    bootstrap(SourceConfig(kind="sql", files=log, sql={"url": db}), tmp_path / "default")
    bootstrap(SourceConfig(kind="sql", files=log, sql={"url": db, "queries": plain}), tmp_path / "plain")
    end = pd.Timestamp("2026-01-06", tz="UTC")
    for spec, col in ((S.ITEMS, "updated_at"), (S.PRICE_EVENTS, "ts"), (S.USERS, "created_at")):
        got = S.read_table(spec, tmp_path / "plain")
        assert (got[col] < end).all() and len(got)
        pd.testing.assert_frame_equal(got, S.read_table(spec, tmp_path / "default"), obj=spec.name)


# -- formats and optional tables --------------------------------------------------------------------------------
def test_csv_parquet_sqlite_and_no_ground_truth_read_the_same(exported: Path, tmp_path: Path) -> None:
    from genrecall.data.validate import ValidateConfig
    from genrecall.pipeline.validate import validate

    want = bootstrap(files(exported / "landing"), tmp_path / "parquet")
    bootstrap(files(exported / "csv", until=None), tmp_path / "csv")
    sql = SourceConfig(
        kind="sql",
        files={"root": str(exported / "log"), "until": "2026-01-05"},
        sql={"url": f"sqlite:///{exported / 'shop.db'}"},
    )
    bootstrap(sql, tmp_path / "sql")
    nogt = bootstrap(files(exported / "nogt", until=None), tmp_path / "nogt")
    for spec in S.MARKETPLACE_TABLES:
        ref = S.read_table(spec, tmp_path / "parquet")
        for other in ("csv", "sql"):
            pd.testing.assert_frame_equal(S.read_table(spec, tmp_path / other), ref, obj=f"{other} {spec.name}")
    assert "ground_truth" not in nogt.rows and not (tmp_path / "nogt" / "ground_truth.parquet").exists()
    assert want.rows["ground_truth"] > 0
    report = validate(ValidateConfig(), tmp_path / "nogt", tmp_path / "v", tmp_path / "q", tmp_path / "r.json")
    assert report.passed and "ground_truth" not in report.tables
