from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecall.gen.beam import beam_search, reference_beam_search
from genrecall.sid.trie import SidTrie
from tests.gen_fixtures import peaked_generator

torch.set_num_threads(1)
SIZES = (7, 5, 4, 3)


@pytest.fixture(scope="module")
def setup():
    tok, model = peaked_generator(SIZES)
    rng = np.random.default_rng(0)
    sids = np.stack([rng.integers(0, s, 50) for s in SIZES], axis=1)
    trie = SidTrie.from_sids(sids)
    prompts = [
        tok.encode_prompt("red kettle"),
        tok.encode_prompt("blue cotton shirt with a much longer query than the others"),
        tok.encode_prompt("mug", profile={"gender": "f"}, history=[tuple(sids[0]), tuple(sids[1])]),
        [tok.bos_id, tok.sid_id],  # shortest possible prompt
    ]
    return tok, model, trie, prompts


@pytest.mark.parametrize("beam", [1, 3, 12])
def test_matches_reference_and_is_valid(setup, beam: int) -> None:
    tok, model, trie, prompts = setup
    fast = beam_search(model, tok, trie, prompts, beam)
    slow = reference_beam_search(model, tok, trie, prompts, beam)
    assert len(fast) == len(slow) == len(prompts)
    for f, s in zip(fast, slow):
        assert len(f) == beam
        np.testing.assert_array_equal(f.sids, s.sids)
        np.testing.assert_allclose(f.scores, s.scores, atol=1e-4)
        assert all(sid in trie for sid in f.as_tuples())
        assert len(set(f.as_tuples())) == beam  # no duplicate beams
        assert np.all(np.diff(f.scores) <= 1e-6)  # best first
        assert np.all(f.scores <= 0)


def test_beam_larger_than_trie_returns_every_valid_sid(setup) -> None:
    tok, model, trie, prompts = setup
    beam = len(trie) + 40
    fast = beam_search(model, tok, trie, prompts, beam)
    slow = reference_beam_search(model, tok, trie, prompts, beam)
    everything = {tuple(s) for s in trie.sids().tolist()}
    for f, s in zip(fast, slow):
        assert set(f.as_tuples()) == everything
        np.testing.assert_array_equal(f.sids, s.sids)
        np.testing.assert_allclose(f.scores, s.scores, atol=1e-4)
        # the scores are a distribution restricted to the trie: they sum to at most 1
        assert np.exp(f.scores).sum() <= 1.0 + 1e-5


def test_scores_are_sequence_log_probs(setup) -> None:
    tok, model, trie, prompts = setup
    best = beam_search(model, tok, trie, prompts[:1], 2)[0]
    ids = torch.tensor([prompts[0] + tok.encode_sid(best.as_tuples()[0])])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    n = len(prompts[0])
    manual = sum(float(logp[n - 1 + t, ids[0, n + t]]) for t in range(tok.sid_depth))
    assert best.scores[0] == pytest.approx(manual, abs=1e-4)


def test_batching_does_not_change_answers(setup) -> None:
    tok, model, trie, prompts = setup
    together = beam_search(model, tok, trie, prompts, 8, batch_size=4)
    one_by_one = [beam_search(model, tok, trie, [p], 8)[0] for p in prompts]
    for a, b in zip(together, one_by_one):
        np.testing.assert_array_equal(a.sids, b.sids)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_sparse_trie_and_empty_trie(setup) -> None:
    tok, model, _, prompts = setup
    few = SidTrie.from_sids(np.array([[0, 0, 0, 0], [0, 0, 0, 1], [6, 4, 3, 2]]))
    res = beam_search(model, tok, few, prompts, 5)
    for r in res:
        assert sorted(r.as_tuples()) == [(0, 0, 0, 0), (0, 0, 0, 1), (6, 4, 3, 2)]
    empty = beam_search(model, tok, SidTrie(depth=4), prompts[:2], 5)
    assert all(len(r) == 0 and r.sids.shape == (0, 4) for r in empty)
    with pytest.raises(ValueError):
        beam_search(model, tok, SidTrie(depth=3), prompts, 5)


def _walk(tables, prefix: tuple[int, ...]) -> int:
    node = 0
    for t, c in enumerate(prefix):
        node = int(tables.child[t][node, c]) if node >= 0 and c < tables.sizes[t] else -1
    return node


def test_trie_tables_agree_with_next_codes_and_follow_edits() -> None:
    rng = np.random.default_rng(1)
    sids = np.stack([rng.integers(0, 9, 300), rng.integers(0, 6, 300), rng.integers(0, 5, 300)], axis=1)
    trie = SidTrie.from_sids(sids)
    sizes = (7, 6, 4)  # narrower than some codes: those children must be absent, as next_codes filtered by size
    tables = trie.tables(sizes)
    assert [t.shape[1] for t in tables.child] == list(sizes)
    for prefix in [(), *trie.prefixes()]:
        node = _walk(tables, prefix)
        if node < 0:  # unreachable for this vocabulary: some code of the prefix is out of range
            assert any(c >= sizes[i] for i, c in enumerate(prefix))
            continue
        want = trie.next_codes(prefix)
        got = np.flatnonzero(tables.allowed(len(prefix), np.array([node]))[0])
        np.testing.assert_array_equal(got, want[want < sizes[len(prefix)]])
    assert not tables.allowed(0, np.array([-1])).any()  # a dead beam allows nothing
    trie.remove([tuple(sids[0])])
    assert trie.tables(sizes) is not tables  # edits rebuild the tables
    assert _walk(trie.tables(sizes), tuple(sids[0])) == -1 or tuple(sids[0]) in trie


def test_matches_reference_when_the_trie_holds_codes_the_model_cannot_emit(setup) -> None:
    tok, model, _, prompts = setup
    # codes 9 / 6 / 5 / 9 lie outside the tokenizer's codebooks (7, 5, 4, 3): prefixes (2, 0) and (2, 1, 0)
    # are valid but lead only there, so a beam entering them dies in both searches alike
    trie = SidTrie.from_sids(
        np.array(
            [
                [9, 0, 0, 0],
                [1, 6, 0, 0],
                [1, 2, 3, 2],
                [1, 2, 0, 0],
                [6, 4, 3, 2],
                [2, 0, 5, 0],
                [2, 1, 0, 9],
                [0, 0, 0, 0],
            ]
        )
    )
    for beam in (1, 2, 3, 8):
        fast = beam_search(model, tok, trie, prompts, beam)
        slow = reference_beam_search(model, tok, trie, prompts, beam)
        for f, s in zip(fast, slow):
            np.testing.assert_array_equal(f.sids, s.sids)
            np.testing.assert_allclose(f.scores, s.scores, atol=1e-4)
