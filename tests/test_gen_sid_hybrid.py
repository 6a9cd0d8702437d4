"""sid_hybrid (gen/sid_hybrid.py): SIDs ranked by BM25 over their items' texts and by their centroid, fused."""

from __future__ import annotations

import numpy as np
import pytest

from genrecall.gen.sid_hybrid import SidHybrid, SidHybridConfig

# four clusters of two items each; vectors: cluster c points along axis c
SIDS = np.array([[0, 0], [0, 0], [0, 1], [0, 1], [1, 0], [1, 0], [1, 1], [1, 1]])
TEXTS = [
    "cordless drill 18v",
    "drill bit set",
    "garden hose 50 ft",
    "hose nozzle",
    "ceiling fan xr-7730",
    "ceiling fan light kit",
    "paint roller",
    "paint tray liner",
]
VECTORS = np.repeat(np.eye(4, dtype=np.float32), 2, axis=0)


def fitted(**cfg: int) -> SidHybrid:
    return SidHybrid(SidHybridConfig(**cfg)).fit(SIDS, TEXTS, VECTORS)


def test_wording_alone_and_meaning_alone_each_find_their_cluster() -> None:
    h = fitted()
    assert len(h) == 4
    flat = np.full((1, 4), 0.5, dtype=np.float32)  # a vector that prefers no cluster
    # a model number only one cluster's titles carry: BM25 puts that SID first
    assert h.search(["xr-7730"], flat, k=4)[0][0].tolist() == [1, 0]
    # no word in any title, a vector pointing at the hose cluster: the centroid ranking decides
    got = h.search(["something to water plants"], np.array([[0, 1, 0, 0]], dtype=np.float32), k=4)[0]
    assert got[0].tolist() == [0, 1]


def test_both_rankings_agreeing_beat_either_alone() -> None:
    h = fitted()
    # the words match the drill cluster best ("drill" twice) and the paint cluster next ("tray"); the
    # vector points at paint, then fans: paint, second by wording and first by meaning, is first fused
    got = h.search(["drill tray"], np.array([[0, 0, 0.2, 1]], dtype=np.float32), k=4)[0]
    assert got[0].tolist() == [1, 1]
    # the same words with a vector pointing at drills: drill, first both ways, is first
    got = h.search(["drill tray"], np.array([[1, 0, 0.2, 0]], dtype=np.float32), k=4)[0]
    assert got[0].tolist() == [0, 0]
    assert {tuple(s) for s in got.tolist()} <= {tuple(s) for s in SIDS.tolist()}
    assert len({tuple(s) for s in got.tolist()}) == len(got)  # distinct SIDs, each a real cluster


def test_a_generators_sids_join_the_fusion_as_a_third_ranking() -> None:
    h = fitted()
    vec = np.array([[0, 0, 0.2, 1]], dtype=np.float32)  # paint first, then fans (see above)
    assert h.search(["drill tray"], vec, k=4)[0][0].tolist() == [1, 1]
    # a generator that puts the drill cluster first (and an SID no cluster has, skipped) tips the vote
    generated = [np.array([[0, 0], [5, 5], [1, 0]])]
    got = h.search(["drill tray"], vec, k=4, generated=generated)[0]
    assert got[0].tolist() == [0, 0]
    assert h.numbers(generated[0]).tolist() == [0, 2]
    with pytest.raises(ValueError, match="generated"):
        h.search(["drill tray"], vec, k=4, generated=[])


def test_k_and_depth_bound_the_answer() -> None:
    h = fitted(depth=2)
    got = h.search(["paint"], np.array([[0, 0, 0, 1]], dtype=np.float32), k=10)
    assert got[0].shape == (2, 2)  # no more than depth SIDs from either ranking
    assert fitted().search(["paint"], np.array([[0, 0, 0, 1]], dtype=np.float32), k=1)[0].shape == (1, 2)
    assert fitted().search([], np.empty((0, 4), dtype=np.float32), k=3) == []


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="texts"):
        SidHybrid().fit(SIDS, TEXTS[:-1], VECTORS)
    with pytest.raises(ValueError, match="vectors"):
        fitted().search(["a", "b"], np.zeros((1, 4), dtype=np.float32), k=3)
    with pytest.raises(ValueError, match="depth"):
        SidHybridConfig(depth=0)
