"""SIGKILL inside the daily rebuild's steps, with real processes: the day runs in a subprocess that
kills itself (``genrecall.faults.crashpoint``) in the middle of a step: a staged table half-made, a
cache shard written, a bundle half-saved to the store, a commit with live data moved aside and the
staged copy not yet in, the production pointer moved without its audit record, a DVC add without
its git commit. Each rerun resumes the day; after the last one the day is complete exactly once,
production is the day's bundle, and every table matches an uninterrupted run of the same day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from genrecall.data import schema as S
from genrecall.pipeline.daily import STEPS, Workspace, load_state, run_day
from tests.conftest import REPO_ROOT
from tests.prefect_fixtures import LAYOUT, daily_params, day0_workspace

pytestmark = pytest.mark.slow

BUNDLE = "daily-kill-bundle"
# in the order a resumed day reaches them; each run dies at one, the next run resumes after it
KILLS = (
    "ingest:mid",
    "validate:mid",
    "validate:done-unrecorded",
    "embed:after-cache-shard",
    "drift:done-unrecorded",
    "sids:mid",
    "features:done-unrecorded",
    "finetune:done-unrecorded",
    "evaluate:mid",
    "package:store-copied",
    "package:done-unrecorded",
    "commit:after-live-moved#3",
    "commit:before-cleanup",
    "commit:before-apply",
    "pointer:before-audit",
    "publish:after-gate",
    "version:after-dvc-add",
    "version:after-git-commit",
)


def _run(root: Path, params: Path, kill: str | None, *day: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("GENRECALL_KILL_AT", None)
    if kill:
        env["GENRECALL_KILL_AT"] = kill
    return subprocess.run(
        [sys.executable, "-m", "tests.daily_runner", str(root), str(params), *day],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    """Every validated table sorted by key, and the served method's SID assignments."""
    out = {
        spec.name: S.read_table(spec, root / "data/validated").sort_values(list(spec.key)).reset_index(drop=True)
        for spec in S.MARKETPLACE_TABLES
        if (root / "data/validated" / spec.filename()).exists()
    }
    out["sid_assignments"] = S.read_table(S.SID_ASSIGNMENTS, root / "data/sid/cq_sid").sort_values("item_id")
    return out


def _feast_rows(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root / "data/feast").as_posix(): pq.ParquetFile(p).metadata.num_rows
        for p in sorted((root / "data/feast").rglob("*.parquet"))
    }


def test_sigkill_inside_every_step_then_rerun_completes_the_day_once(tmp_path: Path) -> None:
    from genrecall.serving.bundle import list_bundles, resolve, verify
    from genrecall.serving.gate import ProductionPointer, production_tag

    root = day0_workspace(tmp_path / "ws", BUNDLE)
    params = daily_params(BUNDLE)
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(params))
    prod0 = production_tag(BUNDLE)
    commits0 = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    ).stdout
    ws = Workspace(root, **LAYOUT)

    log = []
    for kill in KILLS:
        done = _run(root, params_file, kill)
        assert done.returncode == -9, f"{kill}: expected SIGKILL, got {done.returncode}\n{done.stderr[-3000:]}"
        state = load_state(ws, 5)
        log.append((kill, sorted(state["steps"], key=STEPS.index)))
        assert not state.get("done"), kill
        step = kill.split(":")[0] if not kill.startswith("pointer") else "publish"
        assert step not in state["steps"], f"{kill}: the killed step must not be recorded as done"
        if STEPS.index(step) < STEPS.index("publish"):
            assert production_tag(BUNDLE) == prod0, f"{kill}: production moved before publish"

    final = _run(root, params_file, None)
    assert final.returncode == 0, final.stderr[-3000:]
    state = load_state(ws, 5)
    assert state["done"] and set(state["steps"]) == set(STEPS)
    tag = state["steps"]["package"]["result"]["tag"]
    assert production_tag(BUNDLE) == tag, "the day's bundle is production (the test gate lets it through)"
    events = [json.loads(e) for e in ProductionPointer(BUNDLE).events.read_text().splitlines()]
    assert [e["production"] for e in events].count(tag) == 1, "one promotion, one audit record"
    assert next(e for e in events if e["production"] == tag).get("recovered"), "the record the kill lost was rebuilt"
    for t in list_bundles(BUNDLE):
        verify(resolve(t)[0])  # nothing half-saved in the store
    commits = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    ).stdout
    assert int(commits) == int(commits0) + 1, "the day is versioned exactly once"
    assert not list(root.glob("data/*.old-day*")) and not list(root.glob("models/*.old-day*"))
    live = _tables(root)
    assert _run(root, params_file, None, "5").returncode == 0 and load_state(ws, 5)["steps"] == state["steps"], (
        "rerunning a finished day changes nothing"
    )
    assert all(live[k].equals(v) for k, v in _tables(root).items())

    # the same day, uninterrupted, in a copy of day 0: every table the same, no row lost or duplicated
    ref = day0_workspace(tmp_path / "ref", BUNDLE + "-ref", dvc=False)
    run_day(
        Workspace(ref, **LAYOUT),
        {**params, "daily": {**params["daily"], "bundle_name": BUNDLE + "-ref"}, "package": {"name": BUNDLE + "-ref"}},
    )
    mine, theirs = _tables(root), _tables(ref)
    assert set(mine) == set(theirs)
    for name in mine:
        pd.testing.assert_frame_equal(
            mine[name].reset_index(drop=True), theirs[name].reset_index(drop=True), obj=f"table {name}"
        )
    assert mine["requests"]["request_id"].is_unique and mine["items"]["item_id"].is_unique
    assert _feast_rows(root) == _feast_rows(ref), "Feast sources: the same rows as an uninterrupted day"
    print("kill points tried:", json.dumps(log))
