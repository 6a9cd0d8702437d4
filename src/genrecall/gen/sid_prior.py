"""Decoding with the SID tokenizer's prior: the generator's beam search, nudged toward the clusters the
query's own latent lies near.

The generator scores a SID as log p(c_1..c_D | prompt). The SID tokenizer (an RQ-VAE) already knows
where a query's sentence vector falls among its codebooks: its encoder maps the vector to a latent z,
and at level t a prefix with residual r = z - sum of the chosen codes prefers the codes C_t[c] that
leave the smallest residual. `tokenizer_beam` (sid/beam.py) ranks SIDs by that alone. Here the two are
combined per level, a product of experts:

    score(c_1..c_D) = sum_t [ log p_gen(c_t | prefix) + weight * log softmax_c(-||r_t - C_t[c]||^2 / temperature) ]

over the codebook levels (the suffix level has no codebook and keeps the generator's score alone).
``weight = 0`` is the generator alone, exactly. The temperature is in the tokenizer's squared latent
distance units; both are chosen on a validation split of the training queries, never on test queries
(docs/BENCHMARKS.md). The generator still decides: only SIDs in the trie are emitted, and the prior
reorders among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genrecall.sid.tokenizer import SidTokenizer


@dataclass(frozen=True)
class SidPriorConfig:
    """How much of the tokenizer's prior joins the generator's scores (``eval_real.decode_prior``)."""

    # 0 = the generator alone (the default: docs/BENCHMARKS.md). 2 was best of {0.5, 1, 2, 4} on the Home
    # Depot training queries' validation split (items@1000 0.761 -> 0.800) but moved the test queries only
    # 0.702 -> 0.713 and cost hitrate@10; far above it the prior drowns the generator (tokenizer_beam).
    weight: float = 0.0
    # squared-latent-distance scale of the softmax over a level's codes; 0.001 was best of {0.0003, 0.001,
    # 0.003, 0.01} there (about a third of the level-1 codes' median nearest-neighbour distance)
    temperature: float = 0.001

    def __post_init__(self) -> None:
        if self.weight < 0 or self.temperature <= 0:
            raise ValueError("decode prior: weight must be >= 0 and temperature > 0")

    @property
    def enabled(self) -> bool:
        return self.weight > 0


class SidPrior:
    """Per-prompt latents and the tokenizer's codebooks; `start` gives the state one beam search carries."""

    def __init__(self, books: Sequence[torch.Tensor], latents: torch.Tensor, cfg: SidPriorConfig) -> None:
        self.books = [b.float() for b in books]
        self.latents = latents.float()
        self.cfg = cfg

    @classmethod
    def from_tokenizer(cls, tok: SidTokenizer, vectors: np.ndarray, cfg: SidPriorConfig) -> SidPrior:
        """The prior of ``tok`` for sentence vectors ``vectors`` (n, dim), one per prompt."""
        if tok.model is None:
            raise ValueError("the SID tokenizer is not fitted")
        books = [book.embed.detach().cpu() for book in tok.model.books]
        return cls(books, torch.from_numpy(tok.latents(np.asarray(vectors, dtype=np.float32))), cfg)

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def rows(self, lo: int, hi: int) -> SidPrior:
        """The prior of prompts ``lo:hi`` (beam search runs prompts in batches)."""
        return SidPrior(self.books, self.latents[lo:hi], self.cfg)

    def start(self, device: torch.device) -> PriorState:
        """The state of a fresh search: one beam per prompt, its residual the whole latent."""
        books = [b.to(device) for b in self.books]
        return PriorState(books, self.latents.to(device)[:, None, :], self.cfg)


@dataclass
class PriorState:
    """The residual of every live beam, (n prompts, k beams, latent dim), through one beam search."""

    books: list[torch.Tensor]
    residual: torch.Tensor
    cfg: SidPriorConfig

    def bonus(self, level: int, size: int) -> torch.Tensor | None:
        """``weight * log-prior`` over the level's first ``size`` codes, (n, k, size); None past the codebooks."""
        if level >= len(self.books):
            return None
        book = self.books[level][:size]
        dist = ((self.residual[:, :, None, :] - book[None, None]) ** 2).sum(-1)
        bonus = self.cfg.weight * torch.log_softmax(-dist / self.cfg.temperature, dim=-1)
        if book.shape[0] < size:  # a level vocabulary wider than its codebook: no prior for the extra codes
            bonus = torch.nn.functional.pad(bonus, (0, size - book.shape[0]))
        return bonus

    def advance(self, level: int, parent: torch.Tensor, code: torch.Tensor) -> None:
        """Follow the kept beams: each takes its parent's residual minus its chosen code."""
        if level >= len(self.books):
            return
        book = self.books[level]
        padded = torch.cat([book, book.new_zeros((1, book.shape[1]))])  # a code past the codebook subtracts 0
        kept = self.residual.gather(1, parent[..., None].expand(-1, -1, self.residual.shape[2]))
        self.residual = kept - padded[code.clamp(max=book.shape[0])]
