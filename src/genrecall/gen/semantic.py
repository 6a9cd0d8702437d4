"""Pretrained semantics in the prompt: a sentence vector projected into soft-prompt vectors.

A small generator trained from scratch only knows the wording it was trained on; on real traffic much
of the wording is new (DESIGN.md section 1). The pipeline already runs a pretrained sentence encoder
(MiniLM) over every title and query, so the generator is given what that encoder knows: each prompt
starts with ``n`` placeholder tokens ``<sem>`` (`GenTokenizer(semantic_tokens=n)`), and the model
replaces their input embeddings with a learned projection of the prompt text's sentence vector

    soft = W @ v + b,   W: (n * hidden, dim)   ->   n vectors of width ``hidden``

(prompt tuning, Lester et al. 2021, fed from a frozen encoder as in DSI/NCI's query encoders). The text
tokens stay after them: brands, model numbers and sizes are lexical and the encoder blurs them.

- ``SemanticQwen2ForCausalLM`` is `transformers`' Qwen2 causal LM plus that projection; every other
  call (cache, masks, ``logits_to_keep``) is the parent's. It saves and loads like any HF model
  (``semantic_dim``, ``semantic_tokens`` and ``semantic_token_id`` live in ``config.json``).
- ``forward(..., semantic=V)`` takes one vector per row, ``(batch, dim)``. Without ``semantic`` the
  placeholders keep their own learned embedding: a model still answers when the encoder is absent,
  only without the encoder's help (tests hold the two paths apart).
- Decoding steps after the prefill carry no placeholder, so only the prefill needs ``semantic``.
- The encoder travels with the generator: ``config.semantic_encoder`` holds its `EncoderConfig`, and
  `SentenceEncoder.for_model` rebuilds it wherever the generator is loaded (evaluation, RL, serving).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM

from genrecall.config import from_dict
from genrecall.sid.encoder import EmbeddingCache, EncoderConfig, make_encoder


class SemanticQwen2ForCausalLM(Qwen2ForCausalLM):
    """Qwen2 causal LM whose ``<sem>`` placeholders take a projected sentence vector."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        dim, n = int(config.semantic_dim), int(config.semantic_tokens)
        if dim < 1 or n < 1:
            raise ValueError(f"semantic_dim and semantic_tokens must be >= 1, got {dim}, {n}")
        self.semantic_proj = nn.Linear(dim, n * config.hidden_size)
        self.post_init()

    def semantic_embeds(self, input_ids: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        """Token embeddings of ``input_ids`` with each row's placeholders replaced by its projection."""
        embeds = self.get_input_embeddings()(input_ids)
        n, hidden = int(self.config.semantic_tokens), embeds.shape[-1]
        where = input_ids == int(self.config.semantic_token_id)
        counts = where.sum(dim=1)
        if semantic.shape[0] != input_ids.shape[0]:
            raise ValueError(f"{semantic.shape[0]} semantic vectors for {input_ids.shape[0]} rows")
        if bool((counts != n).any()):
            raise ValueError(f"every row needs exactly {n} <sem> placeholders when semantic vectors are given")
        soft = self.semantic_proj(semantic.to(self.semantic_proj.weight.dtype)).view(-1, n, hidden)
        return embeds.masked_scatter(where[..., None], soft.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *args: Any,
        semantic: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if semantic is not None and input_ids is not None:
            inputs_embeds, input_ids = self.semantic_embeds(input_ids, semantic), None
        return super().forward(input_ids, *args, inputs_embeds=inputs_embeds, **kwargs)


def is_semantic(model: nn.Module) -> bool:
    """Whether ``model`` reads sentence vectors (a `SemanticQwen2ForCausalLM`, possibly DDP-wrapped)."""
    return isinstance(getattr(model, "module", model), SemanticQwen2ForCausalLM)


def semantic_tensor(model: nn.Module, vectors: np.ndarray | None) -> dict[str, torch.Tensor]:
    """``{"semantic": tensor}`` for a semantic model and given vectors, else ``{}`` (forward kwargs)."""
    if vectors is None or not is_semantic(model):
        return {}
    device = next(model.parameters()).device
    return {"semantic": torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=device)}


class SentenceEncoder:
    """The pipeline's sentence encoder as a semantic generator needs it: ``encoder(texts) -> (n, dim)``.

    With ``cache_dir`` vectors come from (and go to) the on-disk `EmbeddingCache` the embed stage
    fills; without it, an in-memory LRU of ``memory`` texts keeps repeated queries free (serving).
    """

    def __init__(self, config: EncoderConfig, cache_dir: str | Path | None = None, *, memory: int = 10_000) -> None:
        self.config = config
        self.encoder = make_encoder(config)
        self.dim = int(self.encoder.dim)
        self.cache = EmbeddingCache(cache_dir, self.encoder) if cache_dir else None
        self.memory = int(memory)
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, texts: list[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache is not None:
            return self.cache.encode(texts)[0].astype(np.float32, copy=False)
        todo = sorted({t for t in texts if t not in self._lru})
        if todo:
            for t, v in zip(todo, self.encoder.encode(todo)):
                self._lru[t] = np.asarray(v, dtype=np.float32)
        out = np.stack([self._lru[t] for t in texts])
        for t in texts:
            self._lru.move_to_end(t)
        while len(self._lru) > self.memory:
            self._lru.popitem(last=False)
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @classmethod
    def for_model(
        cls, model: nn.Module, cache_dir: str | Path | None = None, *, runtime: str = "", **kwargs: Any
    ) -> SentenceEncoder | None:
        """The encoder recorded in a semantic model's config (None for a plain model); ``runtime``
        ("onnx", "torch") overrides how MiniLM runs (same vectors; "" keeps the recorded one)."""
        if not is_semantic(model):
            return None
        spec = getattr(getattr(model, "module", model).config, "semantic_encoder", None)
        if not spec:
            raise ValueError("a semantic generator without config.semantic_encoder: which encoder fed it is unknown")
        spec = dict(spec) | ({"runtime": runtime} if runtime else {})
        return cls(from_dict(EncoderConfig, spec), cache_dir, **kwargs)


def vectors_for(model: nn.Module, texts: list[str], encoder: SentenceEncoder | None = None) -> np.ndarray | None:
    """Sentence vectors of ``texts`` for a semantic model (its own recorded encoder unless given), else None."""
    if not is_semantic(model):
        return None
    enc = encoder or SentenceEncoder.for_model(model)
    return None if enc is None else enc(texts)
