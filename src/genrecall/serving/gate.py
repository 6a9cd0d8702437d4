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
The pointer is written first and the audit record second; a process killed between the two leaves
a pointer whose change the log lacks, and the next writer (under the lock) appends the missing
record, marked ``recovered``, before doing anything else.

The gate reads production, compares and moves the pointer under one lock, so a concurrent promotion
cannot slip in between the comparison and the write. When production's metrics cannot be read (its
bundle vanished from the store, or its manifest is unreadable) the gate refuses: nothing was
compared, so nothing passed. ``force`` (``genrecall package --force``) overrides, and says so.

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
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genrecall.atomic import write_json_atomic
from genrecall.faults import crashpoint
from genrecall.serving.bundle import BUNDLE_NAME, BundleError, bundle_metrics, resolve, verify


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
    basis: str = "bundle manifests"  # what was compared: the manifests, or numbers a caller measured (daily gate)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateDecision:
        return cls(**{**d, "checks": [MetricCheck(**c) for c in d.get("checks", [])]})

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
        checks.append(
            MetricCheck(
                path,
                c,
                p,
                allowed,
                drop <= allowed + 1e-12,
                f"{'worse' if drop > 0 else 'better or equal'} by {abs(drop):.4g}",
            )
        )
    return checks


# -- the production pointer ---------------------------------------------------------------------------
def bentoml_home() -> Path:
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return Path(BentoMLContainer.bentoml_home.get())
    except Exception:  # pragma: no cover - a BentoML without the container
        return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))


_HELD = threading.local()  # lock files this thread holds -> depth (the pointer lock is re-entrant per thread)


