"""Groups for EG-GRPO: G policy SIDs per prompt + K expert SIDs from the logged request, rewarded and
normalised into advantages.

Policy members come from the current generator under the trie, in one of two modes:

- ``"sample"``: constrained sampling. At each SID level only the codes the trie allows after the
  prefix can be drawn (the masking idea of `genrecall.gen.beam`), with probability softmax(logit / T)
  over those codes; prompts are prefilled once and the KV cache is expanded to G rows per prompt.
- ``"beams"``: the top-G distinct beams of `genrecall.gen.beam.beam_search` (deterministic, never
  repeats a SID; what serving would retrieve).

Experts (the "EG" of EG-GRPO) are K SIDs drawn without replacement from the request's clicked and
exposed SIDs, with probability proportional to their reward tier (a clicked SID twice as likely as
an exposed one). **Duplicates**: an expert the policy already sampled adds no new information.
``duplicates="redraw"`` (default) draws experts only among pool SIDs the policy did not sample; when
the pool runs out, the remaining slots hold a copy of a pool SID *flagged* ``duplicate`` and marked
inactive (left out of the advantage statistics and the loss). ``duplicates="keep"`` draws from the
whole pool and keeps a duplicate active, flagged, counted twice in the group (the naive scheme).

Advantage of an active member = (r - mean) / (std + eps) over the active members of its group
(population std). A group whose active rewards are all equal has zero variance and zero advantages:
it teaches nothing, which is what injection fixes for sparse rewards (K=0 is plain GRPO).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from genrecall.gen.beam import beam_search, cache_keyword, left_pad, result_cache
from genrecall.gen.semantic import semantic_tensor
from genrecall.gen.tokenizer import GenTokenizer
from genrecall.rl.reward import RankerReward, RequestSids, RewardConfig, Sid, rewards
from genrecall.sid.trie import SidTrie

MODES: tuple[str, ...] = ("sample", "beams")
DUPLICATES: tuple[str, ...] = ("redraw", "keep")


class Advantages(NamedTuple):
    values: np.ndarray  # (B, M) float64; 0 for inactive members
    zero_variance: np.ndarray  # (B,) bool: all active rewards of the group are equal


class Experts(NamedTuple):
    sids: list[Sid]  # at most k, fewer when the request's pool is smaller
    duplicate: list[bool]  # the policy already sampled this SID


@dataclass
class Groups:
    """A batch of groups: B prompts x M = G + K members of D codes each."""

    sids: np.ndarray  # (B, M, D) int64; policy members first, then experts
    rewards: np.ndarray  # (B, M) float64
    advantages: np.ndarray  # (B, M) float64
    is_expert: np.ndarray  # (B, M) bool
    duplicate: np.ndarray  # (B, M) bool: an expert the policy had already sampled
    active: np.ndarray  # (B, M) bool: counted in the advantages and the loss
    zero_variance: np.ndarray  # (B,) bool

    def stats(self) -> dict[str, float]:
        """Per-batch log values: reward mean/std, zero-variance share, unique policy SIDs per group, ..."""
        act, pol = self.active, self.active & ~self.is_expert
        r = np.where(act, self.rewards, np.nan)
        unique = [len({tuple(s) for s, a in zip(g.tolist(), m) if a}) for g, m in zip(self.sids, pol)]
        exp = self.is_expert & act
        return {
            "reward_mean": float(np.nanmean(r)),
            "reward_std": float(np.nanmean(np.nanstd(r, axis=1))),  # mean within-group std
            "policy_reward_mean": float(self.rewards[pol].mean()) if pol.any() else 0.0,
            "expert_reward_mean": float(self.rewards[exp].mean()) if exp.any() else 0.0,
            "zero_variance_share": float(self.zero_variance.mean()),
            "unique_sids": float(np.mean(unique)),
            "duplicate_share": float(self.duplicate[self.is_expert].mean()) if self.is_expert.any() else 0.0,
        }


# -- policy members ---------------------------------------------------------------------------------
@torch.no_grad()
def sample_sids(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    prompts: Sequence[Sequence[int]],
    n: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    semantic: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` trie-constrained samples per prompt: (len(prompts), n, D) int64, every row a real SID.

    ``semantic``: one sentence vector per prompt for a semantic-prompt model (gen/semantic.py)."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use group_mode='beams' for greedy members)")
    depth, device, b = tokenizer.sid_depth, next(model.parameters()).device, len(prompts)
    ids, attn = left_pad(prompts, tokenizer.pad_id, device)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    res = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=pos,
        use_cache=True,
        logits_to_keep=1,
        **semantic_tensor(model, semantic),
    )
    cache = result_cache(res)
    rows = torch.arange(b, device=device).repeat_interleave(n)
    cache.reorder_cache(rows)  # prompt prefilled once, its cache copied to the n samples
    logits = res.logits[:, -1, :].index_select(0, rows)
    attn, next_pos = attn.index_select(0, rows), pos[:, -1:].index_select(0, rows) + 1
    tables = trie.tables(tokenizer.sid_vocab_sizes[:depth])  # the dense child tables beam search uses
    prefixes, prefix_ids = np.zeros((b * n, 0), dtype=np.int64), np.zeros(b * n, dtype=np.int64)
    for t in range(depth):
        size, offset = tokenizer.sid_vocab_sizes[t], int(tokenizer.sid_offsets[t])
        allowed = torch.from_numpy(tables.allowed(t, prefix_ids)).to(device)
        logp = logits.float()[:, offset : offset + size] - torch.logsumexp(logits.float(), dim=-1, keepdim=True)
        step = (logp / temperature).masked_fill(~allowed, float("-inf"))
        dead = ~allowed.any(-1)  # an inconsistent trie only; keep the maths finite
        step[dead] = 0.0
        code = torch.multinomial(torch.softmax(step, dim=-1), 1, generator=generator)
        codes = code.cpu().numpy()
        prefixes = np.concatenate([prefixes, codes], axis=1)
        prefix_ids = np.where(prefix_ids >= 0, tables.child[t][np.maximum(prefix_ids, 0), codes[:, 0]], -1)
        if t == depth - 1:
            break
        attn = torch.cat([attn, torch.ones((b * n, 1), dtype=attn.dtype, device=device)], dim=1)
        res = model(
            input_ids=code + offset,
            attention_mask=attn,
            position_ids=next_pos,
            use_cache=True,
            logits_to_keep=1,
            **{cache_keyword(model): cache},
        )
        cache = result_cache(res)
        logits, next_pos = res.logits[:, -1, :], next_pos + 1
    return prefixes.reshape(b, n, depth)


def beam_sids(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    prompts: Sequence[Sequence[int]],
    n: int,
    semantic: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` distinct beams per prompt, (B, n, D), and which slots hold a beam (a tiny trie may hold fewer)."""
    out = np.zeros((len(prompts), n, tokenizer.sid_depth), dtype=np.int64)
    ok = np.zeros((len(prompts), n), dtype=bool)
    for i, r in enumerate(
        beam_search(model, tokenizer, trie, prompts, n, batch_size=max(1, 256 // n), semantic=semantic)
    ):
        k = len(r)
        if k:
            out[i, :k], ok[i, :k] = r.sids, True
            out[i, k:] = r.sids[0]  # filler, inactive
    return out, ok


# -- experts ----------------------------------------------------------------------------------------
def draw_experts(
    req: RequestSids,
    taken: set[Sid],
    k: int,
    rng: np.random.Generator,
    *,
    reward_cfg: RewardConfig | None = None,
    duplicates: str = "redraw",
) -> Experts:
    """Up to ``k`` distinct expert SIDs from the request's clicked/exposed pool (see module docstring)."""
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, not {duplicates!r}")
    pool, weights = req.expert_pool(reward_cfg)
    if k <= 0 or not pool:
        return Experts([], [])
    weights = np.where(weights > 0, weights, 1e-9)

    def draw(cands: list[int], m: int) -> list[int]:
        m = min(m, len(cands))
        if m == 0:
            return []
        w = weights[cands]
        return [cands[i] for i in rng.choice(len(cands), size=m, replace=False, p=w / w.sum())]

    if duplicates == "keep":
        picked = draw(list(range(len(pool))), k)
    else:
        fresh = [i for i, s in enumerate(pool) if s not in taken]
        picked = draw(fresh, k)
        picked += draw([i for i, s in enumerate(pool) if s in taken], k - len(picked))  # pool ran out
    sids = [pool[i] for i in picked]
    return Experts(sids, [s in taken for s in sids])


# -- advantages -------------------------------------------------------------------------------------
def group_advantages(rewards: np.ndarray, active: np.ndarray | None = None, *, eps: float = 1e-4) -> Advantages:
    """(r - mean) / (std + eps) within each row over its active members; zero for inactive ones."""
    r = np.asarray(rewards, dtype=np.float64)
    act = np.ones_like(r, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    n = act.sum(axis=1, keepdims=True).clip(min=1)
    mean = np.where(act, r, 0.0).sum(axis=1, keepdims=True) / n
    std = np.sqrt(np.where(act, (r - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / n)
    zero = std[:, 0] <= 1e-9
    adv = np.where(act & ~zero[:, None], (r - mean) / (std + eps), 0.0)
    return Advantages(adv, zero)


def build_groups(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    prompts: Sequence[Sequence[int]],
    requests: Sequence[RequestSids],
    *,
    group_size: int = 8,
    experts: int = 2,
    mode: str = "sample",
    temperature: float = 1.0,
    duplicates: str = "redraw",
    reward_cfg: RewardConfig | None = None,
    ranker: RankerReward | None = None,
    request_ids: Sequence[int] | None = None,
    rng: np.random.Generator | None = None,
    generator: torch.Generator | None = None,
    eps: float = 1e-4,
    semantic: np.ndarray | None = None,
) -> Groups:
    """G policy members (``mode``) + K experts per prompt, rewarded, with group-normalised advantages."""
    if mode not in MODES:
        raise ValueError(f"group mode must be one of {MODES}, not {mode!r}")
    if len(prompts) != len(requests):
        raise ValueError(f"{len(prompts)} prompts but {len(requests)} requests")
    rng = rng or np.random.default_rng(0)
    reward_cfg = reward_cfg or RewardConfig()
    b, g, k, depth = len(prompts), group_size, experts, tokenizer.sid_depth
    if mode == "sample":
        pol = sample_sids(
            model, tokenizer, trie, prompts, g, temperature=temperature, generator=generator, semantic=semantic
        )
        pol_ok = np.ones((b, g), bool)
    else:
        pol, pol_ok = beam_sids(model, tokenizer, trie, prompts, g, semantic)
    sids = np.concatenate([pol, np.repeat(pol[:, :1], k, axis=1)], axis=1)  # expert slots start as inactive filler
    active = np.concatenate([pol_ok, np.zeros((b, k), bool)], axis=1)
    is_expert = np.zeros((b, g + k), bool)
    is_expert[:, g:] = True
    dup = np.zeros((b, g + k), bool)
    for i, req in enumerate(requests):
        taken = {tuple(int(c) for c in s) for s, ok in zip(pol[i], pol_ok[i]) if ok}
        ex = draw_experts(req, taken, k, rng, reward_cfg=reward_cfg, duplicates=duplicates)
        for j, (sid, d) in enumerate(zip(ex.sids, ex.duplicate)):
            sids[i, g + j] = np.asarray(sid, dtype=np.int64).reshape(depth)
            dup[i, g + j] = d
            active[i, g + j] = duplicates == "keep" or not d
    ids = list(request_ids) if request_ids is not None else [-1] * b
    r = (
        np.stack(
            [
                rewards(
                    sids[i], requests[i], reward_cfg, valid=trie.__contains__, ranker=ranker, request_id=int(ids[i])
                )
                for i in range(b)
            ]
        )
        if b
        else np.zeros((0, g + k))
    )
    adv = group_advantages(r, active, eps=eps)
    return Groups(sids, r, adv.values, is_expert, dup, active, adv.zero_variance)
