"""A Prefect server for the workspace, so schedules fire: ``prefect server start`` on loopback.

Without ``PREFECT_API_URL`` Prefect runs flows against an ephemeral server it starts on demand, which
has no scheduler: ``flow.serve`` with a schedule warns "Cannot schedule flows on an ephemeral server"
and nothing ever fires. ``prefect_api()`` yields the API to use: the user's ``PREFECT_API_URL`` when
set (checked, never started or stopped here), else a server this process starts, with its database
under ``$PREFECT_HOME`` (``.state/prefect`` in a workspace), bound to 127.0.0.1, and stops on exit.

    with prefect_api(ServerConfig(port=4200)) as api_url:   # http://127.0.0.1:4200/api; UI at :4200
        ...                                                  # PREFECT_API_URL points there meanwhile

No Prefect import here: the server is a subprocess and health is one HTTP GET, so the caller can set
``PREFECT_API_URL`` before Prefect loads its settings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOG_NAME = "server.log"  # the server's output, beside its database in $PREFECT_HOME
PID_NAME = "genrecall-server.pid"


class ServerError(RuntimeError):
    """The Prefect server could not be started or reached."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback only: the API has no authentication
    port: int = 4200  # Prefect's default; the UI is served on the same port
    startup_timeout_s: float = 120.0  # a fresh database takes ~20 s to migrate on 2 busy cores
    stop_timeout_s: float = 30.0  # SIGTERM, then SIGKILL after this


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def ui_url(api: str) -> str:
    return api.rstrip("/").removesuffix("/api")


def healthy(api: str, timeout: float = 2.0) -> bool:
    """True when ``GET <api>/health`` answers ``true``."""
    try:
        with urllib.request.urlopen(f"{api.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200 and r.read().strip() == b"true"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _home() -> Path:
    from genrecall.env import apply_defaults

    apply_defaults()  # PREFECT_HOME defaults to <workspace>/.state/prefect
    return Path(os.environ["PREFECT_HOME"])


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to the server's process group (uvicorn shuts down cleanly), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def prefect_server(cfg: ServerConfig | None = None, home: Path | None = None) -> Iterator[str]:
    """Start ``prefect server start`` (state in ``home``, default ``$PREFECT_HOME``), yield its API
    URL once healthy, stop it on exit. Refuses a port that is already taken."""
    cfg = cfg or ServerConfig()
    home = home or _home()
    home.mkdir(parents=True, exist_ok=True)
    url = api_url(cfg.host, cfg.port)
    if port_in_use(cfg.host, cfg.port):
        pid_file = home / PID_NAME
        pid = pid_file.read_text().strip() if pid_file.exists() else ""
        who = f" (by an earlier server of this workspace? pid {pid})" if pid else ""
        raise ServerError(
            f"{cfg.host}:{cfg.port} is already in use{who}. Stop it, pick another port "
            "(make schedule PREFECT_PORT=4201) or point PREFECT_API_URL at a running server."
        )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    log_path = home / LOG_NAME
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
        "--analytics-off",
    ]
    with log_path.open("ab") as log:
        # own session: a Ctrl-C in the terminal reaches only the caller, which stops its runner first
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (home / PID_NAME).write_text(f"{proc.pid}\n")
    try:
        deadline = time.monotonic() + cfg.startup_timeout_s
        while not healthy(url):
            if proc.poll() is not None:
                raise ServerError(f"prefect server exited with {proc.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise ServerError(f"prefect server not healthy after {cfg.startup_timeout_s:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc, cfg.stop_timeout_s)
        (home / PID_NAME).unlink(missing_ok=True)


@contextmanager
def prefect_api(cfg: ServerConfig | None = None) -> Iterator[str]:
    """The user's ``PREFECT_API_URL`` if set, else a workspace server (``prefect_server``);
    ``PREFECT_API_URL`` names it in this process's environment meanwhile (child processes inherit it)."""
    user = os.environ.get("PREFECT_API_URL")
    if user:
        if not healthy(user):
            raise ServerError(
                f"PREFECT_API_URL={user} does not answer {user.rstrip('/')}/health; "
                "start that server, or unset PREFECT_API_URL to start one in the workspace"
            )
        yield user
        return
    with prefect_server(cfg) as url:
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)
