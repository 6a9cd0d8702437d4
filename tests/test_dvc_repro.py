"""The project's own pipeline, run as a user runs it: ``dvc repro`` over the committed dvc.yaml.

A ``git clone`` of the repo (the committed tree: HEAD, not the working tree) in a temporary directory,
its params.yaml changed only in size (``SIZE_OVERRIDES``: the ``tiny`` preset, the hash encoder, the
smallest step counts), then ``dvc repro`` to the end, ``package`` included. DVC itself refuses a
param missing from params.yaml, a missing dep and a declared out the command did not write, so this
fails whenever dvc.yaml and the code disagree. The clone's own ``src/`` runs the stages, and all tool
state (BentoML store, Prefect, DVC site cache) stays inside the clone, as ``make`` keeps it in a
workspace. ``test_dvc_yaml.py`` checks the same file statically, in the fast tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from genrecall.config import merge_params
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent  # the venv's dvc and genrecall

# params.yaml, made small: every override is a size (data, encoder, model, steps, samples, beams).
SIZE_OVERRIDES: dict[str, Any] = {
    "generate": {"preset": "tiny"},
    "embed": {"encoder": "hash", "hash_dim": 32},
    "sid": {
        "epochs": 1,
        "hidden_dims": [32],
        "latent_dim": 8,
        "codebook_sizes": ["auto", 4, 4],
        "kmeans_iters": 3,
        "batch_size": 64,
    },
    "train": {
        "tokenizer": {"vocab_size": 300},
        "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64},
        **{
            stage: {"max_steps": 3, "batch_size": 16, "warmup_steps": 1, "num_threads": 1}
            for stage in ("i2sid", "q2sid", "uq2sid")
        },
    },
    "train_rl": {"grpo": {"steps": 2, "prompts_per_step": 2, "num_threads": 1}, "max_requests": 16},
    "evaluate": {
        "max_requests": 30,
        "beams": [1, 2, 5, 10],
        "report_beams": [1, 10],
        "personalized_beams": 10,
        "num_threads": 1,
    },
}


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def clone_committed(dest: Path) -> str:
    """Clone the repo's HEAD into ``dest``; warn when the working tree has changes the clone lacks."""
    head = _git("rev-parse", "HEAD", cwd=REPO_ROOT)
    dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=REPO_ROOT)
    if dirty:
        warnings.warn(
            f"testing the committed tree {head[:10]}; uncommitted changes are not in it:\n{dirty}", stacklevel=2
        )
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(dest)], check=True)
    if _git("rev-parse", "HEAD", cwd=dest) != head:  # e.g. a detached HEAD in CI
        _git("reset", "--quiet", "--hard", head, cwd=dest)
    return head


def workspace_env(root: Path) -> dict[str, str]:
    """What ``make`` gives a workspace: its own code, tool state under ``.state/``, telemetry off."""
    env = {k: v for k, v in os.environ.items() if k not in ("GENRECALL_PARAMS", "PYTHONPATH")}
    state = root / ".state"
    return env | {
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(root / "src"),  # the clone's code, not whichever genrecall the venv installed
        "GENRECALL_HOME": str(root),
        "PREFECT_HOME": str(state / "prefect"),
        "BENTOML_HOME": str(state / "bentoml"),
        "DVC_SITE_CACHE_DIR": str(state / "dvc-site"),
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        "OMP_NUM_THREADS": "1",
    }


def dvc(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=root,
        env=workspace_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_dvc_repro_runs_the_committed_pipeline_to_the_end(tmp_path: Path) -> None:
    root = tmp_path / "clone"
    clone_committed(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(merge_params(params, SIZE_OVERRIDES), sort_keys=False))

    run = dvc(root, "repro", timeout=1200)
    assert run.returncode == 0, f"dvc repro failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(stages), f"dvc.lock lacks {set(stages) - set(lock)}"
    status = dvc(root, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout or "{}") == {}, (
        f"not up to date right after repro (a stage changed its own deps?):\n{status.stdout}{status.stderr}"
    )

    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert metrics["data"]["preset"] == "tiny"
    assert {"grpo", "eg_grpo_k2", "eg_grpo_k4"} <= set(metrics["personalized"])  # train_rl's variants evaluated
    package = json.loads((root / "reports" / "package.json").read_text())
    assert package["promoted"] and package["production"] == package["tag"], package  # the first bundle
    store = root / ".state" / "bentoml" / "models" / params["package"]["name"]
    assert store.is_dir(), "the bundle is not in the clone's own BentoML store"
