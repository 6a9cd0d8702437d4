"""The report's charts: matplotlib figures rendered to inline SVG strings (no file, no network).

Each function takes plain data and returns the ``<svg>`` element as text, with text kept as text
(``svg.fonttype: none``: small, searchable, drawn in the page's font) and ids salted so that output is
stable. ``report_html`` places them in the page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "genrecall-report",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


@contextmanager
def _figure(width: float, height: float, ncols: int = 1) -> Iterator[tuple[Any, Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(RC):  # type: ignore[arg-type]  # RC's keys are valid rcParams; its dict type is not narrowed
        fig, axes = plt.subplots(1, ncols, figsize=(width, height))
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def to_svg(fig: Any) -> str:
    """The figure as one ``<svg>`` element (XML prolog, doctype and metadata dropped)."""
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)


def hitrate_vs_beams(
    curves: pd.DataFrame, rankers: Mapping[str, float], *, title: str, n_items: int = 1000, target: float | None = None
) -> str:
    """Hitrate@B and truncated hitrate@B per generator; BM25/dense as lines at their items@N."""
    with _figure(9.5, 3.4, ncols=2) as (fig, (left, right)):
        for method, rows in curves.sort_values("beams").groupby("method", sort=True):
            left.plot(rows["beams"], rows["hitrate"], marker="o", ms=3, label=method)
            right.plot(rows["beams"], rows["truncated_hitrate"], marker="o", ms=3, label=method)
        for (name, value), style in zip(sorted(rankers.items()), ["--", ":", "-."] * 4):
            right.axhline(value, color="grey", ls=style, lw=1, label=f"{name} items@{n_items}")
        if target is not None:
            right.axhline(target, color="red", lw=0.8, label=f"target {target:.3f}")
        ticks = sorted(set(curves["beams"].astype(int)))
        for ax, label in ((left, "click hitrate@B"), (right, f"truncated hitrate@B (first {n_items} items)")):
            ax.set_xscale("log")
            ax.set_xticks(ticks, [str(b) for b in ticks])
            ax.minorticks_off()
            ax.set_xlabel("beams B")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
        right.legend(fontsize=7, loc="lower right")
        fig.suptitle(title)
        return to_svg(fig)


def grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str,
    title: str,
    horizontal_line: float | None = None,
    width: float = 9.5,
    height: float = 3.2,
) -> str:
    """Bars of each series (legend) side by side in each group (x axis); None draws no bar."""
    with _figure(width, height) as (fig, ax):
        n = max(len(series), 1)
        x = np.arange(len(groups))
        w = 0.8 / n
        for i, (name, values) in enumerate(series.items()):
            vals = np.array([np.nan if v is None else float(v) for v in values])
            bars = ax.bar(x + (i - (n - 1) / 2) * w, vals, w, label=name)
            for b, v in zip(bars, vals):
                if not np.isnan(v) and len(groups) * n <= 24:
                    ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=6)
        if horizontal_line is not None:
            ax.axhline(horizontal_line, color="red", lw=0.8)
        ax.set_xticks(x, list(groups), rotation=20 if max((len(g) for g in groups), default=0) > 10 else 0)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7, ncols=min(n, 4))
        return to_svg(fig)


def cluster_sizes(sizes: Mapping[str, np.ndarray], *, cap: int | None = None) -> str:
    """Histogram of items per SID (log-spaced bins, log counts) per method; ``cap`` drawn as a line."""
    with _figure(6.5, 3.4) as (fig, ax):
        top = max([int(s.max()) for s in sizes.values() if len(s)] + [1])
        bins = np.unique(np.geomspace(1, top + 1, num=30).astype(int))
        bins = bins if len(bins) > 1 else np.array([1, 2])
        for name, s in sorted(sizes.items()):
            ax.hist(
                s, bins=bins.tolist(), histtype="step", lw=1.5, label=f"{name}: {len(s):,} SIDs, mean {s.mean():.1f}"
            )
        if cap is not None:
            ax.axvline(cap, color="red", lw=0.8, label=f"split above {cap}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("items per SID")
        ax.set_ylabel("SIDs")
        ax.set_title("Cluster sizes")
        ax.legend(fontsize=7)
        return to_svg(fig)


def per_level(health: Mapping[str, Mapping[str, Any]]) -> str:
    """Codebook utilisation and normalised entropy per level, one bar per method."""
    with _figure(9.5, 3.0, ncols=2) as (fig, axes):
        for ax, key, label in (
            (axes[0], "utilisation", "utilisation (used codes / codebook)"),
            (axes[1], "entropy", "entropy / log(codebook size)"),
        ):
            methods = sorted(health)
            levels = max((len(health[m].get(key) or []) for m in methods), default=0)
            x, w = np.arange(levels), 0.8 / max(len(methods), 1)
            for i, m in enumerate(methods):
                vals = list(health[m].get(key) or [])
                bars = ax.bar(x[: len(vals)] + (i - (len(methods) - 1) / 2) * w, vals, w, label=m)
                for b, v in zip(bars, vals):
                    ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=6)
            ax.set_xticks(x, [f"level {i + 1}" for i in range(levels)])
            ax.set_ylim(0, 1.1)
            ax.set_title(label)
            ax.legend(fontsize=7)
        return to_svg(fig)


def over_days(
    days: Sequence[int],
    served: Mapping[str, Sequence[float | None]],
    production: Mapping[str, Sequence[float | None]],
    promoted: Sequence[bool | None],
) -> str:
    """Served metrics per day (solid) and production's on the same sample (dashed); rejected days marked x."""
    with _figure(9.5, 3.2) as (fig, ax):
        for i, (name, values) in enumerate(served.items()):
            color = f"C{i}"
            y = np.array([np.nan if v is None else v for v in values], dtype=float)
            ax.plot(days, y, marker="o", ms=4, color=color, label=name)
            prod = np.array([np.nan if v is None else v for v in production.get(name, [None] * len(days))], dtype=float)
            if not np.isnan(prod).all():
                ax.plot(days, prod, ls="--", lw=1, color=color, label=f"{name} (production)")
            rejected = [j for j, p in enumerate(promoted) if p is False]
            if rejected:
                ax.plot([days[j] for j in rejected], y[rejected], "x", color="red", ms=8)
        ax.set_xticks(list(days), [str(d) for d in days])
        ax.set_xlabel("day")
        ax.set_ylabel("value on the day's gate sample")
        ax.set_ylim(bottom=0)
        ax.set_title("Served metrics over time (x: rejected by the gate)")
        ax.legend(fontsize=7, ncols=2)
        return to_svg(fig)
