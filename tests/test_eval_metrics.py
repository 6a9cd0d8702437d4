"""Metrics against hand-computed cases, a plain-loop reference on random data, and the report files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genrecall.eval.metrics import (
    NOT_FOUND,
    GeneratorRun,
    beams_to_target,
    evaluate_generator,
    evaluate_ranked_items,
    first_ranks,
    personalized_metrics,
)
from genrecall.eval.report import (
    build_metrics,
    check_metrics,
    metrics_block,
    plot_hitrate,
    print_summary,
    read_metrics,
    write_curves,
    write_metrics,
)

A, B, C, D = (0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0)
INDEX = {A: [1, 2, 3], B: [4, 5], C: [6], D: [7, 8, 9, 10]}


class FakeSidIndex:
    """Stands in for genrecall's SidIndex interface: ``items(sid)`` raises KeyError when unknown."""

    def __init__(self, mapping: dict) -> None:
        self.mapping = mapping

    def items(self, sid: tuple) -> np.ndarray:
        return np.asarray(self.mapping[sid], dtype=np.int64)


def test_hitrate_at_b_counts_pairs_in_clusters() -> None:
    run = GeneratorRun.from_sids([[A, B, C], [D, A], [C]])
    targets = [[5, 6], [3], [99]]
    # Pairs: (0,5) in B at rank 1, (0,6) in C at rank 2, (1,3) in A at rank 1, (2,99) nowhere.
    # hitrate@1 = 0/4, @2 = {(0,5),(1,3)} = 2/4, @3 = 3/4.
    m = evaluate_generator(run, INDEX, targets, quality={}, beams=(1, 2, 3), n_items=(100,), truncate_n=100)
    np.testing.assert_allclose(m.hitrate, [0.0, 0.5, 0.75])
    assert m.n_pairs == 4 and m.n_requests == 3
    # No truncation bites at N=100, so the truncated curve equals the plain one.
    np.testing.assert_allclose(m.truncated_curve(), [0.0, 0.5, 0.75])
    # Distinct items behind top-B: B=1: 3 + 4 + 1 = 8 -> 8/3; B=2: 5 + 7 + 1 = 13 -> 13/3; B=3: 6 + 7 + 1.
    np.testing.assert_allclose(m.mean_items, [8 / 3, 13 / 3, 14 / 3])
    pairs = first_ranks(run, INDEX, targets)
    assert pairs.item.tolist() == [5, 6, 3, 99] and pairs.request.tolist() == [0, 0, 1, 2]
    assert pairs.rank.tolist() == [1, 2, 1, NOT_FOUND]
    assert first_ranks(run, INDEX, targets, max_beams=1).rank.tolist() == [NOT_FOUND] * 4


def test_sid_lookup_forms_agree() -> None:
    str_keys = {"-".join(map(str, k)): v for k, v in INDEX.items()}
    targets = [[5, 6], [3], [99]]
    per_request = [[A, B, C], ["1-1-0", "0-0-0"], [C]]
    results = []
    for index in (INDEX, str_keys, FakeSidIndex(INDEX), lambda sid: INDEX.get(sid)):
        m = evaluate_generator(
            GeneratorRun.from_sids(per_request),
            index,
            targets,
            {},
            beams=(1, 2, 3),
            n_items=(100,),
            truncate_n=100,
            progress=False,
        )
        results.append(m.hitrate)
    for r in results:
        np.testing.assert_allclose(r, [0.0, 0.5, 0.75])
    # (n, B, depth) arrays with -1 padding give the same run.
    arr = np.full((3, 3, 3), -1)
    arr[0] = [A, B, C]
    arr[1, :2] = [D, A]
    arr[2, :1] = [C]
    padded = GeneratorRun.from_array(arr)
    assert [len(s) for s in padded.sids] == [3, 2, 1] and padded.max_beams == 3


def test_works_with_the_real_sid_index() -> None:
    from genrecall.sid.index import SidIndex

    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    codes = np.array([A, A, A, B, B, C, D, D, D, D])
    index = SidIndex.build(items, codes, suffix_mode="dedup")
    m = evaluate_generator(
        GeneratorRun.from_sids([[A, B, C], [D, A], [C]]),
        index,
        [[5, 6], [3], [99]],
        {},
        beams=(1, 2, 3),
        n_items=(100,),
        truncate_n=100,
    )
    np.testing.assert_allclose(m.hitrate, [0.0, 0.5, 0.75])  # the same numbers as the dict above


