"""Trie-constrained beam search over SID tokens: every returned beam is a real SID.

A SID has a fixed length D (L levels + suffix), so decoding is exactly D steps and needs no <eos>.
At step t each live beam may only extend with the codes `trie.next_codes(prefix)` allows; all other
logits are -inf. Scores are sums of log-probabilities under the model's full-vocabulary softmax
(masking happens after normalisation, as in `transformers`' constrained generation), so a score is
the model's log-probability of emitting exactly that SID after the prompt.

`beam_search` is the fast path: prompts batched with left padding, the prompt prefilled once, then one
token per step through the KV cache, beams reordered in the cache. Each beam carries the id of its
prefix in the trie's dense per-level child tables (`SidTrie.tables`), so the masks of all beams are one
tensor gather per step and the next prefix ids another: no Python loop over beams or prefixes.
`reference_beam_search` is the slow,
obviously-correct version (one prompt, full forward per beam per step, plain Python); tests hold the
two to the same answers. Ties break the same way in both: by parent beam order, then by code.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from genrecall.gen.centroid_prior import CentroidPrior
from genrecall.gen.semantic import semantic_tensor
from genrecall.gen.sid_prior import SidPrior
from genrecall.gen.tokenizer import GenTokenizer
from genrecall.sid.trie import SidTrie, TrieTables


@dataclass(frozen=True)
class BeamResult:
    """Beams for one prompt, best first: ``sids`` (k, D) int64 and their log-probs ``scores`` (k,)."""

    sids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.sids.shape[0])

    def as_tuples(self) -> list[tuple[int, ...]]:
        return [tuple(int(c) for c in row) for row in self.sids]


def empty_result(depth: int) -> BeamResult:
    return BeamResult(np.empty((0, depth), dtype=np.int64), np.empty(0, dtype=np.float64))


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask on ``device`` (decoding appends on the right); no empty prompt."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty")
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def sid_log_probs(logits: torch.Tensor, start: int, size: int) -> torch.Tensor:
    """log_softmax over the full vocabulary, then only the columns of one SID position (float32)."""
    logits = logits.float()
    return logits[:, start : start + size] - torch.logsumexp(logits, dim=-1, keepdim=True)


def child_tensors(trie: SidTrie, sizes: Sequence[int], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The trie's per-level child tables as tensors on ``device`` (see ``TrieTables``)."""
    tables: TrieTables = trie.tables(sizes)
    return tuple(torch.from_numpy(t).to(device) for t in tables.child)


def cache_keyword(model: torch.nn.Module) -> str:
    """The cache keyword of this transformers version ("cache" in 5.x, "past_key_values" before).

    Read from the first class in the model's MRO whose ``forward`` names one: a subclass such as
    `SemanticQwen2ForCausalLM` passes it through ``**kwargs``."""
    for cls in type(model).__mro__:
        forward = cls.__dict__.get("forward")
        if forward is None:
            continue
        params = inspect.signature(forward).parameters
        if "cache" in params:
            return "cache"
        if "past_key_values" in params:
            return "past_key_values"
    return "past_key_values"


def result_cache(res: object) -> Any:
    """The KV cache of a forward's output, under either name (``cache`` in transformers 5.x): a
    transformers ``Cache`` (typed Any: its ``reorder_cache`` is annotated for the legacy LongTensor)."""
    return res.cache if hasattr(res, "cache") else res.past_key_values  # type: ignore[attr-defined]


