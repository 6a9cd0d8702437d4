"""BM25 (bm25s) and dense (faiss) baselines on toy catalogs, and their items@N through the metrics."""

from __future__ import annotations

import numpy as np
import pytest

from genrecall.eval.baselines import BM25Config, BM25Retriever, DenseConfig, DenseRetriever, SearchResult
from genrecall.eval.metrics import evaluate_ranked_items

IDS = np.array([101, 102, 103, 104, 105, 106], dtype=np.int64)
TITLES = [
    "Stainless Steel Electric Kettle 1.7L",
    "Cordless Drill 18V Brushless",
    "Ceramic Tea Kettle Blue",
    "Steel Claw Hammer 16 oz",
    "Glass Electric Kettle with LED",
    "Cotton T-Shirt Size L",
]


def test_bm25_finds_the_exact_title_first() -> None:
    bm25 = BM25Retriever().fit(IDS, TITLES)
    res = bm25.search([t.lower() for t in TITLES], k=3)
    assert isinstance(res, SearchResult)
    assert res.items[:, 0].tolist() == IDS.tolist()  # every title retrieves its own item first
    batched = bm25.search([t.lower() for t in TITLES], k=3, batch_size=4)  # 2 batches, same answer
    np.testing.assert_array_equal(batched.items, res.items)
    assert res.items.shape == (6, 3) and res.items.dtype == np.int64
    # Scores are sorted best first; rows with fewer matches are padded with -1 / -inf.
    valid = res.items >= 0
    assert not valid.all() and np.isneginf(res.scores[~valid]).all()
    assert np.all(np.diff(np.where(valid, res.scores, -1e9), axis=1) <= 0)


def test_bm25_only_returns_matching_items_and_pads() -> None:
    bm25 = BM25Retriever().fit(IDS, TITLES)
    res = bm25.search(["electric kettle", "zebra", "", "with"], k=10)  # k above the catalog size
    assert res.items.shape == (4, 10)
    # "electric kettle": the two electric kettles lead, then the tea kettle; nothing else shares a term.
    assert set(res.items[0, :2].tolist()) == {101, 105} and res.items[0, 2] == 103
    assert (res.items[0, 3:] == -1).all() and np.isneginf(res.scores[0, 3:]).all()
    assert (res.items[1:] == -1).all()  # unknown word, empty query, a stopword only
    # Single-letter tokens are kept on purpose (sizes): "size l" finds the T-shirt.
    assert bm25.search(["shirt l"], k=1).items[0, 0] == 106
    # With stopwords off, "with" matches the glass kettle.
    assert BM25Retriever(BM25Config(stopwords=None)).fit(IDS, TITLES).search(["with"], k=2).items[0, 0] == 105


def test_bm25_remove_and_add() -> None:
    bm25 = BM25Retriever().fit(IDS, TITLES)
    assert bm25.remove([101, 999]) == 1 and len(bm25) == 5
    res = bm25.search(["stainless steel electric kettle"], k=6)
    assert 101 not in res.items[0]
    assert bm25.add([107, 102], ["Stainless Electric Kettle Deluxe", "Hammer Drill 20V"]) == 2
    assert len(bm25) == 6
    res = bm25.search(["stainless electric kettle deluxe", "cordless brushless"], k=3)
    assert res.items[0, 0] == 107 and 101 not in res.items[0]
    assert 102 not in res.items[1]  # 102's text was replaced: no "cordless brushless" any more
    with pytest.raises(ValueError):
        BM25Retriever().fit([1, 1], ["a", "b"])


def test_dense_returns_the_nearest_item() -> None:
    emb = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5], [1.0, 1.0, 0.0]])
    dense = DenseRetriever(DenseConfig(threads=1)).fit([7, 8, 9, 10], emb)
    q = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 3.0], [1.0, 1.2, 0.0]])
    res = dense.search(q, k=5)
    # Cosine: q0 is nearest to 7 (0.994), then 10 (0.78); q1 is exactly 9; q2 to 10 (0.996) then 8 (0.768).
    assert res.items[:, 0].tolist() == [7, 9, 10]
    assert res.items[0, 1] == 10 and res.items[2, 1] == 8
    assert res.scores[1, 0] == pytest.approx(1.0, abs=1e-6)
    assert (res.items[:, 4] == -1).all() and np.isneginf(res.scores[:, 4]).all()  # only 4 items exist
    # Without normalisation the longest vector wins the inner product for q2: 8 scores 2.4 > 10's 2.2.
    raw = DenseRetriever(DenseConfig(normalize=False, threads=1)).fit([7, 8, 9, 10], emb)
    assert raw.search(q[2], k=1).items[0, 0] == 8
    with pytest.raises(ValueError):
        dense.search(np.ones((1, 4)), k=1)


def test_dense_remove_and_add() -> None:
    dense = DenseRetriever(DenseConfig(threads=1)).fit([7, 8], np.eye(2))
    assert dense.remove([7, 99]) == 1 and len(dense) == 1
    assert dense.search([[1.0, 0.0]], k=2).items[0].tolist() == [8, -1]
    dense.add([11], [[1.0, 0.1]])
    dense.add([8], [[0.9, 0.0]])  # an existing id is replaced, not duplicated
    assert len(dense) == 2
    res = dense.search([[1.0, 0.0]], k=2)
    assert res.items[0].tolist() == [8, 11]


def test_baselines_feed_items_at_n() -> None:
    bm25 = BM25Retriever().fit(IDS, TITLES)
    queries = ["electric kettle", "hammer", "kettle"]
    targets = [[105], [104], [106]]  # the last target is unreachable by words
    res = bm25.search(queries, k=2)
    # 105 is in the top 2 for "electric kettle" (with 101); 104 first for "hammer"; 106 never.
    m = evaluate_ranked_items(res.items, targets, n_items=(1, 2))
    assert m.items[2] == pytest.approx(2 / 3)
    # Both kettles match 2 terms; the shorter title wins BM25's length norm (105: 4 tokens, 101: 6).
    assert res.items[0, 0] == 105
    assert m.items[1] == pytest.approx(2 / 3)
