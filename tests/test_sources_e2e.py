"""A shop's own data end to end, run the way a user runs it: ``genrecall export`` writes the tiny
simulator as a shop would deliver it (daily partitions; or the catalog in a database and the log in
partitions), params.yaml points ``source`` at it, ``dvc repro`` runs the committed pipeline, then
``genrecall backfill`` (the Prefect daily flow, on Prefect's temporary server) ingests two more days.

The validated tables must come out identical to the simulator path's (the same preset and seed through
``generate`` + ``validate``, for 5 days after ``dvc repro`` and for 7 after the two daily days), and
each day's bundle must be promoted. The sql case runs against a real PostgreSQL when Debian's binaries
are here (``tests/postgres_fixtures.py``; SQLite otherwise, and SQLite is always covered by
tests/test_sources_boundary.py); its database moves on by one exported day before each daily run, as a
shop's does, so it runs ``genrecall backfill --days 1`` twice; the files case, whose lake already holds
both days, runs ``genrecall backfill --days 2``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from genrecall.config import merge_params
from genrecall.data import schema as S
from tests.postgres_fixtures import postgres_available, postgres_server, postgres_url  # noqa: F401
from tests.test_dvc_repro import BIN, SIZE_OVERRIDES, clone_committed, dvc, workspace_env

pytestmark = pytest.mark.slow
SEED = 42  # params.yaml's generate.seed: SIZE_OVERRIDES changes the preset only
DAILY = {  # two quick daily days: a short fine-tune, no DVC versioning, a gate that lets tiny-model noise through
    "daily": {"dvc": False, "finetune": {"max_steps": 4, "batch_size": 16, "warmup_steps": 1, "num_threads": 1}},
    "gate": {"abs_tolerance": 1.0},
}


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


def _backfill(root: Path, days: int) -> list[dict[str, Any]]:
    """``genrecall backfill --days <days>`` in the workspace, as the README says; the days' states."""
    before = len(list((root / "data/daily").glob("day-*/state.json"))) if (root / "data/daily").exists() else 0
    run = subprocess.run(
        [str(BIN / "genrecall"), "backfill", "--days", str(days)],
        cwd=root,
        env=workspace_env(root),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert run.returncode == 0, f"genrecall backfill failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    states = sorted((root / "data/daily").glob("day-*/state.json"))
    assert len(states) == before + days, [str(p) for p in states]
    return [json.loads(p.read_text()) for p in states[before:]]


def _shop_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh PostgreSQL database when a server can be started here, else an SQLite file."""
    if postgres_available() is None:
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'shop.db'}"


@pytest.mark.parametrize("kind", ["files", "sql"])
def test_dvc_repro_and_two_daily_days_on_a_shops_exports(
    kind: str, tmp_path: Path, reference: dict[int, Path], request: pytest.FixtureRequest
) -> None:
    landing = tmp_path / "landing"
    db = _shop_db(request, tmp_path) if kind == "sql" else None
    sql_args = ["--sql", db] if db else []
    _export(tmp_path, "--files", str(landing), "--days", "5" if db else "7", *sql_args)  # files: the whole lake

    root = tmp_path / "clone"
    clone_committed(root)
    params = merge_params(yaml.safe_load((root / "params.yaml").read_text()), merge_params(SIZE_OVERRIDES, DAILY))
    source: dict[str, Any] = {"kind": kind, "files": {"root": str(landing), "until": "2026-01-05"}}
    if db:
        source["sql"] = {"url": db}
    params["source"] = source
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    run = dvc(root, "repro", timeout=1200)
    assert run.returncode == 0, f"dvc repro failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert json.loads((root / "data/raw/source.json").read_text())["days"] == 5
    assert_same_tables(root / "data/validated", reference[5])
    package = json.loads((root / "reports/package.json").read_text())
    assert package["promoted"], package
    data = json.loads((root / "reports/metrics.json").read_text())["data"]
    assert data["source"] == kind and "preset" not in data, data  # a shop's data: no simulator preset

    if db:  # the shop's database moves on between daily runs: export the next day, run one day
        states = []
        for day in (5, 6):
            _export(tmp_path, "--files", str(landing), "--days", str(day + 1), *sql_args)
            states += _backfill(root, 1)
    else:
        states = _backfill(root, 2)
    assert [s["day"] for s in states] == [5, 6]
    for s in states:
        assert s.get("done") and s["steps"]["publish"]["result"]["promoted"], s["steps"]["publish"]
        assert s["steps"]["ingest"]["result"]["held"] == {}  # a clean export: nothing held back
    assert_same_tables(root / "data/validated", reference[7])
