"""The promotion gate: a new bundle replaces production only if its metrics are no worse.

Production is a pointer file in the BentoML home, ``<BENTOML_HOME>/genrecall/<name>.production.json``::

    {"production": "genrecall-bundle:<version>", "history": [older production tags, newest last],
     "rolled_back": [...], "updated_at": "...", "reason": "..."}

Why a pointer file and not BentoML model labels: moving a "production" label is two writes (take it
off the old model, put it on the new), and a crash between them leaves zero or two production bundles.
The pointer changes with one ``os.replace`` of a fully written temp file, which is atomic on POSIX:
a reader sees the old pointer or the new one, never half of one. Writers take an ``flock`` so two
promotions cannot interleave. Every change is also appended to ``<name>.events.jsonl`` (audit trail),
and every gate decision is kept in ``decisions/<version>.json``. A rejected bundle stays in the store.

Gate rule, per gated metric (a path into ``reports/metrics.json`` such as
``semantic/cq_sid/hitrate@10``): the candidate fails when it is worse than production by more than
``max(abs_tolerance, rel_tolerance * production value)`` (lower-is-better metrics, e.g.
``beams_to_target``, are compared the other way). The first bundle always promotes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genrecall.serving.bundle import BUNDLE_NAME, BundleError, _write_json_atomic, bundle_metrics, resolve, verify


@dataclass(frozen=True)
class GateConfig:
    """Which metrics gate a promotion and how much worse they may get (params.yaml ``gate``)."""

    metrics: tuple[str, ...] = (
        "semantic/cq_sid/hitrate@10",  # the paper's headline: semantic click hitrate (Table 2)
        "personalized/served/hitrate@10",  # the served generator (UQ2SID or an EG-GRPO variant) on its test set
        "personalized/served/items@1000",  # truncated hitrate: what the ranker actually receives
    )
    abs_tolerance: float = 0.005  # half a hitrate point: below the run-to-run noise of the small preset
    rel_tolerance: float = 0.02  # 2% of the production value, for metrics far from zero
    lower_is_better: tuple[str, ...] = ("beams_to_target",)  # metric names (last path part) where less is better
    require_metrics: bool = True  # a candidate missing a gated metric that production has is rejected
    name: str = BUNDLE_NAME  # the BentoML model name whose production pointer this gate moves


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    candidate: float | None
    production: float | None
    allowed_drop: float
    passed: bool
    note: str = ""


@dataclass
class GateDecision:
    """The outcome of one gate run."""

    candidate: str
    production: str | None  # production before the decision
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[MetricCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- metric comparison ------------------------------------------------------------------------------
def metric_value(metrics: dict[str, Any], path: str) -> float | None:
    """The number at ``a/b/c`` in a nested mapping, or None when absent or not a number."""
    node: Any = metrics
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def compare(candidate: dict[str, Any], production: dict[str, Any], cfg: GateConfig) -> list[MetricCheck]:
    """One check per gated metric (see the module docstring for the rule)."""
    checks = []
    for path in cfg.metrics:
        c, p = metric_value(candidate, path), metric_value(production, path)
        if p is None:
            checks.append(MetricCheck(path, c, p, 0.0, True, "production has no value: not gated"))
            continue
        if c is None:
            checks.append(MetricCheck(path, c, p, 0.0, not cfg.require_metrics, "candidate has no value"))
            continue
        allowed = max(cfg.abs_tolerance, cfg.rel_tolerance * abs(p))
        drop = (c - p) if path.rsplit("/", 1)[-1] in cfg.lower_is_better else (p - c)
        checks.append(MetricCheck(path, c, p, allowed, drop <= allowed + 1e-12,
                                  f"{'worse' if drop > 0 else 'better or equal'} by {abs(drop):.4g}"))
    return checks


# -- the production pointer ---------------------------------------------------------------------------
def bentoml_home() -> Path:
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return Path(BentoMLContainer.bentoml_home.get())
    except Exception:  # pragma: no cover - a BentoML without the container
        return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))


class ProductionPointer:
    """The atomic "which bundle is production" pointer of one bundle name."""

    def __init__(self, name: str = BUNDLE_NAME, root: str | Path | None = None) -> None:
        self.name = name
        self.root = Path(root) if root is not None else bentoml_home() / "genrecall"
        self.path = self.root / f"{name}.production.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{self.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"production": None, "history": [], "rolled_back": []}
        return json.loads(self.path.read_text())

    def current(self) -> str | None:
        """The production tag, or None before the first promotion."""
        return self.read().get("production")

    def promoted_at(self, tag: str) -> str | None:
        """When ``tag`` last became production (``<name>.events.jsonl``: a promotion or a rollback to it),
        or None when it never was."""
        events = self.root / f"{self.name}.events.jsonl"
        last = None
        for line in events.read_text().splitlines() if events.exists() else []:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a torn last line after a crash: the rest still counts
                continue
            if event.get("production") == tag:
                last = event.get("at")
        return last

    def history(self) -> list[str]:
        """Earlier production tags, newest last (what ``rollback`` walks back through)."""
        return list(self.read().get("history", []))

    def _write(self, state: dict[str, Any], event: str, reason: str) -> None:
        state = {**state, "name": self.name, "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "reason": reason}
        _write_json_atomic(self.path, state)
        with open(self.root / f"{self.name}.events.jsonl", "a") as log:
            log.write(json.dumps({"event": event, "production": state["production"], "at": state["updated_at"],
                                  "reason": reason}) + "\n")

    def set(self, tag: str, *, reason: str = "promoted") -> str | None:
        """Make ``tag`` production (atomically); returns the previous production tag."""
        with self._locked():
            state = self.read()
            previous = state.get("production")
            if previous == tag:
                return previous
            history = list(state.get("history", [])) + ([previous] if previous else [])
            self._write({**state, "production": tag, "history": history}, "promote", reason)
            return previous

    def rollback(self, *, reason: str = "rollback") -> str:
        """Restore the previous production bundle; returns its tag. Raises when there is none."""
        with self._locked():
            state = self.read()
            history = list(state.get("history", []))
            if not history:
                raise BundleError(f"no earlier production bundle of {self.name!r} to roll back to")
            back = history.pop()
            rolled = list(state.get("rolled_back", [])) + ([state["production"]] if state.get("production") else [])
            self._write({**state, "production": back, "history": history, "rolled_back": rolled}, "rollback", reason)
            return back


# -- the gate -----------------------------------------------------------------------------------------------
def gate(candidate: str, cfg: GateConfig | None = None, *, pointer: ProductionPointer | None = None,
         force: bool = False) -> GateDecision:
    """Promote ``candidate`` (a store tag) to production if it passes the gate (or ``force``).

    The candidate is verified first; production's metrics are read from its manifest. The decision
    is saved beside the pointer whatever it is.
    """
    cfg = cfg or GateConfig()
    pointer = pointer or ProductionPointer(cfg.name)
    path, tag = resolve(candidate)
    tag = tag or str(candidate)
    manifest = verify(path)
    production = pointer.current()
    decision = GateDecision(tag, production, promoted=False)
    if production is None:
        decision.reasons.append("first bundle: promoted without comparison")
    elif production == tag:
        decision.reasons.append("already production")
    else:
        try:
            prod_metrics = bundle_metrics(production)
        except BundleError as exc:  # production vanished from the store: nothing to compare against
            prod_metrics = {}
            decision.reasons.append(f"production unreadable ({exc}); compared against nothing")
        decision.checks = compare(manifest.metrics, prod_metrics, cfg)
        failed = [c for c in decision.checks if not c.passed]
        decision.reasons += [f"{c.metric}: {c.candidate} vs production {c.production} ({c.note}, "
                             f"allowed drop {c.allowed_drop:.4g})" for c in failed]
        if force and failed:
            decision.reasons.append("forced")
    decision.promoted = force or all(c.passed for c in decision.checks)
    if decision.promoted and production != tag:
        pointer.set(tag, reason="; ".join(decision.reasons) or "passed the gate")
    decisions = pointer.root / "decisions"
    decisions.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(decisions / f"{tag.split(':', 1)[-1]}.json", decision.to_dict())
    return decision


def promote(tag: str, *, name: str = BUNDLE_NAME, reason: str = "manual promote") -> str | None:
    """Make ``tag`` production without the metric comparison (it is still verified); returns the old tag."""
    path, resolved = resolve(tag)
    verify(path)
    return ProductionPointer(name).set(resolved or str(tag), reason=reason)


def rollback(*, name: str = BUNDLE_NAME) -> str:
    """Point production back at the previous bundle; returns the tag now in production."""
    return ProductionPointer(name).rollback()


def production_tag(name: str = BUNDLE_NAME) -> str | None:
    return ProductionPointer(name).current()
