"""SidIndex: inverted index + trie in sync through build, add, remove, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genrecall.data.schema import SID_ASSIGNMENTS, read_table, sid_from_str
from genrecall.sid.clusters import ClusterConfig, make_sids
from genrecall.sid.index import SidIndex


def _index(n: int = 600, seed: int = 0, mode: str = "group") -> tuple[SidIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    levels = np.stack([rng.integers(0, 6, n), rng.integers(0, 3, n), rng.integers(0, 2, n)], axis=1)
    levels[:200] = [1, 1, 1]  # one big cluster that must be split
    sids = make_sids(levels, ClusterConfig(suffix_mode=mode, t_max=50, g_max=100))
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    return SidIndex.build(ids, sids, codebook_sizes=(6, 3, 2), suffix_mode=mode), ids, sids


def _walk(index: SidIndex) -> set[tuple[int, ...]]:
    """Every full path reachable through trie.next_codes from the root."""
    paths, stack = set(), [()]
    while stack:
        prefix = stack.pop()
        if len(prefix) == index.depth:
            paths.add(prefix)
            continue
        nxt = index.trie.next_codes(prefix)
        assert len(nxt) > 0, f"dead-end prefix {prefix}"  # an invalid prefix would end here
        stack.extend((*prefix, int(c)) for c in nxt)
    return paths


def test_build_lookups_and_trie_roundtrip() -> None:
    index, ids, sids = _index()
    assert len(index) == len(ids)
    assert np.array_equal(index.sid_of(ids), sids)
    for sid in np.unique(sids, axis=0)[:50]:
        expected = np.sort(ids[(sids == sid).all(axis=1)])
        assert np.array_equal(index.items(sid), expected)
    assert _walk(index) == {tuple(s) for s in np.unique(sids, axis=0).tolist()}
    assert all(index.trie.has_prefix(p) for p in index.trie.prefixes())
    index.check()
    assert index.items((9, 9, 9, 9)).size == 0
    assert (index.sid_of([5]) == -1).all()


def test_expand_keeps_beam_order() -> None:
    index, _, sids = _index()
    a, b = sids[0], sids[-1]
    assert np.array_equal(index.expand([a, b]), np.concatenate([index.items(a), index.items(b)]))


def test_add_rule_smallest_group_and_new_groups_up_to_g_max() -> None:
    index = SidIndex(4, t_max=3, g_max=4)
    prefix = np.array([[2, 0, 1]])
    got = [tuple(index.add([i], prefix)[0]) for i in range(14)]
    suffixes = [s[-1] for s in got]
    # fills group 0 to t_max, then opens groups 1, 2, 3 (g_max=4), then balances the smallest group
    assert suffixes[:12] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert set(suffixes[12:]) <= {0, 1, 2, 3}
    sizes = [len(index.items((2, 0, 1, g))) for g in range(4)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 14
    assert index.sid_vocab_sizes[-1] == 4
    index.check()


def test_add_to_split_cluster_goes_to_smallest_group() -> None:
    index, _ids, _sids = _index()
    big = (1, 1, 1)
    before = {g: len(index.items((*big, g))) for g in range(10) if len(index.items((*big, g)))}
    index.remove(index.items((*big, 0))[:10])  # make group 0 the smallest
    got = index.add([5000], np.array([big]))
    assert got[0, -1] == 0
    assert all(len(index.items((*big, g))) <= 50 for g in before)
    index.check()


def test_remove_and_move_keep_trie_in_sync() -> None:
    index, ids, sids = _index()
    lone = ids[np.flatnonzero((sids != [1, 1, 1, 0]).any(axis=1))[0]]
    sid = tuple(index.sid_of([lone])[0])
    for item in index.items(sid):
        index.remove([item])
    assert sid not in index.trie and index.items(sid).size == 0
    assert index.remove([123456789]) == 0
    moved = ids[-1]
    index.add([moved], np.array([[5, 2, 1, 7]]))  # an explicit full SID moves the item
    assert tuple(index.sid_of([moved])[0]) == (5, 2, 1, 7) and (5, 2, 1, 7) in index.trie
    index.check()
    assert _walk(index) == {tuple(s) for s in index.sids().tolist()}


def test_dedup_mode_add_stays_unique() -> None:
    index, _ids, _sids = _index(mode="dedup")
    new = index.add(np.arange(9000, 9050), np.tile([1, 1, 1], (50, 1)))
    all_sids = index.sid_of(index.item_ids())
    assert len(np.unique(all_sids, axis=0)) == len(index)
    assert index.sid_vocab_sizes[-1] == int(all_sids[:, -1].max()) + 1
    assert new[:, -1].min() >= 0


def test_save_load_roundtrip(tmp_path: Path) -> None:
    index, ids, sids = _index()
    index.save(tmp_path)
    df = read_table(SID_ASSIGNMENTS, tmp_path)
    assert df["item_id"].is_monotonic_increasing
    assert all(sid_from_str(s) == tuple(c) for s, c in zip(df["sid"], df["codes"]))
    loaded = SidIndex.load(tmp_path)
    assert np.array_equal(loaded.sid_of(ids), sids)
    assert loaded.sid_vocab_sizes == index.sid_vocab_sizes == (6, 3, 2, 100)
    assert np.array_equal(loaded.trie.sids(), index.trie.sids())
    assert not any(p.suffix == ".pkl" for p in tmp_path.iterdir())


def test_bad_shapes_raise() -> None:
    index = SidIndex(3)
    with pytest.raises(ValueError):
        index.add([1], np.array([[1, 2, 3, 4, 5]]))
    with pytest.raises(ValueError):
        SidIndex(3, codebook_sizes=(4, 4, 4))