def test_truncated_hitrate_big_cluster_pushes_target_past_n() -> None:
    big, small = (0, 0, 0), (0, 1, 0)
    index = {big: list(range(100, 110)), small: [5]}
    quality = {i: 10.0 + (i - 100) for i in range(100, 110)} | {5: 1.0}  # big-cluster items are popular
    targets = [[5]]
    # SIDs [big, small], N=5: B=1 -> 5 not in {100..109}: miss. B=2 -> union of 11 items ordered by
    # quality puts 5 at place 11 > 5: miss, although plain hitrate@2 = 1.
    m = evaluate_generator(
        GeneratorRun.from_sids([[big, small]]), index, targets, quality, beams=(1, 2), n_items=(5, 20), truncate_n=5
    )
    np.testing.assert_allclose(m.hitrate, [0.0, 1.0])
    np.testing.assert_allclose(m.truncated[5], [0.0, 0.0])
    np.testing.assert_allclose(m.truncated[20], [0.0, 1.0])  # with 20 slots place 11 fits
    # SIDs [small, big]: B=1 -> list [5]: hit. B=2 -> place 11 again: miss. The curve falls with B.
    m2 = evaluate_generator(
        GeneratorRun.from_sids([[small, big]]), index, targets, quality, beams=(1, 2), n_items=(5, 20), truncate_n=5
    )
    np.testing.assert_allclose(m2.truncated[5], [1.0, 0.0])
    # items@N is read at the best beam of the sweep by default, or at a fixed beam when asked.
    assert m2.items == {5: 1.0, 20: 1.0} and m2.items_beam == {5: 1, 20: 1}
    fixed = evaluate_generator(
        GeneratorRun.from_sids([[small, big]]),
        index,
        targets,
        quality,
        beams=(1, 2),
        n_items=(5, 20),
        truncate_n=5,
        items_beam=2,
    )
    assert fixed.items == {5: 0.0, 20: 1.0}
    with pytest.raises(ValueError):
        evaluate_generator(GeneratorRun.from_sids([[small]]), index, targets, quality, beams=(1, 2), items_beam=3)


def test_truncation_ties_break_by_sid_rank_then_item_id() -> None:
    x, y = (2, 0, 0), (2, 1, 0)
    index = {x: [30, 20], y: [10]}
    run = GeneratorRun.from_sids([[x, y]] * 3)
    # All quality equal (unknown items score 0): order = 20, 30 (rank 0, by id), then 10 (rank 1).
    # Targets per request: 20 (place 1), 30 (place 2), 10 (place 3). Ordering by id alone would put
    # 10 first, and ordering by rank with ties in list order would put 30 first: both change these.
    m = evaluate_generator(
        run, index, [[20], [30], [10]], quality=np.zeros(0), beams=(2,), n_items=(1, 2, 3), truncate_n=3
    )
    assert m.truncated[1][0] == pytest.approx(1 / 3)
    assert m.truncated[2][0] == pytest.approx(2 / 3)
    assert m.truncated[3][0] == pytest.approx(1.0)
    two = evaluate_generator(
        GeneratorRun.from_sids([[x, y]] * 2), index, [[20], [30]], quality={}, beams=(2,), n_items=(1, 2), truncate_n=2
    )
    assert two.truncated[1][0] == pytest.approx(1 / 2)  # only 20 is at place 1
    assert two.truncated[2][0] == pytest.approx(1.0)  # 20 and 30 fill places 1-2, 10 is third


def test_quality_forms_agree() -> None:
    index = {(0, 0): [0, 1, 2, 3], (0, 1): [4, 5]}
    run = GeneratorRun.from_sids([[(0, 0), (0, 1)]] * 2)
    targets = [[4], [1]]
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.8, 0.2])
    # Ordered union: 1 (.9), 4 (.8), 2 (.5), 3 (.3), 5 (.2), 0 (.1) -> item 4 at place 2, item 1 at place 1.
    forms = (scores, dict(enumerate(scores)), pd.Series(scores, index=np.arange(6)))
    for q in forms:
        m = evaluate_generator(run, index, targets, q, beams=(2,), n_items=(1, 2), truncate_n=2)
        assert m.truncated[1][0] == pytest.approx(0.5) and m.truncated[2][0] == pytest.approx(1.0)