@torch.inference_mode()
def beam_search(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    prompts: Sequence[Sequence[int]],
    beam_size: int,
    *,
    batch_size: int = 32,
    show_progress: bool = False,
    semantic: np.ndarray | None = None,
    prior: SidPrior | CentroidPrior | None = None,
) -> list[BeamResult]:
    """Top-``beam_size`` valid SIDs per prompt, best first (fewer when the trie holds fewer).

    Prompts are processed ``batch_size`` at a time (rows in the model = batch_size * beam_size);
    ``show_progress`` draws a rich bar over the batches (for offline evaluation). ``semantic``:
    one sentence vector per prompt, ``(len(prompts), dim)``, for a semantic-prompt model
    (gen/semantic.py); ignored by a plain one. ``prior``: a decoding prior for each prompt (the SID
    tokenizer's, gen/sid_prior.py, or the trie nodes' centroids, gen/centroid_prior.py), added to the
    scores per level; None = the generator's log-probabilities alone.
    """
    if semantic is not None and len(semantic) != len(prompts):
        raise ValueError(f"{len(semantic)} semantic vectors for {len(prompts)} prompts")
    if prior is not None and len(prior) != len(prompts):
        raise ValueError(f"a prior for {len(prior)} prompts, but {len(prompts)} prompts")
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    if trie.depth != tokenizer.sid_depth:
        raise ValueError(f"trie depth {trie.depth} != tokenizer SID depth {tokenizer.sid_depth}")
    out: list[BeamResult] = []
    with Progress(
        TextColumn(f"beam {beam_size}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=True,
    ) as bar:
        task = bar.add_task("beam", total=len(prompts))
        for lo in range(0, len(prompts), batch_size):
            vectors = None if semantic is None else semantic[lo : lo + batch_size]
            rows = None if prior is None else prior.rows(lo, lo + batch_size)
            out += _beam_batch(model, tokenizer, trie, prompts[lo : lo + batch_size], beam_size, vectors, rows)
            bar.update(task, completed=len(out))
    return out


def _beam_batch(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    prompts: Sequence[Sequence[int]],
    beam_size: int,
    semantic: np.ndarray | None = None,
    prior: SidPrior | CentroidPrior | None = None,
) -> list[BeamResult]:
    depth = tokenizer.sid_depth
    if len(trie) == 0:
        return [empty_result(depth) for _ in prompts]
    device = next(model.parameters()).device
    cache_kw = cache_keyword(model)
    n = len(prompts)
    check_length(model, prompts, depth)
    ids, attn = left_pad(prompts, tokenizer.pad_id, device)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    # without padding (one prompt, or prompts of one length) the mask is all ones: passing none lets the
    # model use its plain causal path and skip building a mask every step (same attention, less work)
    padded = bool((attn == 0).any())
    cache, logits = _forward(model, ids, attn if padded else None, pos, **semantic_tensor(model, semantic))
    next_pos = pos[:, -1:] + 1  # (n, 1)
    child = child_tensors(trie, tokenizer.sid_vocab_sizes, device)
    beams = Beams.start(n, device)
    state = None if prior is None or not prior.cfg.enabled else prior.start(device)
    for t in range(depth):
        k = beams.scores.shape[1]  # beams per prompt so far
        size = tokenizer.sid_vocab_sizes[t]
        bonus = None if state is None else state.bonus(t, size)
        beams = extend_beams(beams, child[t], logits, int(tokenizer.sid_offsets[t]), size, beam_size, bonus=bonus)
        if state is not None:
            state.advance(t, beams.parent, beams.code)
        if t == depth - 1:
            break
        # feed the chosen tokens, with the cache rows of their parent beams
        rows = (torch.arange(n, device=device)[:, None] * k + beams.parent).reshape(-1)
        cache.reorder_cache(rows)
        if padded:
            attn = torch.cat([attn.index_select(0, rows), attn.new_ones((len(rows), 1))], dim=1)
        next_pos = next_pos.index_select(0, rows)
        tokens = beams.code.reshape(-1, 1) + int(tokenizer.sid_offsets[t])
        cache, logits = _forward(model, tokens, attn if padded else None, next_pos, **{cache_kw: cache})
        next_pos = next_pos + 1
    return beam_results(beams)


def _forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    **extra: Any,
) -> tuple[Any, torch.Tensor]:
    """One cached forward: (the KV cache, the last position's logits)."""
    res = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=1,
        **extra,
    )
    return result_cache(res), res.logits[:, -1, :]


def check_length(model: torch.nn.Module, prompts: Sequence[Sequence[int]], depth: int) -> None:
    """Refuse prompts that with the SID tokens would not fit the model's positions."""
    max_len = getattr(model.config, "max_position_embeddings", None)
    if max_len is not None and max(len(p) for p in prompts) + depth > max_len:
        raise ValueError(
            f"prompt of {max(len(p) for p in prompts)} tokens + {depth} SID tokens exceeds {max_len} positions"
        )


