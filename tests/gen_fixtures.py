"""A tiny tokenizer and a generator with peaked scores, shared by the decoding tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genrecall.gen.model import GeneratorConfig, build_model
from genrecall.gen.tokenizer import GenTokenizer, TokenizerConfig

TEXTS = ["red steel kettle", "blue cotton shirt", "green ceramic mug", "kettle", "shirt", "mug set"] * 4


def peaked_generator(sizes: Sequence[int]) -> tuple[GenTokenizer, torch.nn.Module]:
    """(tokenizer, model in eval mode) for SID levels of ``sizes``. A large init spread gives peaked,
    distinct log-probs, so a ranking (or an exact score) is a real test."""
    tok = GenTokenizer.train(TEXTS, sizes, TokenizerConfig(vocab_size=290))
    cfg = GeneratorConfig(
        hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64, init_std=0.4, seed=3
    )
    return tok, build_model(cfg, len(tok), tokenizer=tok).eval()
