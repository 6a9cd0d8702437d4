"""The sql source against a real PostgreSQL (``tests/postgres_fixtures.py``: a server of its own,
started from Debian's package, a fresh database per test), the tiny export's catalog written to it,
read back by the first run and by one incremental day; the tables equal those read from the files
export. Skipped, with the reason, only when the PostgreSQL binaries or psycopg are absent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genrecall.data import schema as S
from genrecall.data.marketplace import MarketplaceConfig
from genrecall.data.sources import SourceConfig, bootstrap, ingest_day
from genrecall.data.sources.export import export
from tests.postgres_fixtures import postgres_server, postgres_url  # noqa: F401

CFG = MarketplaceConfig(preset="tiny", seed=7)


def test_sql_source_reads_a_postgres_catalog_like_the_files_export(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    export(CFG, str(tmp_path / "landing"), days=6)
    export(CFG, str(tmp_path / "log"), days=5, sql_url=postgres_url)  # the database as it is after day 4
    files = SourceConfig(kind="files", files={"root": str(tmp_path / "landing"), "until": "2026-01-05"})
    sql = SourceConfig(kind="sql", files={"root": str(tmp_path / "log")}, sql={"url": postgres_url})
    bootstrap(files, tmp_path / "raw-files")
    boot = bootstrap(sql, tmp_path / "raw-sql")
    assert boot.days == 5 and boot.last_date == "2026-01-05"
    for spec in S.MARKETPLACE_TABLES:
        pd.testing.assert_frame_equal(
            S.read_table(spec, tmp_path / "raw-sql"), S.read_table(spec, tmp_path / "raw-files"), obj=spec.name
        )
    export(CFG, str(tmp_path / "log"), days=6, sql_url=postgres_url)  # day 5 arrives: log partition + database
    ingest_day(files, tmp_path / "raw-files", 5, tmp_path / "stage-files", tmp_path / "delta-files")
    res = ingest_day(sql, tmp_path / "raw-sql", 5, tmp_path / "stage-sql", tmp_path / "delta-sql")
    assert res.new_items > 0 and res.requests > 0
    for spec in S.MARKETPLACE_TABLES:  # by the watermark: exactly the rows the files export carries for day 5
        want, got = tmp_path / "delta-files" / spec.filename(), tmp_path / "delta-sql" / spec.filename()
        if want.exists() and S.read_table(spec, want.parent).shape[0]:
            pd.testing.assert_frame_equal(
                S.read_table(spec, got.parent), S.read_table(spec, want.parent), obj=spec.name
            )
        pd.testing.assert_frame_equal(
            S.read_table(spec, tmp_path / "stage-sql"), S.read_table(spec, tmp_path / "stage-files"), obj=spec.name
        )
