"""SID health numbers on hand-made SIDs, and the cluster-size plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genrecall.sid.health import category_match, plot_cluster_sizes, sid_health


def test_health_numbers_by_hand() -> None:
    sids = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 1]])
    h = sid_health(sids, [4, 2], categories=np.array([10, 10, 10, 20, np.nan]), category_ids=np.array([10, 20, 30, 40]))
    assert h.items == 5 and h.sids == 4 and h.clusters == 3
    assert h.utilisation == [0.5, 1.0] and h.dead_codes == [2, 0]
    assert h.entropy[1] < 1.0 and 0 < h.entropy[0] <= 1.0
    assert h.items_per_sid["max"] == 2 and h.items_per_cluster["max"] == 2
    assert h.collision_rate == 2 / 5  # the two items on (0, 0, 0)
    assert h.prefix_collision_rate == 4 / 5  # (0,0) x2 and (1,1) x2
    assert h.category_match == 1.0  # every known item's level 1 is its category's code
    assert h.max_suffix == 1
    json.dumps(h.to_dict())  # JSON-serialisable


def test_category_match_without_mapping_is_purity() -> None:
    level1 = np.array([3, 3, 5, 7, 7, 7])
    cats = np.array([1, 1, 1, 2, 2, np.nan])
    assert category_match(level1, cats) == 4 / 5
    assert category_match(level1, np.full(6, np.nan)) is None


def test_uniform_codes_have_full_entropy() -> None:
    sids = np.stack([np.arange(64) % 8, np.arange(64) // 8, np.zeros(64, int)], axis=1)
    h = sid_health(sids, [8, 8])
    assert np.allclose(h.entropy, 1.0) and h.utilisation == [1.0, 1.0] and h.collision_rate == 0.0


def test_plot_writes_png(tmp_path: Path) -> None:
    path = plot_cluster_sizes(
        {"cq_sid": np.array([1, 5, 50, 3]), "rq_vae": np.ones(10, int)}, tmp_path / "p" / "sizes.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
