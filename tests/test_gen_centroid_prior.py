"""Decoding with the trie nodes' centroids (gen/centroid_prior.py): exact scores, the centroids
themselves, and the training-free `centroid_beam`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecall.gen.beam import beam_search
from genrecall.gen.centroid_prior import CentroidPrior, CentroidPriorConfig, NodeCentroids, centroid_beam
from genrecall.sid.trie import SidTrie
from tests.gen_fixtures import peaked_generator

torch.set_num_threads(1)
SIZES = (5, 4, 3)  # two codebook levels and a suffix
DIM = 6


@pytest.fixture(scope="module")
def setup():
    tok, model = peaked_generator(SIZES)
    rng = np.random.default_rng(0)
    item_sids = np.stack([rng.integers(0, s, 80) for s in SIZES], axis=1)  # several items share a SID
    item_vectors = rng.normal(size=(len(item_sids), DIM)).astype(np.float32)
    trie = SidTrie.from_sids(np.unique(item_sids, axis=0))
    prompts = [
        tok.encode_prompt("red kettle"),
        tok.encode_prompt("blue cotton shirt with a longer query"),
        [tok.bos_id],
    ]
    queries = rng.normal(size=(len(prompts), DIM)).astype(np.float32)
    nodes = NodeCentroids.fit(trie, SIZES, item_sids, item_vectors)
    return tok, model, trie, prompts, item_sids, item_vectors, queries, nodes


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _centroid(item_sids: np.ndarray, item_vectors: np.ndarray, prefix: tuple[int, ...]) -> np.ndarray:
    """A node's centroid by hand: the normalised mean of its items' unit vectors."""
    under = (item_sids[:, : len(prefix)] == np.array(prefix)).all(axis=1)
    return _unit(_unit(item_vectors[under].astype(np.float64)).mean(axis=0))


def _log_prior(trie: SidTrie, item_sids, item_vectors, q: np.ndarray, sid: tuple[int, ...], cfg) -> float:
    """The prior of one SID by hand: per level, log softmax over the trie's children of cosine / temperature."""
    total = 0.0
    for t in range(len(sid)):
        kids = trie.next_codes(sid[:t])
        cos = (
            np.array([_centroid(item_sids, item_vectors, (*sid[:t], int(c))) @ _unit(q) for c in kids])
            / cfg.temperature
        )
        mine = cos[list(kids).index(sid[t])]
        total += float(mine - np.log(np.exp(cos - cos.max()).sum()) - cos.max())
    return cfg.weight * total


def test_node_centroids_are_the_mean_of_their_items(setup) -> None:
    _, _, trie, _, item_sids, item_vectors, _, nodes = setup
    tables = trie.tables(SIZES)
    for sid in [tuple(s) for s in item_sids[:10]]:
        node = 0
        for t in range(len(SIZES)):
            node = int(tables.child[t][node, sid[t]])
            np.testing.assert_allclose(
                nodes.centroids[t][node], _centroid(item_sids, item_vectors, sid[: t + 1]), atol=1e-5
            )


def test_scores_are_generator_log_prob_plus_weighted_prior_exactly(setup) -> None:
    tok, model, trie, prompts, item_sids, item_vectors, queries, nodes = setup
    cfg = CentroidPriorConfig(weight=1.5, temperature=0.3)
    everything = len(trie) + 10  # a beam wider than the trie keeps every SID: scores are exact, not pruned
    plain = beam_search(model, tok, trie, prompts, everything)
    prior = CentroidPrior.from_nodes(nodes, queries, cfg)
    fused = beam_search(model, tok, trie, prompts, everything, prior=prior, batch_size=2)
    for i, (p, f) in enumerate(zip(plain, fused)):
        generator = dict(zip(p.as_tuples(), p.scores))
        assert set(f.as_tuples()) == set(generator)
        expected = [generator[s] + _log_prior(trie, item_sids, item_vectors, queries[i], s, cfg) for s in f.as_tuples()]
        np.testing.assert_allclose(f.scores, expected, atol=1e-4)
        assert np.all(np.diff(f.scores) <= 1e-6)  # best first under the fused score


def test_weight_zero_is_the_generator_alone_and_a_strong_prior_follows_the_centroids(setup) -> None:
    tok, model, trie, prompts, _, _, queries, nodes = setup
    plain = beam_search(model, tok, trie, prompts, 7)
    off = beam_search(
        model, tok, trie, prompts, 7, prior=CentroidPrior.from_nodes(nodes, queries, CentroidPriorConfig())
    )
    for a, b in zip(plain, off):
        np.testing.assert_array_equal(a.sids, b.sids)
        np.testing.assert_allclose(a.scores, b.scores)
    strong = CentroidPriorConfig(weight=100.0, temperature=0.01)
    fused = beam_search(model, tok, trie, prompts, 1, prior=CentroidPrior.from_nodes(nodes, queries, strong))
    alone = centroid_beam(nodes, queries, 1)
    for f, c in zip(fused, alone):  # a greedy walk down the best child centroid, either way
        np.testing.assert_array_equal(f.sids[0], c[0])


def test_centroid_beam_finds_an_item_from_its_own_vector(setup) -> None:
    _, _, trie, _, item_sids, item_vectors, _, nodes = setup
    found = centroid_beam(nodes, item_vectors[:20], 5, batch_size=7)
    assert all(len(f) == 5 and all(tuple(s) in trie for s in f) for f in found)
    for f in found:  # best first by the last level's cosine, no SID twice
        assert len({tuple(s) for s in f}) == len(f)
    hits = np.mean([any((s == sid).all() for s in f) for f, sid in zip(found, item_sids[:20])])
    assert hits >= 0.5  # random 6-d vectors: an item's own vector leads to its own SID most of the time


def test_bad_settings_are_refused(setup) -> None:
    _, _, trie, _, item_sids, item_vectors, _, _ = setup
    with pytest.raises(ValueError, match="temperature"):
        CentroidPriorConfig(weight=1.0, temperature=0.0)
    with pytest.raises(ValueError, match="item SIDs"):
        NodeCentroids.fit(trie, SIZES, item_sids[:5], item_vectors)
