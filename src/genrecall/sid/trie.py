"""The prefix trie of valid SIDs: which code may follow a given prefix.

A SID is a fixed-length tuple of ints ``(c1, c2, ..., cL, suffix)``: one code per RQ-VAE level plus a
last position that is the cluster-group suffix (CQ-SID) or the dedup suffix (TIGER baseline).
Constrained beam search asks ``next_codes(prefix)`` for every live beam at every step, so lookups
are dictionary hits returning cached NumPy arrays; ``add``/``remove`` keep reference counts so an
item leaving a cluster removes a path only when no other SID still uses it.

``tables(sizes)`` gives the same trie as dense per-level child tables (``TrieTables``), so a beam
search can build the masks of all beams of all prompts with one gather per step, no Python loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Sid = tuple[int, ...]


@dataclass(frozen=True)
class TrieTables:
    """The trie as dense child tables, one per level, for vectorised constrained decoding.

    Prefixes of length t are numbered 0..n_t-1 (level 0 has one: the empty prefix, id 0).
    ``child[t][p, c]`` is the id of prefix ``p`` extended by code ``c`` (a prefix of length t+1), or
    -1 when no SID continues that way. ``child[t]`` has ``sizes[t]`` columns: codes at or above a
    level's size are left out (a decoder with that vocabulary can never emit them), exactly as
    ``next_codes`` filtered by size would.
    """

    child: tuple[np.ndarray, ...]  # level t: (prefixes of length t, sizes[t]) int64
    sizes: tuple[int, ...]

    def allowed(self, level: int, prefix_ids: np.ndarray) -> np.ndarray:
        """(len(prefix_ids), sizes[level]) bool; a negative id (a dead beam) allows nothing."""
        ids = np.asarray(prefix_ids, dtype=np.int64)
        return (self.child[level][np.maximum(ids, 0)] >= 0) & (ids >= 0)[:, None]


class SidTrie:
    """A counted prefix trie over fixed-depth integer SIDs."""

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        # prefix -> {next code -> number of distinct SIDs below that child}
        self._children: dict[Sid, dict[int, int]] = {}
        self._sids: set[Sid] = set()
        self._cache: dict[Sid, np.ndarray] = {}
        self._tables: dict[tuple[int, ...], TrieTables] = {}

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def from_sids(cls, sids: np.ndarray | Iterable[Sequence[int]], depth: int | None = None) -> SidTrie:
        """Build from an (n, depth) int array or an iterable of SIDs; duplicates are collapsed."""
        arr = np.asarray(list(sids) if not isinstance(sids, np.ndarray) else sids, dtype=np.int64)
        if arr.ndim != 2:
            if arr.size == 0 and depth is not None:
                return cls(depth)
            raise ValueError("sids must be a 2-d array of shape (n, depth)")
        trie = cls(depth or arr.shape[1])
        trie.add(arr)
        return trie

    def _check(self, sid: Sid) -> Sid:
        if len(sid) != self.depth:
            raise ValueError(f"SID {sid} has length {len(sid)}, the trie holds depth {self.depth}")
        return sid

    def add(self, sids: np.ndarray | Iterable[Sequence[int]]) -> int:
        """Insert SIDs; returns how many were new."""
        added = 0
        for row in np.asarray(list(sids) if not isinstance(sids, np.ndarray) else sids, dtype=np.int64):
            sid = self._check(tuple(int(c) for c in row))
            if sid in self._sids:
                continue
            self._sids.add(sid)
            added += 1
            for level in range(self.depth):
                prefix = sid[:level]
                kids = self._children.setdefault(prefix, {})
                kids[sid[level]] = kids.get(sid[level], 0) + 1
                self._cache.pop(prefix, None)
        if added:
            self._tables.clear()
        return added

    def remove(self, sids: np.ndarray | Iterable[Sequence[int]]) -> int:
        """Delete SIDs (unknown ones are ignored); returns how many were removed."""
        removed = 0
        for row in np.asarray(list(sids) if not isinstance(sids, np.ndarray) else sids, dtype=np.int64):
            sid = self._check(tuple(int(c) for c in row))
            if sid not in self._sids:
                continue
            self._sids.remove(sid)
            removed += 1
            for level in range(self.depth):
                prefix = sid[:level]
                kids = self._children[prefix]
                kids[sid[level]] -= 1
                if kids[sid[level]] == 0:
                    del kids[sid[level]]
                if not kids:
                    del self._children[prefix]
                self._cache.pop(prefix, None)
        if removed:
            self._tables.clear()
        return removed

    # -- lookups --------------------------------------------------------------------------------
    def next_codes(self, prefix: Sequence[int] = ()) -> np.ndarray:
        """Sorted int64 array of codes allowed after ``prefix`` (empty if the prefix is invalid)."""
        key = tuple(int(c) for c in prefix)
        cached = self._cache.get(key)
        if cached is None:
            kids = self._children.get(key)
            cached = np.array(sorted(kids), dtype=np.int64) if kids else np.empty(0, dtype=np.int64)
            self._cache[key] = cached
        return cached

    def tables(self, sizes: Sequence[int]) -> TrieTables:
        """Dense per-level child tables for codebook sizes ``sizes`` (cached until the next add/remove)."""
        key = tuple(int(n) for n in sizes)
        if len(key) != self.depth:
            raise ValueError(f"{len(key)} sizes for a trie of depth {self.depth}")
        if key not in self._tables:
            sids = self.sids()  # sorted rows, so every prefix's rows are contiguous
            parent = np.zeros(len(sids), dtype=np.int64)  # every SID starts at the empty prefix, id 0
            n_parents, child = 1, []
            for t, size in enumerate(key):
                # prefixes of length t+1 in sorted order: new ids wherever the prefix changes between rows
                changed = np.ones(len(sids), dtype=bool)
                if len(sids):
                    changed[1:] = (sids[1:, : t + 1] != sids[:-1, : t + 1]).any(axis=1)
                ids = np.cumsum(changed) - 1
                table = np.full((n_parents, size), -1, dtype=np.int64)
                fits = sids[:, t] < size  # a code the decoder cannot emit: that child stays -1
                table[parent[fits], sids[fits, t]] = ids[fits]
                child.append(table)
                parent, n_parents = ids, int(changed.sum())
            self._tables[key] = TrieTables(tuple(child), key)
        return self._tables[key]

    def has_prefix(self, prefix: Sequence[int]) -> bool:
        key = tuple(int(c) for c in prefix)
        return (key == () and bool(self._sids)) or key in self._children or key in self._sids

    def __contains__(self, sid: object) -> bool:
        return isinstance(sid, tuple) and sid in self._sids

    def __len__(self) -> int:
        return len(self._sids)

    def sids(self) -> np.ndarray:
        """All SIDs as a sorted (n, depth) int64 array."""
        if not self._sids:
            return np.empty((0, self.depth), dtype=np.int64)
        return np.array(sorted(self._sids), dtype=np.int64)

    def prefixes(self) -> list[Sid]:
        """Every prefix that has at least one child (for consistency checks)."""
        return list(self._children)
