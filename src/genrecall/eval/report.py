"""Assemble ``reports/metrics.json`` (DESIGN.md section 4), write the curves and plots, print a summary.

The evaluate stage computes ``GeneratorMetrics`` / ``ItemMetrics`` / ``PersonalizedMetrics`` per
method and test set, then::

    semantic, target = metrics_block(generators, rankers)          # target: 0.9 x rq_vae best
    metrics = build_metrics(semantic=semantic, personalized=..., sid_health=..., data=...)
    write_metrics(metrics, "reports/metrics.json")
    write_curves({"semantic": generators}, "reports/curves.csv")     # for `dvc plots`
    plot_hitrate(generators, rankers, "reports/hitrate_vs_beams.png", target=target)
    print_summary(metrics)
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrecall.eval.metrics import GeneratorMetrics, ItemMetrics, PersonalizedMetrics

# Keys whose values must be fractions in [0, 1] (the contract); everything else is a count or a label.
FRACTION_PREFIXES = ("hitrate@", "items@", "clk@", "exp@", "pvr@")
# Column order of the summary table; keys not listed here follow alphabetically.
SUMMARY_KEYS = (
    "hitrate@1",
    "hitrate@10",
    "hitrate@100",
    "items@100",
    "items@1000",
    "beams_to_target",
    "clk@1",
    "clk@10",
    "exp@1",
    "exp@10",
    "pvr@10",
)


def baseline_target(
    generators: Mapping[str, GeneratorMetrics], baseline: str = "rq_vae", frac: float = 0.9
) -> float | None:
    """``frac`` x the best truncated hitrate the baseline reaches anywhere in its sweep (None if absent)."""
    base = generators.get(baseline)
    return None if base is None else frac * base.best_truncated()


def metrics_block(
    generators: Mapping[str, GeneratorMetrics],
    rankers: Mapping[str, ItemMetrics] | None = None,
    personalized: Mapping[str, PersonalizedMetrics] | None = None,
    *,
    baseline: str = "rq_vae",
    target_frac: float = 0.9,
    report_beams: tuple[int, ...] = (1, 10, 100),
) -> tuple[dict[str, dict[str, Any]], float | None]:
    """One test set's ``{method: {metric: value}}`` and the beams-to-target target used.

    The target comes from the ``baseline`` generator of this test set and is the same for every
    generator; without a baseline ``beams_to_target`` is null. ``personalized`` adds clk/exp/pvr.
    """
    target = baseline_target(generators, baseline, target_frac)
    block: dict[str, dict[str, Any]] = {}
    for name, m in generators.items():
        entry = m.to_dict(report_beams, target=target)
        entry.setdefault("beams_to_target", None)
        block[name] = entry
    for name, r in (rankers or {}).items():
        if name in block:
            raise ValueError(f"method {name!r} is both a generator and a ranker")
        block[name] = r.to_dict()
    for name, p in (personalized or {}).items():
        block.setdefault(name, {}).update(p.to_dict())
    return block, target


def _plain(x: Any) -> Any:
    """NumPy scalars/arrays and tuples to JSON types; NaN becomes null."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def check_metrics(metrics: Mapping[str, Any]) -> None:
    """Raise ValueError when a fraction metric of a test-set block lies outside [0, 1]."""
    for test_set, methods in metrics.items():
        if test_set in ("sid_health", "data") or not isinstance(methods, Mapping):
            continue
        for method, values in methods.items():
            for key, v in values.items():
                if key.startswith(FRACTION_PREFIXES) and v is not None and not 0.0 <= float(v) <= 1.0:
                    raise ValueError(f"{test_set}/{method}/{key} = {v} is not a fraction in [0, 1]")


def build_metrics(
    *,
    semantic: Mapping[str, Mapping[str, Any]] | None = None,
    personalized: Mapping[str, Mapping[str, Any]] | None = None,
    sid_health: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    **other_test_sets: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The metrics.json structure; empty blocks are left out. ``other_test_sets``: e.g. ``judged=...``."""
    out: dict[str, Any] = {}
    for key, block in (
        ("semantic", semantic),
        ("personalized", personalized),
        *other_test_sets.items(),
        ("sid_health", sid_health),
        ("data", data),
    ):
        if block:
            out[key] = _plain(block)
    check_metrics(out)
    return out


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Write metrics.json with sorted keys (stable diffs for ``dvc metrics diff``)."""
    check_metrics(metrics)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(metrics), indent=2, sort_keys=True) + "\n")
    return path


