"""A real PostgreSQL for the sql-source tests: one server per test session, a fresh database per test.

Not a test module. ``postgres_server`` runs initdb + pg_ctl from Debian's ``postgresql`` package in a
temp dir, on a free port (as the ``postgres`` user when run as root: initdb refuses root), and stops
it at the end of the session. ``postgres_url`` creates a new database on it for each test and yields
its SQLAlchemy URL. Both skip, with the reason, only when the binaries (/usr/lib/postgresql/*/bin) or
psycopg are absent (.ci/run installs the ``postgresql`` package).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def postgres_available() -> str | None:
    """None when a server can be started here, else why not."""
    if not BINS:
        return "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The server's URL without a database name: ``postgresql+psycopg://postgres@127.0.0.1:<port>``."""
    why = postgres_available()
    if why:
        pytest.skip(why)
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
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server (tests never see each other's tables)."""
    import sqlalchemy as sa

    name = f"shop_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{postgres_server}/{name}"
