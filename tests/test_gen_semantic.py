"""The semantic prompt: sentence vectors projected into <sem> placeholders (gen/semantic.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecall.gen.beam import beam_search, reference_beam_search
from genrecall.gen.examples import SidDataset, item_examples, query_examples
from genrecall.gen.model import GeneratorConfig, build_model, load_generator
from genrecall.gen.semantic import SemanticQwen2ForCausalLM
from genrecall.gen.sft import SFTConfig, train_sft
from genrecall.gen.tokenizer import GenTokenizer, TokenizerConfig
from genrecall.sid.trie import SidTrie
from tests.test_gen_examples import SIZES, tiny_tables

torch.set_num_threads(1)
DIM = 16
TINY = GeneratorConfig(
    hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, max_positions=96, semantic_dim=DIM
)


def _encode(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in for the sentence encoder: a fixed vector per text (tests only)."""
    out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=DIM) for t in texts]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def setup():
    t = tiny_tables()
    texts = list(t.items["title"]) + list(t.requests["query"])
    tok = GenTokenizer.train(texts, SIZES, TokenizerConfig(vocab_size=300, semantic_tokens=2))
    ds = SidDataset.concat(item_examples(t.items, t.sids, tok), query_examples(t.requests, t.sids, tok), kind="i2sid")
    return t, tok, ds.with_vectors(_encode)


def test_tokenizer_places_placeholders_and_keeps_plain_ids() -> None:
    t = tiny_tables()
    texts = list(t.items["title"])
    plain = GenTokenizer.train(texts, SIZES, TokenizerConfig(vocab_size=300))
    sem = GenTokenizer.train(texts, SIZES, TokenizerConfig(vocab_size=300, semantic_tokens=3))
    assert plain.semantic_id is None and sem.semantic_id is not None
    prompt = sem.encode_prompt("red kettle")
    assert prompt[:4] == [sem.bos_id] + [sem.semantic_id] * 3
    assert prompt[4:] == plain.encode_prompt("red kettle")[1:]  # the rest is the plain prompt, same ids
    assert sem.sid_start == plain.sid_start + 1 and plain.sid_token_id(0, 0) + 1 == sem.sid_token_id(0, 0)


def test_training_moves_the_projection_and_vectors_change_the_answer(setup, tmp_path) -> None:
    t, tok, ds = setup
    model = build_model(TINY, len(tok), tokenizer=tok)
    assert isinstance(model, SemanticQwen2ForCausalLM)
    before = model.semantic_proj.weight.detach().clone()
    cfg = SFTConfig(stage="i2sid", max_steps=30, batch_size=16, lr=3e-3, warmup_steps=3, log_every=10)
    res = train_sft(model, tok, ds, cfg, tmp_path, show_progress=False)
    assert np.mean(res.losses[-5:]) < 0.8 * np.mean(res.losses[:5])
    assert not torch.equal(model.semantic_proj.weight.detach(), before)

    loaded = load_generator(res.final_dir)
    assert isinstance(loaded.model, SemanticQwen2ForCausalLM)
    trie = SidTrie.from_sids(t.sids["codes"].map(tuple).tolist())
    prompts = [tok.encode_prompt("red kettle")] * 2
    vecs = _encode(["red kettle", "green tent"])
    fast = beam_search(loaded.model, tok, trie, prompts, beam_size=5, semantic=vecs)
    ref = reference_beam_search(loaded.model, tok, trie, prompts, beam_size=5, semantic=vecs)
    for a, b in zip(fast, ref):
        np.testing.assert_array_equal(a.sids, b.sids)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    # same text tokens, different sentence vectors: the model must see the difference
    assert not np.allclose(fast[0].scores, fast[1].scores)
    without = beam_search(loaded.model, tok, trie, prompts[:1], beam_size=5)  # no encoder: still answers
    assert len(without[0]) == 5


def test_placeholder_count_is_checked(setup) -> None:
    _, tok, _ = setup
    model = build_model(TINY, len(tok), tokenizer=tok)
    ids = torch.tensor([[tok.bos_id, tok.sid_id]])
    with pytest.raises(ValueError, match="placeholders"):
        model(input_ids=ids, semantic=torch.zeros(1, DIM))


def test_dataset_vectors_survive_save_load_and_concat(setup, tmp_path) -> None:
    _, _, ds = setup
    back = SidDataset.load(ds.save(tmp_path / "ds.parquet"))
    assert back.texts == ds.texts and back.vectors is not None
    np.testing.assert_array_equal(back.vectors, ds.vectors)
    both = SidDataset.concat(ds, back)
    assert both.vectors is not None and len(both.vectors) == 2 * len(ds)
    half = ds.subset(np.arange(0, len(ds), 2))
    assert half.texts == ds.texts[::2] and np.array_equal(half.vectors, ds.vectors[::2])


def test_generate_sids_keeps_texts_that_share_their_prompt_tokens_apart(setup) -> None:
    """Prompts with no text tokens (or texts cut at ``max_text_tokens``) are token-identical, yet their
    vectors differ: evaluation must search each text, not the first one's answer for all."""
    from genrecall.gen.model import Generator
    from genrecall.pipeline.evaluate import generate_sids

    t, _, _ = setup
    texts = list(t.items["title"]) + list(t.requests["query"])
    sem_only = GenTokenizer.train(texts, SIZES, TokenizerConfig(vocab_size=300, semantic_tokens=2, max_text_tokens=0))
    model = build_model(GeneratorConfig(**{**TINY.__dict__, "init_std": 0.4}), len(sem_only), tokenizer=sem_only)
    trie = SidTrie.from_sids(t.sids["codes"].map(tuple).tolist())
    queries = ["red kettle", "green tent", "red kettle"]
    prompts = [sem_only.encode_prompt(q) for q in queries]
    assert prompts[0] == prompts[1]  # nothing of the text is in the tokens
    run = generate_sids(Generator(model.eval(), sem_only), trie, prompts, 5, 2, texts=queries, encoder=_encode)
    alone = [
        beam_search(model, sem_only, trie, [p], 5, semantic=_encode([q]))[0].sids for p, q in zip(prompts, queries)
    ]
    for got, want in zip(run.sids, alone):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(run.sids[0], run.sids[1])  # different vectors, different answers
