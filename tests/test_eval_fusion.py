"""The fusion block (eval/fusion.py): unions, RRF through ranx, generator-only share."""

from __future__ import annotations

import numpy as np
import pytest

from genrecall.eval.fusion import FusionConfig, fusion_metrics, generator_items, rrf


def test_fusion_counts_pairs_by_hand() -> None:
    a = lambda *x: np.array(x, dtype=np.int64)  # noqa: E731
    gen = [a(1, 2, 3, 4), a(9, 8)]
    bm25 = [a(5, 6, 1, 7), a()]
    dense = [a(6, 5, 7, 2), a(8)]
    targets = [[1, 2, 6], [8, 10]]
    m = fusion_metrics(gen, bm25, dense, targets, FusionConfig(n=4))
    # request 0: gen@4 {1,2}, bm25@4 {1,6}, dense@4 {2,6}; halves: gen {1,2}, bm25 {5,6}, dense {6,5}
    # request 1: gen@4 {8}, bm25 {}, dense {8}; halves: gen {8}
    assert m["generator@4"] == pytest.approx(3 / 5) and m["bm25@4"] == pytest.approx(2 / 5)
    assert m["dense@4"] == pytest.approx(3 / 5)
    assert m["union_bm25@4"] == pytest.approx(4 / 5)  # {1,2,6} + {8}
    assert m["union_dense@4"] == pytest.approx(4 / 5)
    assert m["generator_only@4"] == 0.0  # 1 (bm25), 2 (dense), 8 (dense)
    assert 0.0 <= m["rrf@4"] <= 1.0
    # without the generator: halves bm25 {5,6} ∪ dense {6,5} = {6}, and {8} -> 2 of 5
    assert m["union_bm25_dense@4"] == pytest.approx(2 / 5)
    # RRF of bm25 + dense, request 0: 6 (ranks 2+1), 5 (1+2), 7 (4+3), 1 (3) -> {6, 1}; request 1: {8}
    assert m["rrf_bm25_dense@4"] == pytest.approx(3 / 5)


def test_rrf_ranks_agreement_first_and_handles_empty_lists() -> None:
    a = lambda *x: np.array(x, dtype=np.int64)  # noqa: E731
    fused = rrf([[a(1, 2, 3)], [a(3, 1)], [a()]], n=3)
    assert fused[0].tolist() == [1, 3, 2]  # 1: ranks 1+2, 3: ranks 3+1, 2: rank 2 only
    assert rrf([[a()], [a()]], n=3)[0].tolist() == []


def test_generator_items_follow_the_truncation_rule() -> None:
    groups = {(0,): np.array([30, 10]), (1,): np.array([20, 10])}
    items = generator_items([np.array([[0], [1]])], groups.__getitem__, {20: 5.0}, beam=2, n=3)
    assert items[0].tolist() == [20, 10, 30]  # quality first, then first SID rank, then item id
    assert generator_items([np.array([[0], [1]])], groups.__getitem__, None, beam=1, n=5)[0].tolist() == [10, 30]


def test_cluster_oracle_orders_clusters_by_their_best_item() -> None:
    from genrecall.eval.oracle import cluster_oracle

    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]], dtype=np.float32)
    ids = np.array([10, 11, 12, 13])
    sids = np.array([[0, 0], [1, 0], [1, 0], [2, 0]])  # clusters: {10}, {11, 12}, {13}
    got = cluster_oracle(np.array([[0.0, 1.0]], dtype=np.float32), items, ids, sids, n=3)[0]
    assert got.tolist() == [11, 12, 13]  # cluster {11,12} first (cos 1.0), then {13} (0.6), cut at 3
