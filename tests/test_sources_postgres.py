"""The sql source against a real PostgreSQL: a server of its own (initdb + pg_ctl in a temp dir, on
a free port; as the ``postgres`` user when run as root), the tiny export's catalog written to it, read
back by the first run and by one incremental day; the tables equal those read from the files export.

Skipped, with the reason, only when Debian's PostgreSQL binaries (/usr/lib/postgresql/*/bin) or
psycopg are absent (.ci/run installs the ``postgresql`` package).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from genrecall.data import schema as S
from genrecall.data.marketplace import MarketplaceConfig
from genrecall.data.sources import SourceConfig, bootstrap, ingest_day
from genrecall.data.sources.export import export

BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
CFG = MarketplaceConfig(preset="tiny", seed=7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not BINS:
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = Path(BINS[-1]).parent
    home = Path(tempfile.mkdtemp(prefix="genrecall-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as Debian's postgres user
        shutil.chown(home, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = home / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
    opts = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(home / "log"), "-w", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def test_sql_source_reads_a_postgres_catalog_like_the_files_export(postgres_url: str, tmp_path: Path) -> None:
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
