"""The Makefile's pipeline target as a newcomer runs it: no venv activated, so the stages' `genrecall`
must come from the venv's bin through PATH. A stand-in venv (stub `dvc` and `genrecall`) keeps it
to a second: the recipe, the environment it gives DVC, nothing installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

STUB_DVC = """#!/usr/bin/env bash
# what a stage's `cmd` would see when `dvc repro` runs it
echo "dvc $*" >> "$LOG"
echo "genrecall=$(command -v genrecall)" >> "$LOG"
echo "state=$BENTOML_HOME $PREFECT_HOME $DVC_SITE_CACHE_DIR" >> "$LOG"
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_pipeline_puts_the_venv_bin_on_path_for_dvc_stages(tmp_path: Path) -> None:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("dvc", STUB_DVC), ("genrecall", "#!/usr/bin/env bash\n"), ("python", "#!/usr/bin/env bash\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / ".installed").touch()  # newer than pyproject.toml/constraints.txt: make installs nothing
    log = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env |= {"LOG": str(log), "PATH": "/usr/bin:/bin"}  # no venv on the user's PATH
    run = subprocess.run(
        ["make", "-C", str(REPO_ROOT), "pipeline", f"VENV={tmp_path / 'venv'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "dvc repro"
    assert lines[1] == f"genrecall={bin_dir / 'genrecall'}", "stages would not find the venv's genrecall"
    state = REPO_ROOT / ".state"
    assert lines[2] == f"state={state / 'bentoml'} {state / 'prefect'} {state / 'dvc-site'}"


def test_ci_entry_point_parses_and_ends_in_make_test() -> None:
    """`.ci/run` is what CI runs on a clean clone: a shell syntax error there fails CI before any test."""
    script = REPO_ROOT / ".ci" / "run"
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    lines = [ln.strip() for ln in script.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[-1] == "make test"  # the README's test command, last, so its exit status is CI's