def read_metrics(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_curves(curves: Mapping[str, Mapping[str, GeneratorMetrics]], path: str | Path) -> Path:
    """Long-format CSV ``test_set,method,beams,hitrate,truncated_hitrate,mean_items`` for ``dvc plots``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["test_set", "method", "beams", "hitrate", "truncated_hitrate", "mean_items"])
        for test_set, gens in sorted(curves.items()):
            for method, m in sorted(gens.items()):
                trunc = m.truncated_curve()
                for j, b in enumerate(m.beams):
                    w.writerow(
                        [test_set, method, b, f"{m.hitrate[j]:.6f}", f"{trunc[j]:.6f}", f"{m.mean_items[j]:.3f}"]
                    )
    return path


def plot_hitrate(
    generators: Mapping[str, GeneratorMetrics],
    rankers: Mapping[str, ItemMetrics] | None = None,
    path: str | Path = "reports/hitrate_vs_beams.png",
    *,
    target: float | None = None,
    title: str = "semantic test set",
) -> Path:
    """Hitrate@B (left) and truncated hitrate@B (right) per generator against the beam size.

    BM25/dense have no beams: they appear as horizontal lines at their items@N, N = the truncation N,
    so the right panel compares every method on the same candidate budget. ``target`` is drawn too.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    n_trunc = None
    for name, m in sorted(generators.items()):
        left.plot(m.beams, m.hitrate, marker="o", ms=3, label=name)
        right.plot(m.beams, m.truncated_curve(), marker="o", ms=3, label=name)
        n_trunc = m.truncate_n
    styles = iter(["--", ":", "-."] * 4)
    for name, r in sorted((rankers or {}).items()):
        n = n_trunc if n_trunc in r.items else max(r.items)
        right.axhline(r.items[n], color="grey", ls=next(styles), lw=1, label=f"{name} items@{n}")
    if target is not None:
        right.axhline(target, color="red", lw=0.8, label=f"target {target:.3f}")
    ticks = sorted({b for m in generators.values() for b in m.beams})
    for ax, label in ((left, "click hitrate@B"), (right, f"truncated hitrate@B (N={n_trunc})")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(b) for b in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("beam size B")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _header(key: str) -> str:
    """Two-line headers ("hitrate" over "@10") keep columns narrow."""
    return "beams to\ntarget" if key == "beams_to_target" else key.replace("@", "\n@", 1)


def print_summary(metrics: Mapping[str, Any], console: Any = None) -> None:
    """Print each test set as rich tables (methods x metrics), split to fit the console width."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for test_set, methods in metrics.items():
        if test_set in ("sid_health", "data") or not isinstance(methods, Mapping):
            continue
        keys = {k for values in methods.values() for k in values}
        cols = [k for k in SUMMARY_KEYS if k in keys] + sorted(keys - set(SUMMARY_KEYS))
        rows = {m: [_fmt(methods[m].get(k)) for k in cols] for m in sorted(methods)}
        width = {
            k: max([len(x) for x in _header(k).split("\n")] + [len(r[j]) for r in rows.values()]) + 3
            for j, k in enumerate(cols)
        }
        first = max([len("method")] + [len(m) for m in rows]) + 4  # padding, divider, table edges
        parts: list[list[int]] = [[]]
        for j, k in enumerate(cols):  # greedy split of the metric columns into console-wide tables
            if parts[-1] and first + sum(width[cols[i]] for i in parts[-1]) + width[k] > console.width:
                parts.append([])
            parts[-1].append(j)
        for n, part in enumerate(parts):
            title = f"{test_set} test set" + (f" ({n + 1}/{len(parts)})" if len(parts) > 1 else "")
            table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
            table.add_column("method", style="bold", no_wrap=True)
            for j in part:
                table.add_column(_header(cols[j]), justify="right", no_wrap=True)
            for m, r in rows.items():
                table.add_row(m, *(r[j] for j in part))
            console.print(table)
    if "data" in metrics:
        console.print("data: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(metrics["data"].items())))