def test_beams_to_target_reached_and_not_reached() -> None:
    beams = (1, 2, 5, 10)
    baseline = [0.1, 0.3, 0.5, 0.4]  # best 0.5 anywhere -> target 0.9 x 0.5 = 0.45
    target = 0.9 * max(baseline)
    assert beams_to_target(baseline, target, beams=beams) == 5
    assert beams_to_target([0.2, 0.46, 0.3, 0.1], target, beams=beams) == 2  # reached early, then drops
    assert beams_to_target([0.1, 0.2, 0.3, 0.44], target, beams=beams) is None
    assert beams_to_target([0.0, 0.0, 0.45, 0.0], target, beams=beams) == 5  # equality counts
    with pytest.raises(ValueError):
        beams_to_target([0.1, 0.2], target, beams=beams)


def test_personalized_clk_exp_pvr() -> None:
    run = GeneratorRun.from_sids([[A, B, C], [D], [A]])
    clicked = [[2], [8, 1], []]
    exposed = [[2, 5, 7, 8], [8, 9, 10], []]
    # clk pairs: (0,2) rank 0, (1,8) rank 0, (1,1) none -> clk@1 = clk@10 = 2/3.
    # exp pairs: r0: 2 r0, 5 r1, 7 -, 8 -; r1: 8 r0, 9 r0, 10 r0 -> exp@1 = 4/7, exp@10 = 5/7.
    # pvr@10: r0 covers {2, 5} of 4 = 0.5, r1 covers 3 of 3 = 1.0, r2 has no exposures -> 0.75.
    p = personalized_metrics(run, INDEX, clicked, exposed, ks=(1, 10), pvr_k=10)
    assert p.clk == pytest.approx({1: 2 / 3, 10: 2 / 3})
    assert p.exp == pytest.approx({1: 4 / 7, 10: 5 / 7})
    assert p.pvr == pytest.approx(0.75)
    # pvr@1: r0 covers {2} of 4 = 0.25, r1 3 of 3 -> 0.625.
    assert personalized_metrics(run, INDEX, clicked, exposed, pvr_k=1).pvr == pytest.approx(0.625)
    assert set(p.to_dict()) == {"clk@1", "clk@10", "exp@1", "exp@10", "pvr@10"}


def test_items_at_n_for_ranked_lists() -> None:
    ranked = np.array([[4, 1, -1], [6, 5, 1]])
    targets = [[4], [6, 1], []]
    with pytest.raises(ValueError):
        evaluate_ranked_items(ranked, targets)  # 2 lists for 3 requests
    targets = [[4], [6, 1]]
    # Places: 4 -> 0; 6 -> 0, 1 -> 2. items@1 = 2/3, items@2 = 2/3, items@3 = 1.
    m = evaluate_ranked_items(ranked, targets, n_items=(1, 2, 3))
    assert m.items == pytest.approx({1: 2 / 3, 2: 2 / 3, 3: 1.0})
    assert m.depth == 3 and m.n_pairs == 3
    # Ragged lists; a repeated item counts at its first place.
    m2 = evaluate_ranked_items([[7, 7, 4], [1]], [[4], [1, 9]], n_items=(1, 3))
    assert m2.items == pytest.approx({1: 1 / 3, 3: 2 / 3})


def _reference(run, index, targets, quality, beams, n):
    """Plain loops straight from the definitions."""
    hit, thit, pairs = np.zeros(len(beams)), np.zeros(len(beams)), 0
    for sids, tgt in zip(run.sids, targets):
        for t in set(tgt):
            pairs += 1
            for j, b in enumerate(beams):
                first_rank: dict[int, int] = {}
                for r, sid in enumerate(sids[:b]):
                    for item in index.get(tuple(int(c) for c in sid), []):
                        first_rank.setdefault(int(item), r)
                if t in first_rank:
                    hit[j] += 1
                    ordered = sorted(first_rank, key=lambda i: (-quality.get(i, 0.0), first_rank[i], i))
                    thit[j] += t in ordered[:n]
    return hit / pairs, thit / pairs


