"""Complementarity: what the generator adds to the recall channels a search team already runs.

A team decides whether to add a recall channel on these numbers, not on its recall alone
(metrics.json ``fusion`` block, DESIGN.md section 4). Every input is one ranked item list per test
request (best first); a pair (request, relevant item) counts once.

- ``union_bm25@N`` / ``union_dense@N``: recall of the generator's first N/2 items united with the
  other channel's first N/2 (an even split of the same candidate budget);
- ``rrf@N``: recall of the first N items of reciprocal-rank fusion (Cormack et al. 2009, k = 60) of
  generator, BM25 and dense, computed by ``ranx.fuse``;
- ``generator_only@N``: share of relevant pairs the generator finds within N that neither BM25 nor
  dense finds within N;
- ``union_bm25_dense@N`` / ``rrf_bm25_dense@N``: the same union and RRF of BM25 and dense alone, what a
  team runs *without* the generator: the generator adds something only where its rows beat these;
- ``generator@N``, ``bm25@N``, ``dense@N``: each channel alone, for reference on the same pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FusionConfig:
    """The candidate budget and the RRF constant."""

    n: int = 1000  # the paper's candidate budget N
    rrf_k: int = 60  # the RRF constant of Cormack et al. (and ranx's default)


def _hits(ranked: Sequence[int] | np.ndarray, relevant: set[int], n: int) -> set[int]:
    return relevant.intersection(int(i) for i in list(ranked)[:n])


def rrf(channels: Sequence[Sequence[np.ndarray]], n: int, k: int = 60) -> list[np.ndarray]:
    """Reciprocal-rank fusion of several channels' ranked lists, first ``n`` items per request (ranx)."""
    from ranx import Run, fuse  # imported here: numba compiles on first import (seconds)

    def as_run(channel: Sequence[np.ndarray]) -> Run:
        # ranx wants every query in every run: an empty list gets a sentinel doc -1
        return Run(
            {
                f"q{r}": {f"d{int(i)}": float(len(items) - j) for j, i in enumerate(list(items)[:n])} or {"d-1": 0.0}
                for r, items in enumerate(channel)
            }
        )

    runs = [as_run(channel) for channel in channels]
    fused = fuse(runs=runs, method="rrf", params={"k": k}).to_dict()
    out = []
    for r in range(len(channels[0])):
        scores = fused.get(f"q{r}", {})
        ranked = [int(d[1:]) for d in sorted(scores, key=lambda d: (-scores[d], int(d[1:])))]
        out.append(np.array([i for i in ranked if i >= 0][:n], dtype=np.int64))
    return out


def fusion_metrics(
    generator: Sequence[np.ndarray],
    bm25: Sequence[np.ndarray],
    dense: Sequence[np.ndarray],
    targets: Sequence[Sequence[int]],
    cfg: FusionConfig | None = None,
) -> dict[str, float]:
    """The ``fusion`` block for one test set (see the module docstring)."""
    cfg = cfg or FusionConfig()
    if not len(generator) == len(bm25) == len(dense) == len(targets):
        raise ValueError("one ranked list per request in every channel, and one target list per request")
    n, half = cfg.n, cfg.n // 2
    fused = rrf([generator, bm25, dense], n, cfg.rrf_k)
    without = rrf([bm25, dense], n, cfg.rrf_k)
    names = ("union_bm25", "union_dense", "rrf", "generator_only", "generator", "bm25", "dense")
    counts = dict.fromkeys((*names, "union_bm25_dense", "rrf_bm25_dense"), 0)
    total = 0
    for g, b, d, f, w, t in zip(generator, bm25, dense, fused, without, targets):
        rel = {int(i) for i in t}
        total += len(rel)
        g_n, b_n, d_n = _hits(g, rel, n), _hits(b, rel, n), _hits(d, rel, n)
        counts["union_bm25"] += len(_hits(g, rel, half) | _hits(b, rel, half))
        counts["union_dense"] += len(_hits(g, rel, half) | _hits(d, rel, half))
        counts["rrf"] += len(_hits(f, rel, n))
        counts["union_bm25_dense"] += len(_hits(b, rel, half) | _hits(d, rel, half))
        counts["rrf_bm25_dense"] += len(_hits(w, rel, n))
        counts["generator_only"] += len(g_n - b_n - d_n)
        counts["generator"] += len(g_n)
        counts["bm25"] += len(b_n)
        counts["dense"] += len(d_n)
    return {f"{name}@{n}": value / max(total, 1) for name, value in counts.items()}


def generator_items(
    sids: Sequence[np.ndarray],
    expand: Callable[[tuple[int, ...]], np.ndarray],
    quality: Mapping[int, float] | None,
    beam: int,
    n: int,
) -> list[np.ndarray]:
    """Each request's candidate list as the truncated hitrate defines it (eval/metrics.py): the items of
    its top-``beam`` SIDs by quality (descending), ties by first SID rank then item id; first ``n``."""
    out = []
    for arr in sids:
        seen: dict[int, int] = {}
        for rank, row in enumerate(np.asarray(arr)[:beam].tolist()):
            for item in expand(tuple(int(c) for c in row)).tolist():
                seen.setdefault(int(item), rank)
        q = quality or {}
        order = sorted(seen, key=lambda i: (-float(q.get(i, 0.0)), seen[i], i))[:n]
        out.append(np.array(order, dtype=np.int64))
    return out
