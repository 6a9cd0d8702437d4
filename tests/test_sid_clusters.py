"""Cluster split (CQ-SID group suffix) and dedup suffix (baseline)."""

from __future__ import annotations

import numpy as np
import pytest

from genrecall.sid.clusters import ClusterConfig, dedup_suffix, make_sids, n_groups, split_clusters


def _codes(sizes: list[int]) -> np.ndarray:
    """Level codes with one cluster per entry of ``sizes`` (cluster k = (k, k % 3)), shuffled."""
    rows = np.concatenate([np.tile([k, k % 3], (s, 1)) for k, s in enumerate(sizes)])
    return rows[np.random.default_rng(1).permutation(len(rows))]


@pytest.mark.parametrize("size,expected", [(1, 1), (50, 1), (51, 2), (100, 2), (101, 3), (5000, 100), (9000, 100)])
def test_n_groups_follows_the_paper_rule(size: int, expected: int) -> None:
    assert n_groups(size, t_max=50, g_max=100) == expected


def test_split_bounds_groups_and_group_sizes() -> None:
    sizes = [3, 50, 51, 120, 777, 6000]
    codes = _codes(sizes)
    suffix = split_clusters(codes, t_max=50, g_max=100, seed=0)
    for k, size in enumerate(sizes):
        member = codes[:, 0] == k
        groups, counts = np.unique(suffix[member], return_counts=True)
        assert len(groups) == n_groups(size)
        assert groups.tolist() == list(range(len(groups)))  # suffixes 0..G-1
        if size <= 50:
            assert groups.tolist() == [0]  # unsplit clusters keep suffix 0
        elif size <= 50 * 100:
            assert counts.max() <= 50
        else:  # G_max caps the split: groups exceed T_max but stay balanced
            assert len(groups) == 100 and counts.max() - counts.min() <= 1


def test_split_is_reproducible_and_seed_dependent() -> None:
    codes = _codes([400, 60])
    a = split_clusters(codes, seed=3)
    assert np.array_equal(a, split_clusters(codes, seed=3))
    assert not np.array_equal(a, split_clusters(codes, seed=4))


def test_dedup_suffix_makes_every_sid_unique() -> None:
    codes = _codes([5, 1, 30])
    sids = make_sids(codes, ClusterConfig(suffix_mode="dedup"))
    assert len(np.unique(sids, axis=0)) == len(sids)
    suffix = dedup_suffix(codes)
    for k, size in enumerate([5, 1, 30]):
        assert sorted(suffix[codes[:, 0] == k].tolist()) == list(range(size))


def test_make_sids_shape_and_bad_mode() -> None:
    codes = _codes([2, 2])
    assert make_sids(codes).shape == (4, 3)
    with pytest.raises(ValueError):
        make_sids(codes, ClusterConfig(suffix_mode="nope"))