@dataclass
class Beams:
    """The live beams of a batch: (n prompts, k beams) scores and trie nodes, (n, k, t) codes so far, and
    the last step's parent beam and chosen code per beam."""

    scores: torch.Tensor
    node: torch.Tensor  # each beam's prefix id in the child tables
    codes: torch.Tensor
    parent: torch.Tensor
    code: torch.Tensor

    @classmethod
    def start(cls, n: int, device: torch.device) -> Beams:
        """One empty beam per prompt (score 0, at the trie's root)."""
        zeros = torch.zeros((n, 1), dtype=torch.long, device=device)
        return cls(
            scores=torch.zeros((n, 1), dtype=torch.float32, device=device),
            node=zeros,
            codes=torch.zeros((n, 1, 0), dtype=torch.long, device=device),
            parent=zeros,
            code=zeros,
        )


def extend_beams(
    beams: Beams,
    child: torch.Tensor,
    logits: torch.Tensor,
    offset: int,
    size: int,
    beam_size: int,
    *,
    bonus: torch.Tensor | None = None,
) -> Beams:
    """One SID level: every live beam x every code its prefix allows in the trie, the best ``beam_size``.

    ``bonus`` (n, k, size), when given, is added to each code's log-probability (a decoding prior)."""
    n, k = beams.scores.shape
    t = beams.codes.shape[2]
    # a beam may take code c iff its prefix has child c; dead beams (score -inf or no prefix) take nothing
    live = torch.isfinite(beams.scores) & (beams.node >= 0)  # (n, k)
    nxt = child[beams.node.clamp(min=0)]  # (n, k, size): the prefix id after each code, -1 = not in the trie
    allowed = (nxt >= 0) & live[..., None]
    step = sid_log_probs(logits, offset, size).reshape(n, k, size)
    if bonus is not None:
        step = step + bonus
    cand = (beams.scores[..., None] + step).masked_fill(~allowed, float("-inf")).reshape(n, k * size)
    new_k = min(beam_size, k * size)
    # stable sort: ties resolve by (parent beam, code), exactly like the reference
    top_scores, top_idx = torch.sort(cand, dim=-1, descending=True, stable=True)
    top_scores, top_idx = top_scores[:, :new_k], top_idx[:, :new_k]
    parent, code = top_idx // size, top_idx % size
    node = nxt.reshape(n, k * size).gather(1, top_idx)
    codes = torch.cat([beams.codes.gather(1, parent[..., None].expand(-1, -1, t)), code[..., None]], dim=2)
    return Beams(top_scores, node, codes, parent, code)


def beam_results(beams: Beams) -> list[BeamResult]:
    """Each prompt's finished beams (best first), without the dead ones (score -inf)."""
    prefixes = beams.codes.cpu().numpy()
    final = beams.scores.cpu().numpy().astype(np.float64)
    out = []
    for i in range(len(final)):
        keep = np.isfinite(final[i])
        out.append(BeamResult(prefixes[i][keep].copy(), final[i][keep].copy()))
    return out


@torch.inference_mode()
def reference_beam_search(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    prompts: Sequence[Sequence[int]],
    beam_size: int,
    semantic: np.ndarray | None = None,
) -> list[BeamResult]:
    """Slow and plain: per prompt, per step, per beam a full forward pass without cache or padding."""
    device = next(model.parameters()).device
    depth = tokenizer.sid_depth
    results = []
    for i, prompt in enumerate(prompts):
        vector = {} if semantic is None else semantic_tensor(model, semantic[i : i + 1])
        beams: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
        for t in range(depth):
            candidates: list[tuple[float, tuple[int, ...]]] = []
            for score, prefix in beams:
                ids = list(prompt) + [tokenizer.sid_token_id(p, c) for p, c in enumerate(prefix)]
                x = torch.tensor([ids], dtype=torch.long, device=device)
                logp = torch.log_softmax(model(input_ids=x, **vector).logits[0, -1].float(), dim=-1)
                candidates.extend(
                    (score + float(logp[tokenizer.sid_token_id(t, c)]), (*prefix, c))
                    for c in trie.next_codes(prefix).tolist()
                    if c < tokenizer.sid_vocab_sizes[t]
                )
            candidates.sort(key=lambda sc: -sc[0])  # Python's sort is stable: ties keep (beam, code) order
            beams = candidates[:beam_size]
        if not beams or len(beams[0][1]) < depth:
            results.append(empty_result(depth))
            continue
        results.append(
            BeamResult(
                np.array([b[1] for b in beams], dtype=np.int64).reshape(-1, depth),
                np.array([b[0] for b in beams], dtype=np.float64),
            )
        )
    return results