def test_fast_path_matches_plain_loop_on_random_data() -> None:
    rng = np.random.default_rng(7)
    n_items, n_sids = 400, 60
    sids = [(int(a), int(b), 0) for a, b in zip(rng.integers(0, 8, n_sids), rng.integers(0, 50, n_sids))]
    sids = list(dict.fromkeys(sids))
    owner = rng.integers(0, len(sids), n_items)
    index = {sid: [i for i in range(n_items) if owner[i] == k] for k, sid in enumerate(sids)}
    index[(9, 9, 9)] = []  # an empty cluster
    quality = {i: float(rng.integers(0, 5)) for i in range(n_items) if rng.random() < 0.8}  # ties + unknowns
    per_request, targets = [], []
    for _ in range(53):
        k = int(rng.integers(0, 25))
        per_request.append([sids[i] for i in rng.choice(len(sids), size=k, replace=False)])
        targets.append(rng.integers(0, n_items, int(rng.integers(0, 4))).tolist())
    run = GeneratorRun.from_sids(per_request)
    beams, ns = (1, 2, 5, 10, 20), tuple(range(1, 40, 3))  # many N: ties at the cut are tested often
    m = evaluate_generator(
        run, index, targets, quality, beams=beams, n_items=ns, truncate_n=ns[-1], chunk_requests=7, progress=False
    )
    for n in ns:
        ref_hit, ref_trunc = _reference(run, index, targets, quality, beams, n)
        np.testing.assert_allclose(m.hitrate, ref_hit)
        np.testing.assert_allclose(m.truncated[n], ref_trunc, err_msg=f"N={n}")
    assert m.truncated[ns[0]].max() < m.hitrate.max()  # truncation actually bit somewhere
    top5 = first_ranks(run, index, targets, max_beams=5, chunk_requests=5)
    assert (top5.rank < 5).mean() == pytest.approx(m.hitrate[beams.index(5)])
    # Chunking must not change anything.
    whole = evaluate_generator(
        run, index, targets, quality, beams=beams, n_items=ns, truncate_n=ns[-1], chunk_requests=10_000, progress=False
    )
    for n in ns:
        np.testing.assert_allclose(whole.truncated[n], m.truncated[n])


def test_report_round_trip_plot_and_summary(tmp_path) -> None:
    index = {(0,): [1], (1,): [2], (2,): list(range(10, 40))}
    run_good = GeneratorRun.from_sids([[(0,), (2,)], [(1,), (2,)]])
    run_base = GeneratorRun.from_sids([[(2,), (0,)], [(2,), (1,)]])
    targets = [[1], [2]]
    quality = dict.fromkeys(range(10, 40), 1.0)
    kw = {"beams": (1, 2), "n_items": (100, 1000), "truncate_n": 1000}
    gens = {
        "cq_sid": evaluate_generator(run_good, index, targets, quality, **kw),
        "rq_vae": evaluate_generator(run_base, index, targets, quality, **kw),
    }
    rankers = {"bm25": evaluate_ranked_items(np.array([[1, 5], [3, 4]]), targets)}
    block, target = metrics_block(gens, rankers, report_beams=(1, 2))
    # rq_vae: B=1 covers nothing, B=2 covers both -> best 1.0, target 0.9; cq_sid hits at B=1.
    assert target == pytest.approx(0.9)
    assert block["cq_sid"]["beams_to_target"] == 1 and block["rq_vae"]["beams_to_target"] == 2
    assert block["bm25"] == {"items@100": 0.5, "items@1000": 0.5}
    metrics = build_metrics(
        semantic=block,
        sid_health={"cq_sid": {"utilisation": np.array([0.5, 0.25])}},
        data={"preset": "tiny", "items": 32, "requests": 2, "test_pairs": 2},
    )
    path = write_metrics(metrics, tmp_path / "reports" / "metrics.json")
    text = path.read_text()
    assert json.loads(text) == read_metrics(path)
    assert text.index('"data"') < text.index('"semantic"') < text.index('"sid_health"')  # sorted keys
    assert read_metrics(path)["sid_health"]["cq_sid"]["utilisation"] == [0.5, 0.25]
    with pytest.raises(ValueError):
        check_metrics({"semantic": {"x": {"hitrate@1": 1.5}}})
    png = plot_hitrate(gens, rankers, tmp_path / "plot.png", target=target)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = write_curves({"semantic": gens}, tmp_path / "curves.csv")
    assert len(curves.read_text().splitlines()) == 1 + 2 * 2
    from rich.console import Console

    console = Console(record=True, width=200)
    print_summary(metrics, console=console)
    out = console.export_text()
    assert "cq_sid" in out and "bm25" in out and "preset=tiny" in out
