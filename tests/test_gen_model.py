from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from genrecall.gen.beam import beam_search
from genrecall.gen.model import (
    GeneratorConfig,
    build_model,
    count_parameters,
    load_generator,
    load_pretrained,
    make_generator,
    save_generator,
)
from genrecall.gen.tokenizer import GenTokenizer, TokenizerConfig
from genrecall.sid.trie import SidTrie

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)
SIZES = (5, 4, 3, 2)
TEXTS = ["red steel kettle", "blue cotton shirt", "green ceramic mug"] * 5
TINY = GeneratorConfig(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, max_positions=64
)


@pytest.fixture(scope="module")
def tok() -> GenTokenizer:
    return GenTokenizer.train(TEXTS, SIZES, TokenizerConfig(vocab_size=280))


def test_build_model_follows_config(tok: GenTokenizer) -> None:
    model = build_model(TINY, len(tok), tokenizer=tok)
    c = model.config
    assert isinstance(model, Qwen2ForCausalLM)
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_key_value_heads) == (len(tok), 32, 1, 1)
    assert c.pad_token_id == tok.pad_id and c.eos_token_id == tok.eos_id
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    again = build_model(TINY, len(tok), tokenizer=tok)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))  # seeded
    other = build_model(GeneratorConfig(**{**TINY.__dict__, "seed": 1}), len(tok))
    assert not torch.equal(model.lm_head.weight, other.lm_head.weight)
    with pytest.raises(ValueError):
        build_model(GeneratorConfig(hidden_size=30, num_heads=4), len(tok))


def test_default_size_is_cpu_sized(tok: GenTokenizer) -> None:
    model = build_model(GeneratorConfig(), 4096 + 1100)
    n = count_parameters(model)
    assert 1_000_000 < n < 5_000_000  # a few million parameters: trains on 2 cores


def test_save_load_round_trip(tok: GenTokenizer, tmp_path) -> None:
    model = build_model(TINY, len(tok), tokenizer=tok)
    save_generator(model, tok, tmp_path / "gen", cfg=TINY)
    assert {"config.json", "model.safetensors", "tokenizer.json", "generator.json"} <= {
        p.name for p in (tmp_path / "gen").iterdir()
    }
    gen = load_generator(tmp_path / "gen")
    ids = torch.tensor([tok.encode_prompt("red kettle")])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, gen.model(input_ids=ids).logits, atol=0, rtol=0)
    assert gen.tokenizer.encode_prompt("red kettle") == ids[0].tolist()


def _qwen_like(tok: GenTokenizer, tmp_path) -> tuple:
    """A stand-in for a local Qwen2.5 checkpoint: a Qwen2 model over the text vocabulary + its tokenizer.json."""
    ckpt = tmp_path / "qwen-like"
    base = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=tok.n_text + 3,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=True,
        )
    )
    base.save_pretrained(ckpt)
    tok.text.save(str(ckpt / "tokenizer.json"))
    return ckpt, base


def test_load_pretrained_grows_embeddings_and_keeps_old_rows(tok: GenTokenizer, tmp_path) -> None:
    ckpt, base = _qwen_like(tok, tmp_path)
    ptok = GenTokenizer.from_pretrained(ckpt, SIZES, profile_values={"gender": ["f", "m"]})
    model = make_generator(GeneratorConfig(pretrained_dir=str(ckpt)), ptok)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(ptok) and model.config.vocab_size == len(ptok)
    torch.testing.assert_close(emb[: tok.n_text + 3], base.get_input_embeddings().weight, atol=0, rtol=0)
    assert model.lm_head.weight.shape[0] == len(ptok)
    assert model.config.eos_token_id == ptok.eos_id
    trie = SidTrie.from_sids(np.array([[0, 0, 0, 0], [4, 3, 2, 1], [1, 2, 0, 1]]))
    res = beam_search(model.eval(), ptok, trie, [ptok.encode_prompt("red kettle")], 5)[0]
    assert sorted(res.as_tuples()) == [(0, 0, 0, 0), (1, 2, 0, 1), (4, 3, 2, 1)]

    with pytest.raises(ValueError):  # a tokenizer with more text ids than the checkpoint is the wrong one
        load_pretrained(ckpt, GenTokenizer(_bigger_backend(), SIZES))
    with pytest.raises(OSError):  # local only: a missing dir is an error, never a download
        load_pretrained(tmp_path / "nope", ptok)


def _bigger_backend():
    return GenTokenizer.train(
        TEXTS * 4 + ["a whole lot more words to learn merges from"] * 5,
        SIZES,
        TokenizerConfig(vocab_size=400, min_frequency=1),
    ).text


def test_a_pretrained_checkpoint_takes_the_semantic_prompt(tok: GenTokenizer, tmp_path) -> None:
    """The GPU path (a local Qwen2.5) with the sentence-vector prompt: the projection is new, the rest loaded."""
    from genrecall.gen.semantic import SemanticQwen2ForCausalLM

    ckpt, base = _qwen_like(tok, tmp_path)
    ptok = GenTokenizer.from_pretrained(ckpt, SIZES, semantic_tokens=2)
    model = make_generator(GeneratorConfig(pretrained_dir=str(ckpt), semantic_dim=8), ptok)
    assert isinstance(model, SemanticQwen2ForCausalLM) and model.semantic_proj.in_features == 8
    torch.testing.assert_close(
        model.get_input_embeddings().weight[: tok.n_text + 3], base.get_input_embeddings().weight, atol=0, rtol=0
    )
    trie = SidTrie.from_sids(np.array([[0, 0, 0, 0], [4, 3, 2, 1]]))
    res = beam_search(
        model.eval(), ptok, trie, [ptok.encode_prompt("red kettle")], 2, semantic=np.ones((1, 8), np.float32)
    )
    assert sorted(res[0].as_tuples()) == [(0, 0, 0, 0), (4, 3, 2, 1)]
