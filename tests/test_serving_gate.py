"""The promotion gate on a real BentoML model store: compare, promote atomically, reject, roll back."""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path

import pytest

from genrecall.pipeline.package import PackageConfig, package
from genrecall.serving.bundle import BundleError, list_bundles, save_to_store
from genrecall.serving.gate import GateConfig, ProductionPointer, compare, gate, metric_value, promote, rollback
from tests.serving_fixtures import TINY_METRICS, make_bundle, shared_tiny_pipeline


@pytest.fixture(scope="session")
def tiny():
    return shared_tiny_pipeline()


def _metrics(**changes: float) -> dict:
    m = copy.deepcopy(TINY_METRICS)
    for path, value in changes.items():
        a, b, c = path.split("__")
        m[a][b][c.replace("_at_", "@")] = value
    return m


def _stored(tiny, tmp_path: Path, name: str, label: str, metrics: dict) -> str:
    return save_to_store(make_bundle(tiny, tmp_path / label, metrics=metrics), name=name)


def test_compare_rule() -> None:
    cfg = GateConfig(metrics=("s/m/hitrate@10", "s/m/beams_to_target"), abs_tolerance=0.01, rel_tolerance=0.1)
    prod = {"s": {"m": {"hitrate@10": 0.5, "beams_to_target": 30}}}
    ok = compare({"s": {"m": {"hitrate@10": 0.46, "beams_to_target": 32}}}, prod, cfg)  # within 10% / 3 beams
    assert [c.passed for c in ok] == [True, True]
    bad = compare({"s": {"m": {"hitrate@10": 0.44, "beams_to_target": 34}}}, prod, cfg)
    assert [c.passed for c in bad] == [False, False]  # lower hitrate, more beams: both worse
    missing = compare({}, prod, cfg)
    assert not any(c.passed for c in missing)
    assert all(c.passed for c in compare({}, prod, GateConfig(metrics=cfg.metrics, require_metrics=False)))
    assert metric_value(prod, "s/m/hitrate@10") == 0.5 and metric_value(prod, "s/x") is None


def test_gate_promotes_first_rejects_worse_and_rolls_back(tiny, tmp_path: Path) -> None:
    name = "gate-test"
    cfg = GateConfig(name=name)
    pointer = ProductionPointer(name)
    first = _stored(tiny, tmp_path, name, "first", TINY_METRICS)
    d1 = gate(first, cfg)
    assert d1.promoted and pointer.current() == first and "first bundle" in d1.reasons[0]

    worse = _stored(tiny, tmp_path, name, "worse", _metrics(semantic__cq_sid__hitrate_at_10=0.30))
    d2 = gate(worse, cfg)
    assert not d2.promoted and d2.production == first
    assert pointer.current() == first  # the old bundle keeps serving
    assert worse in list_bundles(name)  # the rejected one stays in the store for inspection
    assert any("semantic/cq_sid/hitrate@10" in r for r in d2.reasons)
    saved = json.loads((pointer.root / "decisions" / f"{worse.split(':')[1]}.json").read_text())
    assert saved["promoted"] is False

    noisy = _stored(tiny, tmp_path, name, "noisy", _metrics(semantic__cq_sid__hitrate_at_10=0.397))
    assert gate(noisy, cfg).promoted  # within tolerance (0.003 < max(0.005, 2% of 0.40))
    worse_served = _stored(tiny, tmp_path, name, "worse-served", _metrics(personalized__served__items_at_1000=0.50))
    assert not gate(worse_served, cfg).promoted  # the served generator's own truncated hitrate is gated
    better = _stored(tiny, tmp_path, name, "better", _metrics(personalized__served__hitrate_at_10=0.50))
    assert gate(better, cfg).promoted and pointer.current() == better
    assert pointer.history() == [first, noisy]

    assert rollback(name=name) == noisy and pointer.current() == noisy
    assert rollback(name=name) == first and pointer.current() == first
    with pytest.raises(BundleError, match="no earlier production bundle"):
        rollback(name=name)
    assert pointer.read()["rolled_back"] == [better, noisy]
    assert promote(worse, name=name) == first and pointer.current() == worse  # a manual override still works
    events = (pointer.root / f"{name}.events.jsonl").read_text().splitlines()
    assert [json.loads(e)["event"] for e in events] == ["promote"] * 3 + ["rollback"] * 2 + ["promote"]


def test_pointer_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pointer = ProductionPointer("atomic", root=tmp_path)
    pointer.set("atomic:a")
    real_replace = os.replace

    def crash(src, dst):  # the process dies after writing the temp file, before the rename
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        pointer.set("atomic:b")
    monkeypatch.setattr(os, "replace", real_replace)
    assert pointer.current() == "atomic:a"  # the old pointer, whole
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no half-written leftovers

    # readers racing writers only ever see a complete pointer
    seen, stop = [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(json.loads(pointer.path.read_text())["production"])

    t = threading.Thread(target=reader)
    t.start()
    for i in range(200):
        pointer.set(f"atomic:v{i}")
    stop.set()
    t.join()
    assert seen and all(s == "atomic:a" or s.startswith("atomic:v") for s in seen)
    assert pointer.current() == "atomic:v199" and len(pointer.history()) == 200


def test_package_stage_saves_and_gates(tiny, tmp_path: Path) -> None:
    cfg = PackageConfig(name="package-test")
    first = package(cfg, **tiny.package_kwargs(), report=tmp_path / "package.json")
    assert first.promoted and first.production == first.tag and first.previous is None
    assert json.loads((tmp_path / "package.json").read_text())["tag"] == first.tag
    worse_metrics = tmp_path / "metrics.json"
    worse_metrics.write_text(json.dumps(_metrics(personalized__cq_sid__items_at_1000=0.1)))
    second = package(cfg, **{**tiny.package_kwargs(), "metrics_path": worse_metrics})
    assert not second.promoted and second.production == first.tag and second.previous == first.tag
    assert second.tag != first.tag and second.tag in list_bundles("package-test")
    skipped = package(PackageConfig(name="package-test", run_gate=False), **{**tiny.package_kwargs(), "params": {"x": 1}})
    assert not skipped.promoted and skipped.production == first.tag
