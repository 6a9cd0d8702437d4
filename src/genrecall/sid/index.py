"""``SidIndex``: SID -> items (inverted index) and item -> SID, with the trie of valid SIDs kept in sync.

A SID is ``(c1, ..., cL, suffix)``. The index is what beam search expands: ``items(sid)`` is a dict
hit returning a cached sorted int64 array, ``trie.next_codes(prefix)`` constrains decoding.

Adding items (the daily rebuild: frozen tokenizer, no retraining) follows one documented rule:

- ``add`` with full SIDs (n, L+1) places items exactly there.
- ``add`` with level codes (n, L) lets the index pick the suffix, item by item:
  * ``group`` mode (CQ-SID): a new cluster starts at suffix 0. Otherwise the item goes to the
    *smallest* group of its cluster (ties: lowest suffix); if that group already holds ``t_max``
    items and the cluster has fewer than ``g_max`` groups, a new group opens with the lowest unused
    suffix instead. So every group stays <= t_max until the cluster has g_max groups, and the suffix
    never reaches g_max.
  * ``dedup`` mode (baseline): the item takes the lowest suffix unused in its cluster (unique SIDs).
- An item that is already indexed is moved (its old SID loses it). ``remove`` drops delisted items;
  a SID left empty leaves the trie.

Saved as ``sid_assignments.parquet`` (the SID_ASSIGNMENTS contract) + ``index.json``; no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrecall.data.schema import SID_ASSIGNMENTS, read_table, sid_to_str, write_table
from genrecall.sid.clusters import SUFFIX_MODES
from genrecall.sid.trie import SidTrie

Sid = tuple[int, ...]


class SidIndex:
    """Inverted index between items and fixed-length SIDs, plus the ``SidTrie`` of its SIDs."""

    def __init__(
        self,
        depth: int,
        *,
        codebook_sizes: Sequence[int] | None = None,
        suffix_mode: str = "group",
        t_max: int = 50,
        g_max: int = 100,
    ) -> None:
        if suffix_mode not in SUFFIX_MODES:
            raise ValueError(f"suffix_mode must be one of {SUFFIX_MODES}, got {suffix_mode!r}")
        if codebook_sizes is not None and len(codebook_sizes) != depth - 1:
            raise ValueError(f"codebook_sizes has {len(codebook_sizes)} levels, SIDs of depth {depth} have {depth - 1}")
        self.depth = depth  # levels + 1 suffix position
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes) if codebook_sizes is not None else None
        self.suffix_mode, self.t_max, self.g_max = suffix_mode, t_max, g_max
        self.trie = SidTrie(depth)
        self._sid_of: dict[int, Sid] = {}
        self._members: dict[Sid, dict[int, None]] = {}  # insertion-ordered sets
        self._groups: dict[Sid, dict[int, int]] = {}  # level prefix -> {suffix -> items}
        self._cache: dict[Sid, np.ndarray] = {}

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def build(cls, item_ids: np.ndarray, codes: np.ndarray, **kwargs: Any) -> SidIndex:
        """An index over ``item_ids`` with full SIDs ``codes`` (n, L+1); kwargs as in ``__init__``."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2:
            raise ValueError("codes must be (n, L+1)")
        index = cls(codes.shape[1], **kwargs)
        index.add(item_ids, codes)
        return index

    def _place(self, item: int, sid: Sid, new_sids: list[Sid]) -> None:
        old = self._sid_of.get(item)
        if old == sid:
            return
        if old is not None:
            self._drop(item, old)
        members = self._members.get(sid)
        if members is None:
            members = self._members[sid] = {}
            new_sids.append(sid)  # the caller adds them to the trie in one call
        members[item] = None
        self._sid_of[item] = sid
        groups = self._groups.setdefault(sid[:-1], {})
        groups[sid[-1]] = groups.get(sid[-1], 0) + 1
        self._cache.pop(sid, None)

    def _drop(self, item: int, sid: Sid) -> None:
        members = self._members[sid]
        del members[item]
        del self._sid_of[item]
        groups = self._groups[sid[:-1]]
        groups[sid[-1]] -= 1
        if not members:
            del self._members[sid]
            del groups[sid[-1]]
            if not groups:
                del self._groups[sid[:-1]]
            if sid in self.trie:
                self.trie.remove(np.asarray([sid], dtype=np.int64))
        self._cache.pop(sid, None)

    def _choose_suffix(self, prefix: Sid) -> int:
        groups = self._groups.get(prefix)
        if not groups:
            return 0
        lowest_unused = next(s for s in range(len(groups) + 1) if s not in groups)
        if self.suffix_mode == "dedup":
            return lowest_unused
        smallest = min(groups, key=lambda s: (groups[s], s))
        if groups[smallest] >= self.t_max and len(groups) < self.g_max:
            return lowest_unused
        return smallest

    def add(self, item_ids: np.ndarray | Iterable[int], codes: np.ndarray) -> np.ndarray:
        """Index items: ``codes`` (n, L+1) = full SIDs, or (n, L) = level codes, suffix chosen by the
        rule in the module docstring. Returns the full SIDs the items got (n, L+1)."""
        ids = np.asarray(list(item_ids) if not isinstance(item_ids, np.ndarray) else item_ids, dtype=np.int64)
        codes = np.asarray(codes, dtype=np.int64).reshape(len(ids), -1)
        if codes.shape[1] not in (self.depth, self.depth - 1):
            raise ValueError(f"codes must have {self.depth} (full SID) or {self.depth - 1} (levels) columns")
        full = codes.shape[1] == self.depth
        out = np.empty((len(ids), self.depth), dtype=np.int64)
        new_sids: list[Sid] = []
        for i, (item, row) in enumerate(zip(ids.tolist(), codes.tolist())):
            if full:
                sid = tuple(row)
            else:
                prefix = tuple(row)
                if self._sid_of.get(item, (None,))[:-1] == prefix:
                    sid = self._sid_of[item]  # unchanged levels: keep its group
                else:
                    sid = (*prefix, self._choose_suffix(prefix))
            self._place(item, sid, new_sids)
            out[i] = sid
        alive = [sid for sid in new_sids if sid in self._members]  # a SID may have emptied again
        if alive:
            self.trie.add(np.asarray(alive, dtype=np.int64))
        return out

    def remove(self, item_ids: np.ndarray | Iterable[int]) -> int:
        """Drop items (unknown ids are ignored); returns how many were removed."""
        removed = 0
        for item in np.asarray(
            list(item_ids) if not isinstance(item_ids, np.ndarray) else item_ids, dtype=np.int64
        ).tolist():
            sid = self._sid_of.get(item)
            if sid is not None:
                self._drop(item, sid)
                removed += 1
        return removed

    # -- lookups --------------------------------------------------------------------------------------
    def items(self, sid: Sequence[int]) -> np.ndarray:
        """Sorted int64 item ids of one SID (empty if the SID is not in the index)."""
        key = tuple(int(c) for c in sid)
        cached = self._cache.get(key)
        if cached is None:
            members = self._members.get(key)
            if members is None:
                return np.empty(0, dtype=np.int64)
            cached = np.array(sorted(members), dtype=np.int64)
            self._cache[key] = cached
        return cached

    def expand(self, sids: Iterable[Sequence[int]]) -> np.ndarray:
        """Items of several SIDs, concatenated in the given SID order (beam order)."""
        parts = [self.items(s) for s in sids]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def sid_of(self, item_ids: np.ndarray | Iterable[int]) -> np.ndarray:
        """SIDs (n, L+1) of items; rows of -1 for items not in the index."""
        ids = np.asarray(list(item_ids) if not isinstance(item_ids, np.ndarray) else item_ids, dtype=np.int64)
        missing = (-1,) * self.depth
        return np.array([self._sid_of.get(i, missing) for i in ids.tolist()], dtype=np.int64).reshape(
            len(ids), self.depth
        )

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, (int, np.integer)) and int(item_id) in self._sid_of

    def __len__(self) -> int:
        return len(self._sid_of)

    @property
    def n_sids(self) -> int:
        return len(self._members)

    def item_ids(self) -> np.ndarray:
        """All indexed items, sorted."""
        return np.array(sorted(self._sid_of), dtype=np.int64)

    def sids(self) -> np.ndarray:
        """All SIDs (sorted, (n_sids, L+1))."""
        return self.trie.sids()

    def cluster_sizes(self) -> np.ndarray:
        """Items per SID, one entry per SID (order of ``sids()``)."""
        return np.array([len(self._members[tuple(s)]) for s in self.sids().tolist()], dtype=np.int64)

    @property
    def sid_vocab_sizes(self) -> tuple[int, ...]:
        """Tokens the generator needs at each position: the codebook sizes (or max code + 1) for the
        levels; for the suffix, g_max in group mode (a bound the add rule keeps), else max suffix + 1."""
        sids = self.sids()
        used = sids.max(axis=0) + 1 if len(sids) else np.ones(self.depth, dtype=np.int64)
        levels = self.codebook_sizes or tuple(int(v) for v in used[:-1])
        levels = tuple(max(a, int(b)) for a, b in zip(levels, used[:-1]))
        suffix = max(self.g_max, int(used[-1])) if self.suffix_mode == "group" else int(used[-1])
        return (*levels, suffix)

    def check(self) -> None:
        """Raise AssertionError if the trie and the index disagree (used by tests and the rebuild)."""
        index_sids = set(self._members)
        trie_sids = {tuple(s) for s in self.trie.sids().tolist()}
        assert index_sids == trie_sids, f"{len(index_sids ^ trie_sids)} SIDs differ between index and trie"
        assert sum(len(m) for m in self._members.values()) == len(self._sid_of), "item counts differ"

    # -- persistence ------------------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """SID_ASSIGNMENTS rows (item_id, sid, codes), sorted by item_id."""
        ids = self.item_ids()
        sids = self.sid_of(ids)
        return pd.DataFrame(
            {"item_id": ids, "sid": [sid_to_str(s) for s in sids.tolist()], "codes": [list(s) for s in sids.tolist()]}
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``sid_assignments.parquet`` + ``index.json`` into ``directory``."""
        directory = Path(directory)
        write_table(self.to_frame(), SID_ASSIGNMENTS, directory)
        meta = {
            "depth": self.depth,
            "codebook_sizes": list(self.codebook_sizes) if self.codebook_sizes else None,
            "suffix_mode": self.suffix_mode,
            "t_max": self.t_max,
            "g_max": self.g_max,
            "items": len(self),
            "sids": self.n_sids,
            "sid_vocab_sizes": list(self.sid_vocab_sizes),
        }
        (directory / "index.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SidIndex:
        directory = Path(directory)
        meta = json.loads((directory / "index.json").read_text())
        index = cls(
            meta["depth"],
            codebook_sizes=meta["codebook_sizes"],
            suffix_mode=meta["suffix_mode"],
            t_max=meta["t_max"],
            g_max=meta["g_max"],
        )
        df = read_table(SID_ASSIGNMENTS, directory)
        codes = np.array(df["codes"].tolist(), dtype=np.int64).reshape(len(df), meta["depth"])
        index.add(df["item_id"].to_numpy(np.int64), codes)
        return index
