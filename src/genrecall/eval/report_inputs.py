"""What ``genrecall report`` reads: the files the pipeline and the daily rebuild already write.

    inputs = collect("reports", sid_dir="data/sid", daily_dir="daily")

- ``reports/metrics.json`` (evaluate), ``reports/curves.csv`` (hitrate against beams),
  ``reports/sid_health.json`` (sid), ``reports/validation.json`` (validate), ``reports/train_rl.json``
  (train_rl), ``reports/package.json`` (package);
- ``data/sid/<method>/sid_assignments.parquet``: items per SID, for the cluster-size histogram;
- ``daily/day-<d>/reports/``: ``daily_metrics.json`` (the day's served numbers, mode, new and delisted
  items), ``daily_gate.json`` (production on the same sample) and ``publish.json`` (the gate decision).

Anything absent is listed in ``missing`` and its section says so; nothing here fails on a partial run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# personalized-set methods that are not EG-GRPO variants (everything else there is an RL variant)
NOT_RL = frozenset(
    {"cq_sid", "cq_sid_q2sid", "rq_vae", "bm25", "dense", "served", "tokenizer_beam", "centroid_beam", "sid_hybrid"}
)
SETS = ("semantic", "personalized")


@dataclass
class DayRow:
    """One day of the daily rebuild, as the report's history table shows it."""

    day: int
    mode: str | None = None  # "incremental" or "full"
    new_items: int | None = None
    delisted: int | None = None
    promoted: bool | None = None
    tag: str | None = None
    reasons: list[str] = field(default_factory=list)
    served: dict[str, float] = field(default_factory=dict)  # "semantic/cq_sid/hitrate@10" -> candidate value
    production: dict[str, float] = field(default_factory=dict)  # production's value on the same sample


@dataclass
class ReportInputs:
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: pd.DataFrame | None = None
    sid_health: dict[str, Any] = field(default_factory=dict)
    cluster_sizes: dict[str, np.ndarray] = field(default_factory=dict)  # method -> items per SID
    validation: dict[str, Any] = field(default_factory=dict)
    train_rl: dict[str, Any] = field(default_factory=dict)
    package: dict[str, Any] = field(default_factory=dict)
    days: list[DayRow] = field(default_factory=list)
    read: list[str] = field(default_factory=list)  # the files read
    missing: list[str] = field(default_factory=list)  # the files looked for and not found

    @property
    def test_sets(self) -> list[str]:
        """Test-set blocks of metrics.json (semantic, personalized, judged, ...), in that order."""
        named = [
            k for k, v in self.metrics.items() if k not in ("sid_health", "data", "served") and isinstance(v, dict)
        ]
        return [s for s in SETS if s in named] + sorted(s for s in named if s not in SETS)

    def rl_variants(self) -> list[str]:
        """EG-GRPO / GRPO variants evaluated on the personalized set (train_rl.json's, then any other)."""
        per = self.metrics.get("personalized") or {}
        trained = [v for v in (self.train_rl.get("variants") or {}) if v in per]
        return trained + sorted(m for m in per if m not in NOT_RL and m not in trained)


def _json(path: Path, inputs: ReportInputs) -> dict[str, Any]:
    if not path.exists():
        inputs.missing.append(str(path))
        return {}
    inputs.read.append(str(path))
    return json.loads(path.read_text())


def flatten(metrics: dict[str, Any] | None) -> dict[str, float]:
    """``{"semantic": {"cq_sid": {"hitrate@10": x}}}`` -> ``{"semantic/cq_sid/hitrate@10": x}`` (numbers only)."""
    out: dict[str, float] = {}
    for test_set in SETS:
        for method, block in ((metrics or {}).get(test_set) or {}).items():
            for key, v in (block or {}).items() if isinstance(block, dict) else ():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{test_set}/{method}/{key}"] = float(v)
    return out


def cluster_sizes(sid_dir: Path) -> dict[str, np.ndarray]:
    """Items per SID of every method under ``sid_dir`` (``<method>/sid_assignments.parquet``)."""
    import pyarrow.parquet as pq

    out = {}
    for path in sorted(sid_dir.glob("*/sid_assignments.parquet")):
        counts = pq.read_table(path, columns=["sid"]).column("sid").value_counts()
        out[path.parent.name] = np.sort(counts.field("counts").to_numpy())[::-1]
    return out


def read_day(reports: Path, day: int) -> DayRow:
    """One day's row from its record's ``reports/`` (a day before ``daily_metrics.json`` existed wrote
    its numbers to ``metrics.json``: read that instead)."""
    metrics_file = reports / "daily_metrics.json"
    if not metrics_file.exists():
        metrics_file = reports / "metrics.json"
    numbers = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    data = numbers.get("data") or {}
    gate = json.loads((reports / "daily_gate.json").read_text()) if (reports / "daily_gate.json").exists() else {}
    pub = json.loads((reports / "publish.json").read_text()) if (reports / "publish.json").exists() else {}
    return DayRow(
        day,
        data.get("mode"),
        data.get("new_items"),
        data.get("delisted"),
        pub.get("promoted"),
        pub.get("tag"),
        list(pub.get("reasons") or []),
        flatten(numbers),
        flatten(gate.get("production")),
    )


def daily_history(daily_dir: Path) -> list[DayRow]:
    """A row per recorded day, oldest first (``daily/day-<d>/reports/``)."""
    rows = []
    for d in sorted(daily_dir.glob("day-*")):
        m = re.fullmatch(r"day-(\d+)", d.name)
        if m and d.is_dir() and (d / "reports").is_dir():
            rows.append(read_day(d / "reports", int(m.group(1))))
    return rows


def collect(
    reports_dir: str | Path, *, sid_dir: str | Path | None = "data/sid", daily_dir: str | Path | None = "daily"
) -> ReportInputs:
    """Read every input of the report that exists."""
    reports = Path(reports_dir)
    inputs = ReportInputs()
    inputs.metrics = _json(reports / "metrics.json", inputs)
    curves = reports / "curves.csv"
    if curves.exists():
        inputs.curves = pd.read_csv(curves)
        inputs.read.append(str(curves))
    else:
        inputs.missing.append(str(curves))
    inputs.sid_health = _json(reports / "sid_health.json", inputs) or dict(inputs.metrics.get("sid_health") or {})
    inputs.validation = _json(reports / "validation.json", inputs)
    inputs.train_rl = _json(reports / "train_rl.json", inputs)
    inputs.package = _json(reports / "package.json", inputs)
    if sid_dir is not None and Path(sid_dir).is_dir():
        inputs.cluster_sizes = cluster_sizes(Path(sid_dir))
        inputs.read += [str(Path(sid_dir) / m / "sid_assignments.parquet") for m in inputs.cluster_sizes]
    if not inputs.cluster_sizes:
        inputs.missing.append(str(Path(sid_dir or "data/sid") / "<method>/sid_assignments.parquet"))
    if daily_dir is not None and Path(daily_dir).is_dir():
        inputs.days = daily_history(Path(daily_dir))
    return inputs
