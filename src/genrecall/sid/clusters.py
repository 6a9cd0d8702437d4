"""The last SID position: the cluster-group suffix (CQ-SID) or the dedup suffix (TIGER baseline).

CQ-SID shares SIDs on purpose: all items with the same level codes form one cluster. A cluster with
more than ``t_max`` items (paper: 50) is split at random (seeded) into ``min(ceil(c / t_max), g_max)``
groups (paper: G_max = 100) of near-equal size, and the group number becomes the suffix; an unsplit
cluster has suffix 0. The baseline instead numbers the items that collide on their level codes
0, 1, 2, ... so every item gets a unique SID.

Both functions take level codes (n, L) and return the suffix (n,); ``with_suffix`` glues them into the
(n, L+1) SIDs that ``SidIndex`` and ``SidTrie`` hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUFFIX_MODES = ("group", "dedup")


@dataclass(frozen=True)
class ClusterConfig:
    """How the suffix position is filled."""

    suffix_mode: str = "group"  # "group" for CQ-SID (shared SIDs), "dedup" for the TIGER baseline
    t_max: int = 50  # paper: a cluster above 50 items is split
    g_max: int = 100  # paper: at most 100 groups per cluster
    seed: int = 0  # the random split is reproducible


def _groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inverse, counts): which distinct level-code row each item has, and how many share it."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError("codes must be a 2-d array (n, levels)")
    if len(codes) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def n_groups(size: int, *, t_max: int = 50, g_max: int = 100) -> int:
    """Groups a cluster of ``size`` items is split into: min(ceil(size / t_max), g_max), at least 1."""
    return max(1, min(-(-size // t_max), g_max))


def split_clusters(codes: np.ndarray, *, t_max: int = 50, g_max: int = 100, seed: int = 0) -> np.ndarray:
    """Group suffix per item: 0 for clusters of <= t_max items, else a random balanced group id."""
    inverse, counts = _groups(codes)
    suffix = np.zeros(len(inverse), dtype=np.int64)
    big = np.flatnonzero(counts > t_max)
    if len(big) == 0:
        return suffix
    rng = np.random.default_rng(seed)
    order = np.argsort(inverse, kind="stable")  # items grouped by cluster, in input order within one
    starts = np.concatenate([[0], np.cumsum(counts)])
    for c in big:  # ascending cluster order: reproducible for a fixed input
        members = order[starts[c] : starts[c + 1]]
        g = n_groups(int(counts[c]), t_max=t_max, g_max=g_max)
        suffix[rng.permutation(members)] = np.arange(len(members)) % g
    return suffix


def dedup_suffix(codes: np.ndarray) -> np.ndarray:
    """Baseline suffix: the rank (0, 1, ...) of each item among items with the same level codes."""
    inverse, counts = _groups(codes)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    rank = np.empty(len(inverse), dtype=np.int64)
    rank[order] = np.arange(len(inverse)) - np.repeat(starts, counts)
    return rank


def with_suffix(codes: np.ndarray, suffix: np.ndarray) -> np.ndarray:
    """(n, L) level codes + (n,) suffix -> (n, L+1) SIDs."""
    return np.concatenate([np.asarray(codes, np.int64), np.asarray(suffix, np.int64)[:, None]], axis=1)


def make_sids(codes: np.ndarray, cfg: ClusterConfig | None = None) -> np.ndarray:
    """Full SIDs (n, L+1) for level codes, with the suffix rule of ``cfg.suffix_mode``."""
    cfg = cfg or ClusterConfig()
    if cfg.suffix_mode == "group":
        return with_suffix(codes, split_clusters(codes, t_max=cfg.t_max, g_max=cfg.g_max, seed=cfg.seed))
    if cfg.suffix_mode == "dedup":
        return with_suffix(codes, dedup_suffix(codes))
    raise ValueError(f"suffix_mode must be one of {SUFFIX_MODES}, got {cfg.suffix_mode!r}")
