"""Dense-teacher targets (gen/teacher.py): which rows change, to what, and reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from genrecall.gen.examples import SidDataset
from genrecall.gen.teacher import TeacherConfig, draw_clusters, nearest_items, relabel_with_teacher


def _catalog(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """40 items in 8 well-separated groups of 5; a group's items share a SID (one cluster each)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 16)) * 4
    vectors = np.repeat(centres, 5, axis=0) + rng.normal(size=(40, 16)) * 0.1
    sids = np.array([[g // 4, g % 4] for g in range(8) for _ in range(5)], dtype=np.int64)
    return vectors.astype(np.float32), sids


def _dataset(sources: np.ndarray, sids: np.ndarray) -> SidDataset:
    return SidDataset([[1, 2]] * len(sources), sids[sources], "i2sid", sources, [f"q{i}" for i in sources])


def test_nearest_items_are_exact_cosine_neighbours() -> None:
    x, _ = _catalog()
    q = x[[3, 17]] * 2.5  # scale must not matter: cosine
    sims, rows = nearest_items(q, x, k=4)
    assert rows[0, 0] == 3 and rows[1, 0] == 17
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = np.sort(unit @ (q[0] / np.linalg.norm(q[0])))[::-1][:4]
    np.testing.assert_allclose(sims[0], expected, atol=1e-5)


def test_a_sharp_teacher_picks_the_cluster_nearest_in_meaning() -> None:
    x, sids = _catalog()
    # a pseudo-query cut from item 0 (group 0) whose meaning sits in group 6
    ds = _dataset(np.array([0]), sids)
    labels = relabel_with_teacher(ds, x[[32]], x, sids, TeacherConfig(share=1.0, temperature=1e-4, top_items=10))
    assert labels.relabelled == 1 and labels.kept_own == 0
    assert tuple(labels.dataset.targets[0]) == tuple(sids[32])
    assert tuple(ds.targets[0]) == tuple(sids[0])  # the input dataset is not modified


def test_draws_stay_within_the_top_clusters_and_spread_with_temperature() -> None:
    x, sids = _catalog()
    _, cluster = np.unique(sids, axis=0, return_inverse=True)
    sims, rows = nearest_items(x[:1].repeat(400, axis=0), x, k=40)
    rng = np.random.default_rng(0)
    flat = TeacherConfig(share=1.0, top_clusters=2, temperature=10.0)
    top2 = draw_clusters(sims, rows, cluster.reshape(-1), flat, rng)
    ranked = list(dict.fromkeys(cluster[rows[0]]))  # clusters in best-cosine order
    assert set(top2) == set(ranked[:2])  # a flat softmax over the first two, nothing beyond
    sharp = draw_clusters(sims, rows, cluster.reshape(-1), TeacherConfig(share=1.0, temperature=1e-4), rng)
    assert set(sharp) == {ranked[0]}


def test_share_relabels_that_fraction_and_is_reproducible() -> None:
    x, sids = _catalog()
    sources = np.arange(40).repeat(25)
    ds = _dataset(sources, sids)
    vectors = x[sources] + np.random.default_rng(1).normal(size=(1000, 16)).astype(np.float32) * 3
    cfg = TeacherConfig(share=0.5, temperature=0.5, seed=7)
    a, b = (relabel_with_teacher(ds, vectors, x, sids, cfg) for _ in range(2))
    np.testing.assert_array_equal(a.dataset.targets, b.dataset.targets)
    assert 400 < a.relabelled < 600
    changed = int(np.any(a.dataset.targets != ds.targets, axis=1).sum())
    assert changed == a.relabelled - a.kept_own and changed > 0
    valid = {tuple(s) for s in sids}
    assert all(tuple(t) in valid for t in a.dataset.targets)  # every target is a real cluster's SID
    other = relabel_with_teacher(ds, vectors, x, sids, TeacherConfig(share=0.5, temperature=0.5, seed=8))
    assert not np.array_equal(other.dataset.targets, a.dataset.targets)
    off = relabel_with_teacher(ds, vectors, x, sids, TeacherConfig())
    assert off.relabelled == 0 and np.array_equal(off.dataset.targets, ds.targets)


def test_bad_settings_and_shapes_are_refused() -> None:
    x, sids = _catalog()
    with pytest.raises(ValueError, match="share"):
        TeacherConfig(share=1.5)
    with pytest.raises(ValueError, match="temperature"):
        TeacherConfig(share=1.0, temperature=0.0)
    with pytest.raises(ValueError, match="vectors for"):
        relabel_with_teacher(_dataset(np.arange(3), sids), x[:2], x, sids, TeacherConfig(share=1.0))
    with pytest.raises(ValueError, match="item SIDs"):
        relabel_with_teacher(_dataset(np.arange(3), sids), x[:3], x, sids[:5], TeacherConfig(share=1.0))
