"""SID health: is every level used, are clusters shared but bounded, does level 1 mean the category?

``sid_health`` turns full SIDs (n, L+1) into a JSON-ready ``SidHealth``; ``plot_cluster_sizes`` draws
the items-per-SID distribution of one or more methods into a PNG (matplotlib Agg, no display).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SidHealth:
    """Per-level codebook use and per-SID cluster statistics for one method."""

    items: int
    sids: int  # distinct full SIDs (levels + suffix)
    clusters: int  # distinct level-code prefixes (before the suffix)
    codebook_sizes: list[int]
    utilisation: list[float]  # per level: used codes / codebook size
    entropy: list[float]  # per level: entropy of code use / log(codebook size), in [0, 1]
    dead_codes: list[int]  # per level: codes no item uses
    items_per_sid: dict[str, float]  # mean, p50, p99, max over full SIDs
    items_per_cluster: dict[str, float]  # the same over level-code prefixes (before splitting)
    collision_rate: float  # share of items whose full SID is shared with another item
    prefix_collision_rate: float  # share of items sharing their level codes (before the suffix)
    max_suffix: int  # largest suffix in use (groups - 1, or dedup depth - 1)
    category_match: float | None  # known-category items whose level-1 code is their category's code

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _size_stats(sizes: np.ndarray) -> dict[str, float]:
    if len(sizes) == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    return {
        "mean": float(sizes.mean()),
        "p50": float(np.percentile(sizes, 50)),
        "p99": float(np.percentile(sizes, 99)),
        "max": float(sizes.max()),
    }


def category_match(level1: np.ndarray, categories: np.ndarray, category_ids: np.ndarray | None = None) -> float | None:
    """Share of known-category items whose level-1 code is "their category's code".

    With ``category_ids`` (CQ-SID: ``category_ids[code]`` is the category of code) that code is the
    forced one. Without it (baseline) a category's code is the level-1 code most of its items got,
    so the number is the category purity of level 1 and the two methods stay comparable.
    """
    cats = np.asarray(categories, dtype=np.float64)
    known = ~np.isnan(cats)
    if not known.any():
        return None
    codes, cats_k = np.asarray(level1, np.int64)[known], cats[known].astype(np.int64)
    if category_ids is not None and len(category_ids):
        owner = np.asarray(category_ids, np.int64)
        valid = codes < len(owner)
        return float(np.mean(valid & (owner[np.minimum(codes, len(owner) - 1)] == cats_k)))
    pairs, counts = np.unique(np.stack([cats_k, codes], axis=1), axis=0, return_counts=True)
    order = np.lexsort((-counts, pairs[:, 0]))  # per category, the most frequent code first
    first = np.concatenate([[True], pairs[order][1:, 0] != pairs[order][:-1, 0]])
    return float(counts[order][first].sum() / len(codes))


def sid_health(
    sids: np.ndarray,
    codebook_sizes: list[int] | tuple[int, ...],
    *,
    categories: np.ndarray | None = None,
    category_ids: np.ndarray | None = None,
) -> SidHealth:
    """Health of full SIDs (n, L+1) made with codebooks of ``codebook_sizes`` (L entries)."""
    sids = np.asarray(sids, dtype=np.int64)
    n, depth = sids.shape
    levels = depth - 1
    if len(codebook_sizes) != levels:
        raise ValueError(f"{len(codebook_sizes)} codebook sizes for SIDs with {levels} levels")
    util, ent, dead = [], [], []
    for level, k in enumerate(codebook_sizes):
        counts = np.bincount(sids[:, level], minlength=k)[:k] if n else np.zeros(k, np.int64)
        used = int((counts > 0).sum())
        p = counts[counts > 0] / max(counts.sum(), 1)
        util.append(used / k)
        ent.append(float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 and n else 0.0)
        dead.append(k - used)
    if n:
        _, inv_sid, sid_sizes = np.unique(sids, axis=0, return_inverse=True, return_counts=True)
        _, inv_pre, pre_sizes = np.unique(sids[:, :-1], axis=0, return_inverse=True, return_counts=True)
        collision = float(np.mean(sid_sizes[inv_sid.reshape(-1)] > 1))
        prefix_collision = float(np.mean(pre_sizes[inv_pre.reshape(-1)] > 1))
    else:
        sid_sizes = pre_sizes = np.empty(0, np.int64)
        collision = prefix_collision = 0.0
    match = category_match(sids[:, 0], categories, category_ids) if categories is not None and n else None
    return SidHealth(
        items=int(n),
        sids=len(sid_sizes),
        clusters=len(pre_sizes),
        codebook_sizes=[int(k) for k in codebook_sizes],
        utilisation=util,
        entropy=ent,
        dead_codes=dead,
        items_per_sid=_size_stats(sid_sizes),
        items_per_cluster=_size_stats(pre_sizes),
        collision_rate=collision,
        prefix_collision_rate=prefix_collision,
        max_suffix=int(sids[:, -1].max()) if n else 0,
        category_match=match,
    )


def plot_cluster_sizes(sizes: dict[str, np.ndarray], path: str | Path, *, title: str = "Items per SID") -> Path:
    """Histogram (log-spaced bins, log counts) of items per SID for each method; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    top = max([int(np.max(s)) for s in sizes.values() if len(s)] + [1])
    bins = np.unique(np.geomspace(1, top + 1, num=30).astype(int))
    bins = bins if len(bins) > 1 else np.array([1, 2])
    for name, s in sizes.items():
        ax.hist(np.asarray(s), bins=bins.tolist(), histtype="step", linewidth=1.5, label=f"{name} ({len(s)} SIDs)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items per SID")
    ax.set_ylabel("SIDs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
