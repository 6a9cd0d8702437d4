from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrecall.rl.reward import (
    QualityRanker,
    RankerReward,
    RequestSids,
    RewardConfig,
    request_sids,
    requests_sids,
    rewards,
)
from genrecall.sid.trie import SidTrie

A, B, C, D, E = (0, 0, 0, 0), (0, 1, 0, 0), (1, 0, 0, 0), (1, 1, 0, 0), (2, 0, 0, 0)
LOOKUP = {10: A, 11: A, 20: B, 30: C, 40: D}  # items 10 and 11 share a cluster; item 99 has no SID
TRIE = SidTrie.from_sids([A, B, C, D])  # E is not in the index


def _req() -> RequestSids:
    # purchased {10} ⊆ clicked {10, 20} ⊆ exposed {10, 20, 30, 99}
    return request_sids(purchased=[10], clicked=[10, 20], exposed=[10, 20, 30, 99], lookup=LOOKUP)


def test_request_sids_maps_items_to_their_clusters_and_skips_unknown_items() -> None:
    req = _req()
    assert req.purchased == {A} and req.clicked == {A, B} and req.exposed == {A, B, C}
    # a click on item 11 is a click on item 10's cluster
    assert request_sids([], [11], [11], LOOKUP).clicked == {A}


def test_reward_tiers_on_hand_cases() -> None:
    r = rewards(np.array([A, B, C, D, E]), _req(), valid=TRIE.__contains__)
    # purchased, clicked, exposed, valid but not shown, not a SID of the index
    assert r.tolist() == [1.0, 1.0, 0.5, 0.1, 0.0]
    no_check = rewards(np.array([E]), _req())  # without a validity check every SID counts as valid
    assert no_check.tolist() == [0.1]


def test_first_match_wins_with_custom_weights() -> None:
    cfg = RewardConfig(purchase=3.0, click=2.0, exposure=0.7, valid=0.2, invalid=-1.0)
    r = rewards(np.array([A, B, C, D, E]), _req(), cfg, valid=TRIE.__contains__)
    # A is purchased, clicked and exposed: only the first tier (purchase) counts
    assert r.tolist() == [3.0, 2.0, 0.7, 0.2, -1.0]


def test_requests_sids_reads_a_requests_table_in_row_order() -> None:
    table = pd.DataFrame(
        {"request_id": [1, 2], "purchased": [[], None], "clicked": [[20], []], "exposed": [[20, 30], [40]]}
    )
    out = requests_sids(table, LOOKUP)
    assert out[0] == RequestSids(frozenset(), frozenset({B}), frozenset({B, C}))
    assert out[1] == RequestSids(frozenset(), frozenset(), frozenset({D}))


def test_expert_pool_weights_are_the_reward_tiers() -> None:
    pool, w = _req().expert_pool()
    assert pool == [A, B, C] and w.tolist() == [1.0, 1.0, 0.5]


def test_ranker_score_is_off_by_default_and_adds_when_weighted() -> None:
    quality = pd.Series({10: 0.2, 11: 0.4, 20: 0.1, 30: 0.0, 40: 0.8})
    items_of = {A: np.array([10, 11]), B: np.array([20]), C: np.array([30]), D: np.array([40])}
    ranker = QualityRanker(lambda sid: items_of.get(tuple(sid), np.empty(0, np.int64)), quality)
    assert isinstance(ranker, RankerReward)
    # best item quality in the cluster / best quality overall
    assert ranker(7, np.array([A, B, D])) == pytest.approx([0.5, 0.125, 1.0])
    sids = np.array([A, D])
    assert rewards(sids, _req(), ranker=ranker).tolist() == [1.0, 0.1]  # ranker_weight 0: the paper's reward
    on = rewards(sids, _req(), RewardConfig(ranker_weight=0.5), ranker=ranker)
    assert on == pytest.approx([1.0 + 0.25, 0.1 + 0.5])


def test_a_custom_ranker_plugs_in_and_is_clipped_to_unit_range() -> None:
    class Mine:
        def __call__(self, request_id: int, sids: np.ndarray) -> np.ndarray:
            return np.full(len(sids), 5.0 if request_id == 1 else -5.0)

    cfg = RewardConfig(ranker_weight=1.0)
    assert rewards(np.array([D]), _req(), cfg, ranker=Mine(), request_id=1).tolist() == [1.1]
    assert rewards(np.array([D]), _req(), cfg, ranker=Mine(), request_id=2).tolist() == [0.1]
