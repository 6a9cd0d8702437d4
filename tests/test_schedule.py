"""`make schedule`'s process on a real Prefect server: a scheduled daily rebuild actually runs.

``python -m flows.serve_schedule`` (what `make schedule` runs) in a subprocess, with a schedule whose
first run is due seconds after start: it starts ``prefect server start`` on a loopback port with its
own database, serves the deployment there, and the scheduler (not a manual trigger) makes the flow
run. The test reads the run back through the Prefect API, bounded in time, and checks that SIGTERM
stops both the runner and the server. Pure helpers of ``genrecall.prefect_server`` are checked too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from genrecall.prefect_server import ServerConfig, ServerError, api_url, healthy, prefect_api, prefect_server, ui_url
from tests.conftest import REPO_ROOT

BUNDLE = "schedule-bundle"
RUN_DEADLINE_S = 480  # server start (~20 s on a fresh database) + first run due 15 s later + one tiny day


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_urls_and_health_of_nothing() -> None:
    assert api_url("127.0.0.1", 4200) == "http://127.0.0.1:4200/api"
    assert ui_url("http://127.0.0.1:4200/api") == "http://127.0.0.1:4200"
    assert not healthy(api_url("127.0.0.1", free_port()), timeout=0.5)


def test_a_taken_port_or_a_dead_user_server_fails_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = ServerConfig(port=taken.getsockname()[1])
        with pytest.raises(ServerError, match="already in use"), prefect_server(cfg, home=tmp_path):
            pass
    monkeypatch.setenv("PREFECT_API_URL", api_url("127.0.0.1", free_port()))
    with pytest.raises(ServerError, match="does not answer"), prefect_api():
        pass


def _completed_scheduled_runs(api: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["daily-rebuild"])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["daily"])),
        )
    ended = [r for r in runs if r.state is not None and r.state.is_final()]
    bad = [r for r in ended if not r.state.is_completed()]  # type: ignore[union-attr]
    assert not bad, f"a scheduled run ended {bad[0].state.type}: {bad[0].state.message}"  # type: ignore[union-attr]
    return ended


@pytest.mark.slow
def test_make_schedule_fires_the_daily_rebuild_on_a_real_server(tmp_path: Path) -> None:
    from tests.prefect_fixtures import daily_params, day0_workspace  # the tiny pipeline: heavy imports

    ws = day0_workspace(tmp_path / "ws", BUNDLE)
    (ws / ".state").mkdir(exist_ok=True)
    (ws / "cache").rename(ws / ".state" / "embed-cache")  # the default layout, as after `dvc repro`
    (ws / "params.yaml").write_text(yaml.safe_dump(daily_params(BUNDLE)))
    port, log = free_port(), tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT}"}
    cmd = [sys.executable, "-m", "flows.serve_schedule", "--workspace", str(ws), "--every", "3600", "--port", str(port)]
    api = api_url("127.0.0.1", port)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline, runs = time.monotonic() + RUN_DEADLINE_S, list[Any]()
        while not runs:
            assert proc.poll() is None, f"serve_schedule exited {proc.returncode}:\n{log.read_text()[-4000:]}"
            tail = log.read_text()[-4000:]
            assert time.monotonic() < deadline, f"no scheduled run completed in {RUN_DEADLINE_S} s:\n{tail}"
            time.sleep(3)
            runs = _completed_scheduled_runs(api) if healthy(api) else []
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    run = runs[0]
    assert run.auto_scheduled, "the run came from the schedule, not from a manual trigger"
    assert run.parameters["workspace"] == str(ws.resolve())
    assert list((ws / "daily").glob("day-*/reports/summary.md")), "the flow run did not finish a day in the workspace"
    assert proc.returncode == 0, log.read_text()[-4000:]
    assert not healthy(api, timeout=1) and not (tmp_path / "prefect" / "genrecall-server.pid").exists(), (
        "stopping serve_schedule left its Prefect server running"
    )
