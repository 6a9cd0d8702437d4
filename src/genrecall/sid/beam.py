"""``tokenizer_beam``: the training-free reference a trained generator has to beat.

A query's sentence vector goes through the SID tokenizer's own encoder (the RQ-VAE encoder MLP that
maps item embeddings to latents), then a beam search over the residual codebooks ranks SID prefixes
by how well they reconstruct that latent:

    level t: a beam (prefix p, residual r) may take code c if p + (c,) is in the trie;
             its score is ||r - C_t[c]||^2, the residual left after quantising with that code.

The ``beam_size`` prefixes with the smallest residual survive each level. At the last level (the
cluster/dedup suffix, which has no codebook) every suffix of a kept prefix follows it in code order.
So "query meaning -> nearby clusters" costs no training at all; a generator earns its keep only by
beating this (DESIGN.md section 1). NumPy in, NumPy out: the same ``(B, D)`` SID arrays as
`genrecall.gen.beam.beam_search`, best first.
"""

from __future__ import annotations

import numpy as np
import torch

from genrecall.sid.tokenizer import SidTokenizer
from genrecall.sid.trie import SidTrie


def _codebooks(tok: SidTokenizer) -> list[np.ndarray]:
    if tok.model is None:
        raise ValueError("the SID tokenizer is not fitted")
    return [book.embed.detach().cpu().numpy().astype(np.float32) for book in tok.model.books]


def _one(z: np.ndarray, books: list[np.ndarray], child: tuple[np.ndarray, ...], beam: int) -> np.ndarray:
    """SIDs (<= beam, D) for one latent ``z``, best first."""
    prefix_ids = np.zeros(1, dtype=np.int64)  # the empty prefix
    residuals = z[None, :]  # (k, dim)
    codes = np.zeros((1, 0), dtype=np.int64)
    for level, book in enumerate(books):
        table = child[level][prefix_ids]  # (k, size): next prefix id or -1
        size = min(table.shape[1], len(book))
        dist = ((residuals[:, None, :] - book[None, :size, :]) ** 2).sum(-1)  # (k, size)
        dist = np.where(table[:, :size] >= 0, dist, np.inf)
        flat = dist.reshape(-1)
        keep = min(beam, int(np.isfinite(flat).sum()))
        if keep == 0:
            return np.zeros((0, len(child)), dtype=np.int64)
        order = np.argsort(flat, kind="stable")[:keep]
        parent, code = np.divmod(order, size)
        prefix_ids = table[parent, code]
        residuals = residuals[parent] - book[code]
        codes = np.concatenate([codes[parent], code[:, None]], axis=1)
    for level in range(len(books), len(child)):  # suffix levels: every continuation, in code order
        table = child[level][prefix_ids]
        parent, code = np.nonzero(table >= 0)
        prefix_ids = table[parent, code]
        codes = np.concatenate([codes[parent], code[:, None]], axis=1)
    return codes[:beam]


def tokenizer_beam(
    tok: SidTokenizer, trie: SidTrie, vectors: np.ndarray, beam_size: int, sizes: tuple[int, ...]
) -> list[np.ndarray]:
    """Top-``beam_size`` SIDs of the trie for each query vector, by residual distance (best first).

    ``sizes`` are the decoder's per-position vocabulary sizes (``SidIndex.sid_vocab_sizes``).
    """
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    books = _codebooks(tok)
    with torch.no_grad():
        z = tok.latents(np.asarray(vectors, dtype=np.float32))
    child = trie.tables(sizes).child
    return [_one(row, books, child, beam_size) for row in z]
