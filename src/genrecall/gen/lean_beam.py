"""Trie-constrained beam search on the lean decoder, with a beam size per prompt.

`lean_beam_search` returns exactly what `beam_search` (gen/beam.py) returns (same SIDs in the same
order, scores within float tolerance; tests/test_gen_lean_beam.py holds the two together) and runs
the model through `LeanDecoder` (gen/fast_decode.py): one prefill per batch of prompts, then D-1
steps in which the beams of a prompt share its prompt keys/values. The beam bookkeeping (trie masks,
stable sort, tie order) is `beam_search`'s own (`extend_beams`).

Beam sizes may differ per prompt: a batch is prefilled once, then decoded in groups of one beam
size (a group reads its rows of the prefill). ``choose`` lets a policy pick each prompt's beam after
the prefill from the model's own first-level distribution (serving/adaptive_beam.py): it gets the
log-probabilities of the level-1 codes the trie allows ``(n, size)`` (-inf elsewhere) and each
prompt's upper bound, and returns the beams to use. `Decoded` says which beam each prompt got.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from genrecall.gen.beam import (
    BeamResult,
    Beams,
    beam_results,
    child_tensors,
    empty_result,
    extend_beams,
    left_pad,
    sid_log_probs,
)
from genrecall.gen.fast_decode import LeanDecoder, Prefill, gather_own
from genrecall.gen.tokenizer import GenTokenizer
from genrecall.sid.trie import SidTrie

BeamChooser = Callable[[torch.Tensor, Sequence[int]], Sequence[int]]  # (level-1 log-probs, bounds) -> beams


class Decoded(NamedTuple):
    """Beams per prompt (best first) and the beam size each prompt was decoded with."""

    results: list[BeamResult]
    beam_sizes: list[int]


@torch.inference_mode()
def lean_beam_search(
    decoder: LeanDecoder,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    prompts: Sequence[Sequence[int]],
    beam_size: int | Sequence[int],
    *,
    batch_size: int = 32,
    semantic: np.ndarray | None = None,
    choose: BeamChooser | None = None,
) -> Decoded:
    """Top-``beam_size`` valid SIDs per prompt, best first; ``beam_size`` is one size or one per prompt
    (with ``choose``: the upper bound the chooser may pick at or below). ``semantic``: one sentence
    vector per prompt for a semantic-prompt model (ignored by a plain one)."""
    sizes = [int(beam_size)] * len(prompts) if isinstance(beam_size, int) else [int(b) for b in beam_size]
    if len(sizes) != len(prompts):
        raise ValueError(f"{len(sizes)} beam sizes for {len(prompts)} prompts")
    if semantic is not None and len(semantic) != len(prompts):
        raise ValueError(f"{len(semantic)} semantic vectors for {len(prompts)} prompts")
    if any(b < 1 for b in sizes):
        raise ValueError("beam_size must be >= 1")
    if trie.depth != tokenizer.sid_depth:
        raise ValueError(f"trie depth {trie.depth} != tokenizer SID depth {tokenizer.sid_depth}")
    results: list[BeamResult] = []
    used: list[int] = []
    for lo in range(0, len(prompts), batch_size):
        vectors = None if semantic is None else semantic[lo : lo + batch_size]
        part = _batch(
            decoder, tokenizer, trie, prompts[lo : lo + batch_size], sizes[lo : lo + batch_size], vectors, choose
        )
        results += part.results
        used += part.beam_sizes
    return Decoded(results, used)


def _batch(
    decoder: LeanDecoder,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    prompts: Sequence[Sequence[int]],
    sizes: list[int],
    semantic: np.ndarray | None,
    choose: BeamChooser | None,
) -> Decoded:
    """One prefill for the batch, then one decode per distinct beam size."""
    depth = tokenizer.sid_depth
    if len(trie) == 0:
        return Decoded([empty_result(depth) for _ in prompts], sizes)
    longest = max(len(p) for p in prompts)
    if decoder.max_positions is not None and longest + depth > decoder.max_positions:
        raise ValueError(f"prompt of {longest} tokens + {depth} SID tokens exceeds {decoder.max_positions} positions")
    device = decoder.device
    ids, attn = left_pad(prompts, tokenizer.pad_id, device)
    pre = decoder.prefill(ids, attn, semantic)
    child = child_tensors(trie, tokenizer.sid_vocab_sizes, device)
    if choose is not None:
        first = sid_log_probs(pre.logits, int(tokenizer.sid_offsets[0]), tokenizer.sid_vocab_sizes[0])
        first = first.masked_fill(child[0][0][None, :] < 0, float("-inf"))
        sizes = [max(1, min(int(b), bound)) for b, bound in zip(choose(first, sizes), sizes)]
    out: list[BeamResult | None] = [None] * len(prompts)
    for size in sorted(set(sizes)):
        rows = [i for i, s in enumerate(sizes) if s == size]
        part = pre if len(rows) == len(prompts) else pre.select(torch.tensor(rows, device=device))
        for i, res in zip(rows, _decode(decoder, tokenizer, child, part, size)):
            out[i] = res
    return Decoded([r for r in out if r is not None], sizes)


def _decode(
    decoder: LeanDecoder, tokenizer: GenTokenizer, child: tuple[torch.Tensor, ...], pre: Prefill, beam_size: int
) -> list[BeamResult]:
    """D SID levels for the prompts of ``pre``, all at one beam size."""
    n = int(pre.next_pos.shape[0])
    beams = Beams.start(n, decoder.device)
    own = decoder.no_own(n)
    logits = pre.logits
    depth = tokenizer.sid_depth
    for t in range(depth):
        offset, size = int(tokenizer.sid_offsets[t]), tokenizer.sid_vocab_sizes[t]
        beams = extend_beams(beams, child[t], logits, offset, size, beam_size)
        if t == depth - 1:
            break
        own = gather_own(own, beams.parent)
        logits, own = decoder.step(pre, beams.code + offset, own, t)
    return beam_results(beams)
