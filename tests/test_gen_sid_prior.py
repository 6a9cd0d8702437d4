"""Decoding with the SID tokenizer's prior (gen/sid_prior.py): exact scores, and weight 0 is the generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecall.gen.beam import beam_search
from genrecall.gen.sid_prior import SidPrior, SidPriorConfig
from genrecall.sid.trie import SidTrie
from tests.gen_fixtures import peaked_generator

torch.set_num_threads(1)
SIZES = (7, 5, 4, 3)  # three codebook levels and a suffix
DIM = 6


@pytest.fixture(scope="module")
def setup():
    tok, model = peaked_generator(SIZES)
    rng = np.random.default_rng(0)
    trie = SidTrie.from_sids(np.stack([rng.integers(0, s, 60) for s in SIZES], axis=1))
    prompts = [
        tok.encode_prompt("red kettle"),
        tok.encode_prompt("blue cotton shirt with a longer query"),
        [tok.bos_id],
    ]
    books = [torch.from_numpy(rng.normal(size=(s, DIM)).astype(np.float32)) for s in SIZES[:-1]]
    latents = torch.from_numpy(rng.normal(size=(len(prompts), DIM)).astype(np.float32))
    return tok, model, trie, prompts, books, latents


def _log_prior(books: list[torch.Tensor], z: np.ndarray, sid: tuple[int, ...], cfg: SidPriorConfig) -> float:
    """The prior of one SID by hand: per codebook level, log softmax of -distance / temperature."""
    total, residual = 0.0, z.astype(np.float64)
    for level, book in enumerate(books):
        b = book.numpy().astype(np.float64)
        logits = -((residual[None] - b) ** 2).sum(-1) / cfg.temperature
        total += float(logits[sid[level]] - np.log(np.exp(logits - logits.max()).sum()) - logits.max())
        residual = residual - b[sid[level]]
    return cfg.weight * total


def test_weight_zero_is_the_generator_alone(setup) -> None:
    tok, model, trie, prompts, books, latents = setup
    prior = SidPrior(books, latents, SidPriorConfig(weight=0.0))
    plain = beam_search(model, tok, trie, prompts, 7)
    with_prior = beam_search(model, tok, trie, prompts, 7, prior=prior)
    for a, b in zip(plain, with_prior):
        np.testing.assert_array_equal(a.sids, b.sids)
        np.testing.assert_allclose(a.scores, b.scores)


def test_scores_are_generator_log_prob_plus_weighted_prior_exactly(setup) -> None:
    tok, model, trie, prompts, books, latents = setup
    cfg = SidPriorConfig(weight=1.5, temperature=2.0)
    everything = len(trie) + 10  # a beam wider than the trie keeps every SID: scores are exact, not pruned
    plain = beam_search(model, tok, trie, prompts, everything)
    fused = beam_search(model, tok, trie, prompts, everything, prior=SidPrior(books, latents, cfg), batch_size=2)
    for i, (p, f) in enumerate(zip(plain, fused)):
        generator = dict(zip(p.as_tuples(), p.scores))
        assert set(f.as_tuples()) == set(generator)
        expected = np.array([generator[s] + _log_prior(books, latents[i].numpy(), s, cfg) for s in f.as_tuples()])
        np.testing.assert_allclose(f.scores, expected, atol=1e-4)
        assert np.all(np.diff(f.scores) <= 1e-6)  # best first under the fused score


def test_a_strong_prior_moves_the_best_sid_toward_the_latent(setup) -> None:
    tok, model, trie, prompts, books, latents = setup
    strong = SidPriorConfig(weight=50.0, temperature=0.5)
    wide = len(trie) + 10
    fused = beam_search(model, tok, trie, prompts, wide, prior=SidPrior(books, latents, strong))
    for i, f in enumerate(fused):
        best = f.as_tuples()[0]
        by_prior = max(trie.sids().tolist(), key=lambda s: _log_prior(books, latents[i].numpy(), tuple(s), strong))
        assert best[:3] == tuple(by_prior[:3])


def test_bad_settings_and_shapes_are_refused(setup) -> None:
    tok, model, trie, prompts, books, latents = setup
    with pytest.raises(ValueError, match="temperature"):
        SidPriorConfig(weight=1.0, temperature=0.0)
    with pytest.raises(ValueError, match="prior for 2 prompts"):
        beam_search(model, tok, trie, prompts, 3, prior=SidPrior(books, latents[:2], SidPriorConfig(weight=1.0)))
