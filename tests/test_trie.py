from __future__ import annotations

import numpy as np
import pytest

from genrecall.sid.trie import SidTrie


def _random_sids(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 5, n), rng.integers(0, 4, n), rng.integers(0, 3, n)], axis=1)


def test_round_trip_and_prefixes_are_valid() -> None:
    sids = _random_sids(200)
    trie = SidTrie.from_sids(sids)
    unique = np.unique(sids, axis=0)
    assert len(trie) == len(unique)
    np.testing.assert_array_equal(trie.sids(), unique)
    # every full path is reachable by walking next_codes, and no prefix leads nowhere
    for sid in unique:
        for level in range(3):
            assert sid[level] in trie.next_codes(sid[:level])
    for prefix in trie.prefixes():
        assert len(trie.next_codes(prefix)) > 0
        assert any(tuple(s[: len(prefix)]) == prefix for s in unique)


def test_next_codes_sorted_and_empty_for_unknown_prefix() -> None:
    trie = SidTrie.from_sids([(1, 2, 0), (1, 0, 0), (3, 1, 1)])
    np.testing.assert_array_equal(trie.next_codes(()), [1, 3])
    np.testing.assert_array_equal(trie.next_codes((1,)), [0, 2])
    assert trie.next_codes((2,)).size == 0
    assert trie.next_codes((1, 2, 0)).size == 0  # a full SID has no children


def test_remove_keeps_shared_prefixes() -> None:
    trie = SidTrie.from_sids([(1, 2, 0), (1, 2, 1), (4, 0, 0)])
    assert trie.remove([(1, 2, 0)]) == 1
    np.testing.assert_array_equal(trie.next_codes((1, 2)), [1])
    assert trie.remove([(1, 2, 1), (9, 9, 9)]) == 1  # unknown SIDs are ignored
    np.testing.assert_array_equal(trie.next_codes(()), [4])
    assert (1, 2, 1) not in trie and (4, 0, 0) in trie
    assert trie.prefixes() and all(p[:1] != (1,) for p in trie.prefixes())


def test_add_remove_random_matches_rebuild() -> None:
    rng = np.random.default_rng(3)
    trie = SidTrie(depth=3)
    live: set[tuple[int, ...]] = set()
    for _ in range(50):
        batch = _random_sids(10, seed=int(rng.integers(1e9)))
        if rng.random() < 0.6:
            trie.add(batch)
            live |= {tuple(map(int, r)) for r in batch}
        else:
            trie.remove(batch)
            live -= {tuple(map(int, r)) for r in batch}
        rebuilt = SidTrie.from_sids(sorted(live), depth=3)
        assert set(trie.prefixes()) == set(rebuilt.prefixes())
        for p in rebuilt.prefixes():
            np.testing.assert_array_equal(trie.next_codes(p), rebuilt.next_codes(p))


def test_wrong_depth_is_rejected() -> None:
    trie = SidTrie(depth=3)
    with pytest.raises(ValueError, match="length"):
        trie.add([(1, 2)])
