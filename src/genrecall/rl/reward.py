"""Rewards for EG-GRPO: how the logged request (what the ranking system showed and what the user did)
scores a generated SID.

Tiers, first match wins (DESIGN.md section 1, after the paper)::

    SID of a purchased item   1.0
    SID of a clicked item     1.0
    SID of an exposed item    0.5
    any valid SID             0.1   (a real cluster the ranker did not show)
    anything else             0.0   (not a SID of the index)

A SID is a cluster, so "SID of a clicked item" means the item's cluster: the map is the index's
item -> SID. Rewards depend only on the request's own lists (``RequestSids``), built once per request.

A learned ranker can add a score on top (``ranker_weight``, off by default): anything that follows
the `RankerReward` protocol, so a user plugs in their own ranker without touching the trainer.
`QualityRanker` is the cheap built-in: the best item quality (smoothed CTR) inside the cluster,
scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

Sid = tuple[int, ...]


@dataclass(frozen=True)
class RewardConfig:
    """Reward tiers (params.yaml ``train_rl.reward``); defaults are the paper's."""

    purchase: float = 1.0  # paper: a purchased item's SID earns the full reward
    click: float = 1.0  # paper: a click counts as much as a purchase
    exposure: float = 0.5  # paper: shown by the ranker but not clicked: half
    valid: float = 0.1  # paper: a real SID the ranker did not show: a little, so the policy stays in the index
    invalid: float = 0.0  # a SID outside the index (cannot happen with trie-constrained sampling)
    ranker_weight: float = 0.0  # weight of an optional ranker score in [0, 1]; 0 = off (the paper's reward)


@dataclass(frozen=True)
class RequestSids:
    """The SIDs behind one logged request's lists (purchased ⊆ clicked ⊆ exposed at item level)."""

    purchased: frozenset[Sid] = frozenset()
    clicked: frozenset[Sid] = frozenset()
    exposed: frozenset[Sid] = frozenset()

    def expert_pool(self, cfg: RewardConfig | None = None) -> tuple[list[Sid], np.ndarray]:
        """Distinct clicked/exposed SIDs (sorted) and a drawing weight each = the SID's reward tier."""
        cfg = cfg or RewardConfig()
        pool = sorted(self.clicked | self.exposed | self.purchased)
        weights = np.array([tier(s, self, cfg) for s in pool], dtype=np.float64)
        return pool, weights


def request_sids(
    purchased: Iterable[int] | None,
    clicked: Iterable[int] | None,
    exposed: Iterable[int] | None,
    lookup: Mapping[int, Sid],
) -> RequestSids:
    """A request's item-id lists -> SID sets (items without a SID are skipped)."""

    def sids(items: Iterable[int] | None) -> frozenset[Sid]:
        return frozenset(lookup[int(i)] for i in (items if items is not None else ()) if int(i) in lookup)

    return RequestSids(sids(purchased), sids(clicked), sids(exposed))


def requests_sids(requests: pd.DataFrame, lookup: Mapping[int, Sid]) -> list[RequestSids]:
    """`request_sids` for every row of a REQUESTS table, in row order."""
    return [request_sids(r.purchased, r.clicked, r.exposed, lookup) for r in requests.itertuples(index=False)]


def tier(sid: Sid, req: RequestSids, cfg: RewardConfig, valid: Callable[[Sid], bool] | None = None) -> float:
    """The reward tier of one SID, first match wins; ``valid`` (e.g. ``sid in trie``) None = always valid."""
    if sid in req.purchased:
        return cfg.purchase
    if sid in req.clicked:
        return cfg.click
    if sid in req.exposed:
        return cfg.exposure
    if valid is None or valid(sid):
        return cfg.valid
    return cfg.invalid


@runtime_checkable
class RankerReward(Protocol):
    """A ranker's opinion of generated SIDs for one request: scores in [0, 1], one per row of ``sids``."""

    def __call__(self, request_id: int, sids: np.ndarray) -> np.ndarray: ...


class QualityRanker:
    """Built-in `RankerReward`: the best item quality in each SID's cluster / the best quality overall.

    ``items_of`` is e.g. ``SidIndex.items``; ``quality`` maps item_id -> quality (smoothed CTR).
    Ignores the request: a popularity prior, not a personal ranker.
    """

    def __init__(
        self, items_of: Callable[[Sequence[int]], np.ndarray], quality: Mapping[int, float] | pd.Series
    ) -> None:
        self.items_of = items_of
        self.quality = dict(quality.items()) if isinstance(quality, pd.Series) else dict(quality)
        self.top = max(self.quality.values(), default=0.0) or 1.0
        self._cache: dict[Sid, float] = {}

    def _score(self, sid: Sid) -> float:
        if sid not in self._cache:
            q = [self.quality.get(int(i), 0.0) for i in self.items_of(sid)]
            self._cache[sid] = float(max(q, default=0.0)) / self.top
        return self._cache[sid]

    def __call__(self, request_id: int, sids: np.ndarray) -> np.ndarray:
        return np.array([self._score(tuple(int(c) for c in row)) for row in np.asarray(sids)], dtype=np.float64)


def rewards(
    sids: np.ndarray,
    req: RequestSids,
    cfg: RewardConfig | None = None,
    *,
    valid: Callable[[Sid], bool] | None = None,
    ranker: RankerReward | None = None,
    request_id: int = -1,
) -> np.ndarray:
    """Reward of each row of ``sids`` ((n, D) int) for one request: tier + ranker_weight * ranker score."""
    cfg = cfg or RewardConfig()
    arr = np.asarray(sids, dtype=np.int64).reshape(len(sids), -1)
    out = np.array([tier(tuple(int(c) for c in row), req, cfg, valid) for row in arr], dtype=np.float64)
    if ranker is not None and cfg.ranker_weight != 0.0 and len(arr):
        out += cfg.ranker_weight * np.clip(np.asarray(ranker(request_id, arr), dtype=np.float64), 0.0, 1.0)
    return out
