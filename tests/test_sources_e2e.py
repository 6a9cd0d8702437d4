"""A shop's own data end to end: ``genrecall export`` writes the tiny simulator as a shop would deliver
it (daily partitions; or the catalog in a database and the log in partitions), ``dvc repro`` runs the
committed pipeline on that source, then the daily rebuild ingests two more days from it.

The validated tables must come out identical to the simulator path's (the same preset and seed through
``generate`` + ``validate``, for 5 days after ``dvc repro`` and for 7 after the two daily days), and
each day's bundle must be promoted. The sql case advances the database by one exported day before each
daily run, as a shop's database moves on. Uses SQLite; tests/test_sources_postgres.py reads the same
export from a real PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from genrecall.config import merge_params
from genrecall.data import schema as S
from tests.test_dvc_repro import BIN, SIZE_OVERRIDES, clone_committed, dvc, workspace_env

pytestmark = pytest.mark.slow
SEED = 42  # params.yaml's generate.seed: SIZE_OVERRIDES changes the preset only
DAILY = {  # two quick daily days: a short fine-tune, no DVC versioning, a gate that lets tiny-model noise through
    "daily": {"dvc": False, "finetune": {"max_steps": 4, "batch_size": 16, "warmup_steps": 1, "num_threads": 1}},
    "gate": {"abs_tolerance": 1.0},
}
RUN_DAY = """
import json, sys
from genrecall.env import apply_defaults
apply_defaults()
import torch
torch.set_num_threads(1)
from genrecall.pipeline.daily import Workspace, run_day
state = run_day(Workspace(sys.argv[1]), json.load(open(sys.argv[2])))
print(json.dumps({"day": state["day"], "done": state.get("done"), **state["steps"]["publish"]["result"]}, default=str))
"""


def _export(out: Path, *args: str) -> None:
    run = subprocess.run(
        [str(BIN / "genrecall"), "export", "--preset", "tiny", "--seed", str(SEED), *args],
        capture_output=True,
        text=True,
        cwd=out,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _simulator_validated(root: Path, days: int) -> Path:
    """The simulator path: generate + validate for ``days`` days of the same preset and seed."""
    from genrecall.data.marketplace import MarketplaceConfig
    from genrecall.data.validate import ValidateConfig
    from genrecall.pipeline.generate import generate
    from genrecall.pipeline.validate import validate

    generate(MarketplaceConfig(preset="tiny", seed=SEED, days=days), root / "raw", show_progress=False)
    validate(ValidateConfig(), root / "raw", root / "validated", root / "quarantine", root / "validation.json")
    return root / "validated"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("simulator")
    return {d: _simulator_validated(base / f"days{d}", d) for d in (5, 7)}


def assert_same_tables(got: Path, want: Path) -> None:
    for spec in S.MARKETPLACE_TABLES:
        a, b = S.read_table(spec, got), S.read_table(spec, want)
        key = list(spec.key)
        a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, obj=f"validated {spec.name}")


def _daily(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    path = root / ".state" / "daily-params.json"
    path.write_text(json.dumps(params))
    run = subprocess.run(
        [sys.executable, "-c", RUN_DAY, str(root), str(path)],
        cwd=root,
        env=workspace_env(root),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, f"daily day failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["files", "sql"])
def test_dvc_repro_and_two_daily_days_on_a_shops_exports(kind: str, tmp_path: Path, reference: dict[int, Path]) -> None:
    landing, db = tmp_path / "landing", tmp_path / "shop.db"
    sql_args = ["--sql", f"sqlite:///{db}"] if kind == "sql" else []
    days = 5 if kind == "sql" else 7  # files: the whole lake at once, the first run stops at the cutoff
    _export(tmp_path, "--files", str(landing), "--days", str(days), *sql_args)

    root = tmp_path / "clone"
    clone_committed(root)
    params = merge_params(yaml.safe_load((root / "params.yaml").read_text()), SIZE_OVERRIDES)
    source: dict[str, Any] = {"kind": kind, "files": {"root": str(landing), "until": "2026-01-05"}}
    if kind == "sql":
        source["sql"] = {"url": f"sqlite:///{db}"}
    params["source"] = source
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    run = dvc(root, "repro", timeout=1200)
    assert run.returncode == 0, f"dvc repro failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert json.loads((root / "data/raw/source.json").read_text())["days"] == 5
    assert_same_tables(root / "data/validated", reference[5])
    package = json.loads((root / "reports/package.json").read_text())
    assert package["promoted"], package

    results = []
    for day in (5, 6):
        if kind == "sql":
            _export(tmp_path, "--files", str(landing), "--days", str(day + 1), *sql_args)  # the shop moves on
        results.append(_daily(root, merge_params(params, DAILY)))
    assert [r["day"] for r in results] == [5, 6]
    assert all(r["done"] and r["promoted"] for r in results), results
    assert_same_tables(root / "data/validated", reference[7])
