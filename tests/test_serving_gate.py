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
    skipped = package(
        PackageConfig(name="package-test", run_gate=False), **{**tiny.package_kwargs(), "params": {"x": 1}}
    )
    assert not skipped.promoted and skipped.production == first.tag


def test_unreadable_production_refuses_promotion_unless_forced(tiny, tmp_path: Path) -> None:
    """Nothing compared is nothing passed: a production bundle whose metrics cannot be read (deleted from
    the store, a dangling pointer) blocks the gate; ``force`` promotes and the decision says so."""
    import bentoml

    name = "gate-unreadable"
    cfg = GateConfig(name=name)
    pointer = ProductionPointer(name)
    first = _stored(tiny, tmp_path, name, "first", TINY_METRICS)
    assert gate(first, cfg).promoted
    bentoml.models.delete(first)  # production vanished from the store
    cand = _stored(tiny, tmp_path, name, "cand", _metrics(semantic__cq_sid__hitrate_at_10=0.99))
    refused = gate(cand, cfg)
    assert not refused.promoted and pointer.current() == first
    assert any("unreadable" in r and "--force" in r for r in refused.reasons), refused.reasons
    forced = gate(cand, cfg, force=True)
    assert forced.promoted and pointer.current() == cand and forced.reasons[-1] == "forced"
    saved = json.loads((pointer.root / "decisions" / f"{cand.split(':')[1]}.json").read_text())
    assert saved["promoted"] and "forced" in saved["reasons"]


def test_gate_reads_compares_and_writes_under_one_lock(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A promotion racing the gate waits until the gate has written: it cannot land between the gate's
    read of production and its write (which would promote a bundle compared against a stale production)."""
    import importlib

    G = importlib.import_module("genrecall.serving.gate")  # the module (the package re-exports gate())
    name = "gate-lock"
    cfg = GateConfig(name=name)
    first = _stored(tiny, tmp_path, name, "first", TINY_METRICS)
    assert gate(first, cfg).promoted
    cand = _stored(tiny, tmp_path, name, "cand", _metrics(semantic__cq_sid__hitrate_at_10=0.41))
    real = G.bundle_metrics
    racer: dict[str, threading.Thread] = {}

    def slow_metrics(tag: str) -> dict:  # while the gate compares, someone else promotes
        racer["t"] = threading.Thread(target=lambda: ProductionPointer(name).set(f"{name}:racer", reason="racer"))
        racer["t"].start()
        racer["t"].join(timeout=1.0)
        assert racer["t"].is_alive(), "the racing promotion must wait for the gate's lock"
        return real(tag)

    monkeypatch.setattr(G, "bundle_metrics", slow_metrics)
    decision = gate(cand, cfg)
    racer["t"].join(timeout=10)
    assert decision.promoted and decision.production == first
    events = [json.loads(e) for e in (ProductionPointer(name).events).read_text().splitlines()]
    assert [e["production"] for e in events] == [first, cand, f"{name}:racer"], "gate's write came first"


@pytest.mark.slow
def test_a_kill_between_pointer_write_and_audit_record_is_repaired(tmp_path: Path) -> None:
    """SIGKILL after the pointer's rename, before its event is logged: the pointer is whole, and the next
    writer appends the missing audit record (marked recovered) before its own."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    pointer = ProductionPointer("killed", root=tmp_path)
    pointer.set("killed:a")
    code = (
        f"from genrecall.serving.gate import ProductionPointer; "
        f"ProductionPointer('killed', root={str(tmp_path)!r}).set('killed:b', reason='about to die')"
    )
    env = {
        **os.environ,
        "GENRECALL_KILL_AT": "pointer:before-audit",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == -9, done.stderr[-2000:]
    assert pointer.current() == "killed:b"
    assert [json.loads(e)["production"] for e in pointer.events.read_text().splitlines()] == ["killed:a"]
    pointer.set("killed:c")
    events = [json.loads(e) for e in pointer.events.read_text().splitlines()]
    assert [(e["production"], e.get("recovered", False)) for e in events] == [
        ("killed:a", False),
        ("killed:b", True),
        ("killed:c", False),
    ]
    assert events[1]["reason"] == "about to die" and pointer.promoted_at("killed:b") == events[1]["at"]
