"""Shared test set-up: telemetry off, tool state in a temp dir, tests find the repo root."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Before any tool is imported by a test module: telemetry off, state away from $HOME and the repo.
# The Makefile exports the workspace's own state dirs; tests must never write into (or depend on) them:
# a `make run` workspace holds a production bundle that a test bundle would be gated against.
_STATE = Path(tempfile.mkdtemp(prefix="genrecall-test-state-"))
for _var in ("BENTOML_HOME", "PREFECT_HOME", "DVC_SITE_CACHE_DIR"):
    os.environ.pop(_var, None)
os.environ["GENRECALL_HOME"] = str(_STATE)
from genrecall.env import apply_defaults  # noqa: E402

apply_defaults(_STATE)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repo (holds the Home Depot dev set); may be absent."""
    return REPO_ROOT.parent / "shared"
