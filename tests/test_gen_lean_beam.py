"""The lean decoder (gen/fast_decode.py, gen/lean_beam.py) returns `beam_search`'s beams exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecall.gen.beam import BeamResult, beam_search
from genrecall.gen.fast_decode import LeanDecoder
from genrecall.gen.lean_beam import lean_beam_search
from genrecall.gen.model import GeneratorConfig, build_model
from genrecall.gen.tokenizer import GenTokenizer, TokenizerConfig
from genrecall.sid.trie import SidTrie

torch.set_num_threads(1)
SIZES = (7, 5, 4, 3)
DIM = 16
TEXTS = ["red steel kettle", "blue cotton shirt", "green ceramic mug", "kettle", "shirt", "mug set"] * 4
# a large init spread gives peaked, distinct log-probs, so the ranking is a real test
CFG = GeneratorConfig(
    hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=64, init_std=0.4, seed=3
)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _setup(semantic: int) -> tuple[GenTokenizer, torch.nn.Module, SidTrie, list[list[int]]]:
    tok = GenTokenizer.train(TEXTS, SIZES, TokenizerConfig(vocab_size=290, semantic_tokens=semantic))
    cfg = GeneratorConfig(**{**CFG.__dict__, "semantic_dim": DIM if semantic else 0})
    model = build_model(cfg, len(tok), tokenizer=tok).eval()
    rng = np.random.default_rng(0)
    sids = np.stack([rng.integers(0, s, 60) for s in SIZES], axis=1)
    prompts = [
        tok.encode_prompt("red kettle"),
        tok.encode_prompt("blue cotton shirt with a much longer query than the others"),
        tok.encode_prompt("mug", profile={"gender": "f"}, history=[tuple(sids[0]), tuple(sids[1])]),
        tok.encode_prompt("shirt"),
    ]
    if not semantic:
        prompts.append([tok.bos_id, tok.sid_id])  # shortest possible prompt
    return tok, model, SidTrie.from_sids(sids), prompts


@pytest.fixture(scope="module", params=[0, 2], ids=["plain", "semantic"])
def setup(request: pytest.FixtureRequest) -> tuple[GenTokenizer, torch.nn.Module, SidTrie, list[list[int]]]:
    return _setup(request.param)


def _row(vectors: np.ndarray | None, i: int) -> np.ndarray | None:
    return None if vectors is None else vectors[i : i + 1]


def _same(a: list[BeamResult], b: list[BeamResult]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.sids, y.sids)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4)


@pytest.mark.parametrize("beam", [1, 3, 12, 500])
def test_lean_matches_beam_search(setup, beam: int) -> None:
    tok, model, trie, prompts = setup
    vectors = _vectors(len(prompts)) if tok.semantic_tokens else None
    want = beam_search(model, tok, trie, prompts, beam, semantic=vectors)
    got = lean_beam_search(LeanDecoder(model), tok, trie, prompts, beam, semantic=vectors)
    _same(got.results, want)
    assert got.beam_sizes == [beam] * len(prompts)
    if beam == 500:  # more than the trie holds: every SID, once
        assert all(len(r) == len(trie) for r in got.results)


def test_per_prompt_beams_and_batches_match_separate_searches(setup) -> None:
    tok, model, trie, prompts = setup
    vectors = _vectors(len(prompts), seed=1) if tok.semantic_tokens else None
    sizes = [5, 2, 5, 9, 2][: len(prompts)]
    got = lean_beam_search(LeanDecoder(model), tok, trie, prompts, sizes, semantic=vectors, batch_size=3)
    for i, (res, size) in enumerate(zip(got.results, sizes)):
        one = beam_search(
            model, tok, trie, [prompts[i]], size, semantic=None if vectors is None else vectors[i : i + 1]
        )
        _same([res], one)
    assert got.beam_sizes == sizes


def test_chooser_sees_the_allowed_first_level_and_is_capped(setup) -> None:
    tok, model, trie, prompts = setup
    allowed = {int(c) for c in trie.next_codes(())}
    seen = []

    def choose(first: torch.Tensor, bounds: list[int]) -> list[int]:
        seen.append(first.clone())
        return [3, 100, 1, 2, 4][: len(bounds)]

    vectors = _vectors(len(prompts)) if tok.semantic_tokens else None
    got = lean_beam_search(LeanDecoder(model), tok, trie, prompts, 6, semantic=vectors, choose=choose)
    assert got.beam_sizes == [3, 6, 1, 2, 4][: len(prompts)]  # the request's beam stays the upper bound
    first = seen[0]
    assert first.shape == (len(prompts), SIZES[0])
    assert {int(c) for c in torch.isfinite(first[0]).nonzero().flatten()} == allowed
    assert bool((first[torch.isfinite(first)] <= 0).all())
    for res, size, i in zip(got.results, got.beam_sizes, range(len(prompts))):
        one = beam_search(
            model, tok, trie, [prompts[i]], size, semantic=None if vectors is None else vectors[i : i + 1]
        )
        _same([res], one)


def test_sparse_and_empty_trie_and_foreign_codes(setup) -> None:
    tok, model, _, prompts = setup
    vectors = _vectors(len(prompts)) if tok.semantic_tokens else None
    decoder = LeanDecoder(model)
    # codes 9 / 6 / 5 lie outside the codebooks (7, 5, 4, 3): beams entering those prefixes die in both
    trie = SidTrie.from_sids(np.array([[9, 0, 0, 0], [1, 6, 0, 0], [1, 2, 3, 2], [1, 2, 0, 0], [2, 0, 5, 0]]))
    for beam in (1, 2, 8):
        want = beam_search(model, tok, trie, prompts, beam, semantic=vectors)
        _same(lean_beam_search(decoder, tok, trie, prompts, beam, semantic=vectors).results, want)
    empty = lean_beam_search(decoder, tok, SidTrie(depth=4), prompts[:2], 5).results
    assert all(len(r) == 0 and r.sids.shape == (0, 4) for r in empty)
    with pytest.raises(ValueError):
        lean_beam_search(decoder, tok, SidTrie(depth=3), prompts, 5)


def test_refuses_what_it_does_not_reproduce() -> None:
    _, model, _, _ = _setup(0)
    assert LeanDecoder.unsupported(model) == ""
    model.config.hidden_act = "gelu"
    assert "activation" in LeanDecoder.unsupported(model)
    with pytest.raises(ValueError, match="activation"):
        LeanDecoder(model)
