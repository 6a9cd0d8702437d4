"""Set-up shared by the daily-rebuild tests: one Prefect test server per process, and a day-0
workspace (the tiny pipeline + a promoted first bundle, in a git + DVC repo with a local remote).

Not a test module. ``day0_workspace(tmp)`` copies one cached tiny pipeline run (built once per
process by ``tests/pipeline_fixtures.py``) so each test starts from the same day 0 in seconds.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_fixtures import TINY_PARAMS, run_tiny_pipeline

LAYOUT = {"cache": "cache"}  # run_tiny_pipeline keeps its embedding cache in <root>/cache
DVC = str(Path(sys.executable).with_name("dvc"))
_CACHE: dict[str, Any] = {}


def daily_params(bundle_name: str, **daily: Any) -> dict[str, Any]:
    """TINY_PARAMS + a short fine-tune + a gate that lets tiny-model noise through (the gate's own
    rule is tested in test_serving_gate.py; here the question is what gets published)."""
    p = copy.deepcopy(TINY_PARAMS)
    p["daily"] = {
        "bundle_name": bundle_name,
        "finetune": {"max_steps": 8, "batch_size": 32, "warmup_steps": 2, "num_threads": 1},
        **daily,
    }
    p["gate"] = {"abs_tolerance": 1.0}
    p["package"] = {"name": bundle_name}
    return p


def _tiny_root() -> Path:
    if "root" not in _CACHE:
        import torch

        torch.set_num_threads(1)
        root = Path(tempfile.mkdtemp(prefix="genrecall-daily-day0-")) / "ws"
        run_tiny_pipeline(root)
        _CACHE["root"] = root
    return _CACHE["root"]


def git_dvc_repo(root: Path, remote: Path) -> None:
    """Make ``root`` a git repo with DVC and a local default remote, everything so far committed."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*args: str) -> None:
        subprocess.run(args, cwd=root, check=True, capture_output=True, env={**os.environ, **env})

    run("git", "init", "-q")
    (root / ".gitignore").write_text("/data/\n/models/\n/reports/\n/cache/\n/.state/\n")
    run(DVC, "init", "-q")
    run(DVC, "remote", "add", "-d", "local", str(remote))
    run(DVC, "config", "core.analytics", "false")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "day 0")


def day0_workspace(dest: Path, bundle_name: str, *, dvc: bool = True) -> Path:
    """A copy of the tiny day-0 workspace at ``dest`` with its first bundle promoted as ``bundle_name``."""
    from genrecall.pipeline.package import PackageConfig, package

    shutil.copytree(_tiny_root(), dest, symlinks=True)
    package(
        PackageConfig(name=bundle_name),
        generator_dir=dest / "models/generator/cq_sid/uq2sid/final",
        sid_model_dir=dest / "models/sid/cq_sid",
        index_dir=dest / "data/sid/cq_sid",
        data_dir=dest / "data/validated",
        metrics_path=dest / "reports/metrics.json",
        params={"day": 0},
        dvc_lock=dest / "no-dvc.lock",
    )
    if dvc:
        git_dvc_repo(dest, dest.parent / "dvc-remote")
    return dest


_HARNESS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def prefect_harness(request: pytest.FixtureRequest) -> None:
    """One temporary Prefect server for the whole session (~20 s to start; STACK.md gotcha 2)."""
    if "cm" not in _HARNESS:
        from prefect.testing.utilities import prefect_test_harness

        cm = prefect_test_harness(server_startup_timeout=120)
        cm.__enter__()
        _HARNESS["cm"] = cm
        request.config.add_cleanup(lambda: cm.__exit__(None, None, None))
