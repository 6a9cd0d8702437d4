from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecall.gen.beam import beam_search
from genrecall.gen.examples import encode_user_query
from genrecall.gen.model import build_model
from genrecall.rl.group import build_groups, draw_experts, group_advantages, sample_sids
from genrecall.rl.grpo import member_log_probs
from genrecall.rl.reward import RequestSids
from genrecall.sid.trie import SidTrie
from tests.test_gen_examples import tiny_tables, tiny_tokenizer
from tests.test_gen_sft import TINY  # the same tiny generator the SFT tests train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    t = tiny_tables()
    tok = tiny_tokenizer(t)
    model = build_model(TINY, len(tok), tokenizer=tok).eval()
    trie = SidTrie.from_sids(np.array(t.sids["codes"].tolist()))
    prompts = [encode_user_query(tok, q, None) for q in t.requests["query"][:4]]
    prompts[1] = prompts[1] + prompts[1][1:4]  # uneven lengths exercise the left padding
    return tok, model, trie, prompts


def test_all_equal_group_has_zero_advantages_and_injection_makes_them_non_zero() -> None:
    r = np.full((2, 8), 0.1)
    adv = group_advantages(r)
    assert np.all(adv.values == 0.0) and adv.zero_variance.all()
    injected = np.concatenate([r, [[1.0, 0.5], [0.5, 0.5]]], axis=1)
    adv = group_advantages(injected)
    assert not adv.zero_variance.any() and np.all(adv.values != 0.0)
    assert np.allclose(adv.values.mean(axis=1), 0.0) and np.allclose(adv.values.std(axis=1), 1.0, atol=1e-3)
    assert (adv.values[:, 8:] > 0).all() and (adv.values[:, :8] < 0).all()


def test_inactive_members_are_left_out_of_the_statistics() -> None:
    r = np.array([[0.1, 0.1, 1.0, 1.0]])
    adv = group_advantages(r, np.array([[True, True, False, False]]))
    assert adv.zero_variance.all() and np.all(adv.values == 0.0)


def test_sampling_is_constrained_to_the_trie_and_seeded(setup) -> None:
    tok, model, trie, prompts = setup
    a = sample_sids(model, tok, trie, prompts, 16, generator=torch.Generator().manual_seed(3))
    b = sample_sids(model, tok, trie, prompts, 16, generator=torch.Generator().manual_seed(3))
    assert a.shape == (4, 16, tok.sid_depth) and np.array_equal(a, b)
    assert all(tuple(s) in trie for s in a.reshape(-1, tok.sid_depth).tolist())
    assert len({tuple(s) for s in a[0].tolist()}) > 1  # an untrained model spreads its mass
    cold = sample_sids(model, tok, trie, prompts, 8, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    best = beam_search(model, tok, trie, prompts, 1)
    for i in range(4):  # near-zero temperature = greedy decoding = the top beam here
        assert all(tuple(s) == tuple(best[i].sids[0]) for s in cold[i].tolist())


def test_member_log_probs_equal_the_beam_search_scores(setup) -> None:
    tok, model, trie, prompts = setup
    res = beam_search(model, tok, trie, prompts, 3)
    sids = np.concatenate([r.sids for r in res])
    rows = np.repeat(np.arange(len(prompts)), [len(r) for r in res])
    with torch.no_grad():
        lp = member_log_probs(model, tok, prompts, sids, rows)
    assert lp.shape == (len(sids), tok.sid_depth)
    assert lp.sum(-1).numpy() == pytest.approx(np.concatenate([r.scores for r in res]), abs=1e-4)


def test_k0_is_plain_grpo_and_beams_are_distinct(setup) -> None:
    tok, model, trie, prompts = setup
    reqs = [RequestSids(exposed=frozenset({(0, 0, 0, 0)}))] * len(prompts)
    g = build_groups(model, tok, trie, prompts, reqs, group_size=6, experts=0, mode="beams")
    assert g.sids.shape == (4, 6, tok.sid_depth) and not g.is_expert.any() and g.active.all()
    for row in g.sids:
        assert len({tuple(s) for s in row.tolist()}) == 6


def test_injection_turns_a_zero_variance_group_into_a_learning_signal(setup) -> None:
    tok, model, trie, prompts = setup
    beams = beam_search(model, tok, trie, prompts, 4)
    # each request's engagement lies outside the policy's top 4 beams: every policy member earns 0.1
    reqs = []
    for r in beams:
        other = [s for s in trie.sids().tolist() if tuple(s) not in set(r.as_tuples())]
        reqs.append(RequestSids(clicked=frozenset({tuple(other[0])}), exposed=frozenset(tuple(s) for s in other[:3])))
    plain = build_groups(model, tok, trie, prompts, reqs, group_size=4, experts=0, mode="beams")
    assert plain.zero_variance.all() and np.all(plain.advantages == 0.0) and np.all(plain.rewards == 0.1)
    eg = build_groups(
        model, tok, trie, prompts, reqs, group_size=4, experts=2, mode="beams", rng=np.random.default_rng(0)
    )
    assert not eg.zero_variance.any() and np.all(eg.advantages[eg.active] != 0.0)
    assert eg.is_expert[:, 4:].all() and np.all(eg.rewards[:, 4:] >= 0.5) and np.all(eg.advantages[:, 4:] > 0)
    assert eg.stats()["zero_variance_share"] == 0.0 and plain.stats()["zero_variance_share"] == 1.0


def test_redraw_never_injects_an_expert_the_policy_already_sampled() -> None:
    pool = [(i, 0, 0, 0) for i in range(5)]
    req = RequestSids(clicked=frozenset(pool[:2]), exposed=frozenset(pool))
    taken = {pool[0], pool[3]}
    for seed in range(20):
        ex = draw_experts(req, taken, 3, np.random.default_rng(seed))
        assert len(set(ex.sids)) == 3 and not set(ex.sids) & taken and not any(ex.duplicate)


def test_an_exhausted_pool_gives_flagged_inactive_duplicates(setup) -> None:
    pool = [(0, 0, 0, 0), (1, 0, 0, 0)]
    req = RequestSids(clicked=frozenset(pool[:1]), exposed=frozenset(pool))
    ex = draw_experts(req, {pool[0]}, 2, np.random.default_rng(0))
    assert ex.sids == [pool[1], pool[0]] and ex.duplicate == [False, True]
    assert draw_experts(RequestSids(), set(), 2, np.random.default_rng(0)).sids == []  # nothing to inject

    tok, model, trie, prompts = setup
    top = beam_search(model, tok, trie, prompts[:1], 2)[0].as_tuples()
    req = RequestSids(clicked=frozenset(top[:1]), exposed=frozenset(top))  # the policy already holds the pool
    g = build_groups(model, tok, trie, prompts[:1], [req], group_size=2, experts=2, mode="beams")
    assert g.duplicate[0].tolist() == [False, False, True, True] and g.active[0].tolist() == [True, True, False, False]
    assert g.advantages[0, 2:].tolist() == [0.0, 0.0]
    kept = build_groups(model, tok, trie, prompts[:1], [req], group_size=2, experts=2, mode="beams", duplicates="keep")
    assert kept.duplicate[0, 2:].all() and kept.active[0].all()  # "keep": counted twice, but flagged
