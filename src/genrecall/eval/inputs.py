"""What the recall metrics take in, normalised: a generator's ranked SIDs per request
(``GeneratorRun``), a SID -> items lookup, item quality scores and the (request, item) target pairs.

Each ``as_*`` accepts the forms users already have (a ``SidIndex``, a dict, a pandas Series, an array,
a callable) and returns one vectorised function, so ``metrics.py`` deals with a single shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrecall.data.schema import sid_from_str, sid_to_str

Sid = tuple[int, ...]
SidLookup = Any  # an object with items(sid) -> item ids, a Mapping sid -> item ids, or a callable
ItemQuality = Any  # a Mapping item id -> score, a pandas Series indexed by item id, or an array indexed by id


@dataclass
class GeneratorRun:
    """A generator's output on a test set: per request, its SIDs ranked best first.

    ``sids[r]`` is an (b_r, depth) int64 array; b_r may be below the largest beam when the trie ran
    out of valid SIDs. Build it with ``from_sids`` from tuples, strings ("12-5-33-0") or arrays.
    """

    sids: list[np.ndarray]
    request_ids: np.ndarray | None = None  # optional ids aligned to ``sids`` (for joins and debugging)

    @classmethod
    def from_sids(cls, per_request: Sequence[Any], request_ids: Sequence[int] | None = None) -> GeneratorRun:
        """From one sequence of SIDs per request: tuples, "c1-c2-c3-s" strings or (b, depth) arrays."""
        out: list[np.ndarray | None] = []
        for sids in per_request:
            if isinstance(sids, np.ndarray) and sids.ndim == 2:
                out.append(sids.astype(np.int64, copy=False))
                continue
            rows = [sid_from_str(s) if isinstance(s, str) else tuple(int(c) for c in s) for s in sids]
            out.append(np.asarray(rows, dtype=np.int64) if rows else None)  # None: no SIDs (depth unknown yet)
        depth = next((a.shape[1] for a in out if a is not None), 0)
        filled = [np.empty((0, depth), dtype=np.int64) if a is None else a for a in out]
        ids = None if request_ids is None else np.asarray(request_ids, dtype=np.int64)
        return cls(filled, ids)

    @classmethod
    def from_array(cls, sids: np.ndarray, *, pad: int = -1) -> GeneratorRun:
        """From an (n, B, depth) array; beams whose first code equals ``pad`` are dropped."""
        sids = np.asarray(sids, dtype=np.int64)
        if sids.ndim != 3:
            raise ValueError("expected an (n_requests, beams, depth) array")
        return cls([row[row[:, 0] != pad] for row in sids])

    def __len__(self) -> int:
        return len(self.sids)

    @property
    def max_beams(self) -> int:
        return max((len(s) for s in self.sids), default=0)


def as_sid_lookup(index: SidLookup) -> Callable[[Sid], np.ndarray]:
    """Normalise a SID -> items lookup to a cached function; unknown SIDs give an empty array.

    A Mapping is tried with the tuple key, then with its "c1-c2-c3-s" string form. The cache lives as
    long as the returned function (one evaluation), so each distinct SID is resolved once.
    """
    if isinstance(index, Mapping):  # before ``items``: dict.items is not a SID lookup

        def raw(sid: Sid) -> Any:
            got = index.get(sid)
            return index.get(sid_to_str(sid)) if got is None else got
    elif callable(getattr(index, "items", None)):

        def raw(sid: Sid) -> Any:
            try:
                return index.items(sid)
            except KeyError:
                return None
    elif callable(index):
        raw = index
    else:
        raise TypeError("index must have items(sid), be a Mapping sid -> items, or be callable")
    cache: dict[Sid, np.ndarray] = {}
    empty = np.empty(0, dtype=np.int64)

    def lookup(sid: Sid) -> np.ndarray:
        got = cache.get(sid)
        if got is None:
            val = raw(sid)
            got = empty if val is None else np.asarray(val, dtype=np.int64).ravel()
            cache[sid] = got
        return got

    return lookup


def as_item_quality(quality: ItemQuality) -> Callable[[np.ndarray], np.ndarray]:
    """Normalise item quality to a vectorised ``scores(item_ids)``; unknown items and NaN score 0."""
    if hasattr(quality, "index") and hasattr(quality, "to_numpy"):  # pandas Series
        keys, vals = np.asarray(quality.index, dtype=np.int64), quality.to_numpy(dtype=np.float64)
    elif isinstance(quality, Mapping):
        keys = np.fromiter(quality.keys(), dtype=np.int64, count=len(quality))
        vals = np.fromiter(quality.values(), dtype=np.float64, count=len(quality))
    else:
        dense = np.nan_to_num(np.asarray(quality, dtype=np.float64), nan=0.0)
        if dense.ndim != 1:
            raise ValueError("an array quality must be 1-d, indexed by item id")

        def by_position(items: np.ndarray) -> np.ndarray:
            ok = (items >= 0) & (items < dense.size)
            return np.where(ok, dense[np.clip(items, 0, max(dense.size - 1, 0))] if dense.size else 0.0, 0.0)

        return by_position
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], np.nan_to_num(vals[order], nan=0.0)

    def by_key(items: np.ndarray) -> np.ndarray:
        if keys.size == 0:
            return np.zeros(items.size, dtype=np.float64)
        pos = np.minimum(np.searchsorted(keys, items), keys.size - 1)
        return np.where(keys[pos] == items, vals[pos], 0.0)

    return by_key


def target_pairs(targets: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (request index, item) pairs, sorted by request then item; None/empty rows add none."""
    reqs, items = [], []
    for r, t in enumerate(targets):
        if t is None:
            continue
        arr = np.unique(np.asarray(t, dtype=np.int64).ravel())
        if arr.size:
            reqs.append(np.full(arr.size, r, dtype=np.int64))
            items.append(arr)
    if not reqs:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(reqs), np.concatenate(items)