class ProductionPointer:
    """The atomic "which bundle is production" pointer of one bundle name."""

    def __init__(self, name: str = BUNDLE_NAME, root: str | Path | None = None) -> None:
        self.name = name
        self.root = Path(root) if root is not None else bentoml_home() / "genrecall"
        self.path = self.root / f"{name}.production.json"
        self.events = self.root / f"{name}.events.jsonl"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the pointer's ``flock`` (re-entrant within a thread): read-decide-write as one step.

        On entry the audit log is reconciled with the pointer (see the module docstring)."""
        self.root.mkdir(parents=True, exist_ok=True)
        key = str((self.root / f"{self.name}.lock").resolve())
        held: dict[str, int] = _HELD.__dict__.setdefault("depth", {})
        if held.get(key):
            held[key] += 1
            try:
                yield
            finally:
                held[key] -= 1
            return
        with open(key, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held[key] = 1
            try:
                self._reconcile()
                yield
            finally:
                held[key] = 0
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _reconcile(self) -> None:
        """Append the audit record of a pointer change whose writer died before logging it."""
        if not self.path.exists():
            return
        state = self.read()
        last = None
        for line in self.events.read_text().splitlines() if self.events.exists() else []:
            try:
                last = json.loads(line)
            except json.JSONDecodeError:  # a torn last line: ignored, the record is rewritten below
                continue
        if last is None or (last.get("production"), last.get("at")) != (
            state.get("production"),
            state.get("updated_at"),
        ):
            self._log(state.get("event", "promote"), state, recovered=True)

    def _log(self, event: str, state: dict[str, Any], *, recovered: bool = False) -> None:
        record = {
            "event": event,
            "production": state.get("production"),
            "at": state.get("updated_at"),
            "reason": state.get("reason"),
        }
        if recovered:
            record["recovered"] = True  # written by the next writer: the original one was killed before it
        with open(self.events, "a") as log:
            log.write(json.dumps(record) + "\n")
            log.flush()
            os.fsync(log.fileno())

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
        last = None
        for line in self.events.read_text().splitlines() if self.events.exists() else []:
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
        state = {
            **state,
            "name": self.name,
            "updated_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "reason": reason,
            "event": event,
        }
        write_json_atomic(self.path, state)
        crashpoint("pointer:before-audit")  # drill: the pointer moved, the audit record is not written yet
        self._log(event, state)

    def set(self, tag: str, *, reason: str = "promoted") -> str | None:
        """Make ``tag`` production (atomically); returns the previous production tag."""
        with self.locked():
            state = self.read()
            previous = state.get("production")
            if previous == tag:
                return previous
            history = list(state.get("history", [])) + ([previous] if previous else [])
            self._write({**state, "production": tag, "history": history}, "promote", reason)
            return previous

    def rollback(self, *, reason: str = "rollback") -> str:
        """Restore the previous production bundle; returns its tag. Raises when there is none."""
        with self.locked():
            state = self.read()
            history = list(state.get("history", []))
            if not history:
                raise BundleError(f"no earlier production bundle of {self.name!r} to roll back to")
            back = history.pop()
            rolled = list(state.get("rolled_back", [])) + ([state["production"]] if state.get("production") else [])
            self._write({**state, "production": back, "history": history, "rolled_back": rolled}, "rollback", reason)
            return back


# -- the gate -----------------------------------------------------------------------------------------------
def gate(
    candidate: str,
    cfg: GateConfig | None = None,
    *,
    pointer: ProductionPointer | None = None,
    force: bool = False,
    measured: tuple[dict[str, Any], dict[str, Any]] | None = None,
    expected_production: str | None = None,
    basis: str = "",
) -> GateDecision:
    """Promote ``candidate`` (a store tag) to production if it passes the gate (or ``force``).

    The candidate is verified first. Under the pointer's lock: production is read, its metrics come
    from its manifest and the candidate's from its own, or both from ``measured`` = (candidate,
    production) numbers a caller measured side by side for ``expected_production`` (the daily gate's
    paired sample, described by ``basis``; ignored when production has moved since), compared, and
    the pointer written. Unreadable production metrics refuse promotion unless ``force``. The decision
    is saved beside the pointer whatever it is; an existing decision of a bundle that is already
    production is kept (a rerun after a crash must not overwrite why it was promoted).
    """
    cfg = cfg or GateConfig()
    pointer = pointer or ProductionPointer(cfg.name)
    path, tag = resolve(candidate)
    tag = tag or str(candidate)
    manifest = verify(path)
    saved = pointer.root / "decisions" / f"{tag.split(':', 1)[-1]}.json"
    with pointer.locked():
        production = pointer.current()
        decision = GateDecision(tag, production, promoted=False)
        if production is None:
            decision.reasons.append("first bundle: promoted without comparison")
            decision.promoted = True
        elif production == tag:
            if saved.exists():
                return GateDecision.from_dict(json.loads(saved.read_text()))
            decision.reasons.append("already production")
            decision.promoted = True
        else:
            prod_metrics: dict[str, Any] | None = None
            cand_metrics = manifest.metrics
            if measured is not None and production == expected_production:
                cand_metrics, prod_metrics = measured
                decision.basis = basis or "numbers measured by the caller"
            else:
                try:
                    prod_metrics = bundle_metrics(production)
                except (BundleError, OSError, ValueError) as exc:  # vanished from the store, unreadable manifest
                    decision.reasons.append(
                        f"production {production} unreadable ({exc}): nothing to compare "
                        "against, promotion refused (use --force to override)"
                    )
            if prod_metrics is not None:
                decision.checks = compare(cand_metrics, prod_metrics, cfg)
                failed = [c for c in decision.checks if not c.passed]
                decision.reasons += [
                    f"{c.metric}: {c.candidate} vs production {c.production} ({c.note}, "
                    f"allowed drop {c.allowed_drop:.4g})"
                    for c in failed
                ]
                decision.promoted = not failed
            if force and not decision.promoted:
                decision.reasons.append("forced")
                decision.promoted = True
        if decision.promoted and production != tag:
            pointer.set(tag, reason="; ".join(decision.reasons) or "passed the gate")
        saved.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(saved, decision.to_dict())
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
