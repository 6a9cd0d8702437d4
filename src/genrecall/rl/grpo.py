"""EG-GRPO: group-relative policy optimisation with expert injection, after the paper (and GRPO,
DeepSeekMath 2024), for the UQ2SID generator.

Each step takes ``prompts_per_step`` logged requests, builds a group per request (`rl.group`: G policy
SIDs + K experts from the request's clicked/exposed SIDs), rewards every member from the log
(`rl.reward`), normalises advantages over the enlarged group and minimises, per SID token,

    -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)  +  beta_kl * k3(pi_ref || pi_theta)

with ratio = pi_theta / pi_old and k3 = exp(ref - logp) - (ref - logp) - 1 (Schulman's unbiased,
always-positive KL estimator, as in GRPO), averaged over the tokens of every active member (the
D tokens of a SID, the same log-probabilities beam search scores with: full-vocabulary softmax).

**The ratio of an injected expert.** Experts were not sampled from any policy, so there is no
behaviour probability to divide by. We use pi_old(expert) = the rollout policy's teacher-forced
probability of the expert SID, exactly as for sampled members: ratio = pi_theta / pi_old starts at 1,
a positive-advantage expert is pulled up like an on-policy sample (a reward-weighted SFT step on the
logged SID), and the clip bounds how far ``updates_per_batch`` > 1 inner steps may push towards it.
Dividing by the (tiny) probability the policy gives a SID it would not sample instead would make the
importance weight explode and a single expert dominate the batch. With ``updates_per_batch=1`` (the
default, on-policy) pi_old = pi_theta.detach() and every ratio is exactly 1.

K = 0 is plain GRPO. Rollouts use the trie (every member is a real SID); the reference for the KL is
a frozen copy of the starting (SFT) model.

Under ``torchrun`` (``genrecall train-rl --nproc N``) every process rolls out a contiguous slice of the
step's prompts (its own sampling seed), weights its token-mean loss by its share of the step's tokens
and averages gradients across processes (``genrecall.dist``): the same update as one process over
the whole step. ``prompts_per_step`` stays the global number; rank 0 alone writes.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import Qwen2ForCausalLM

from genrecall import dist
from genrecall.gen.beam import cache_keyword, left_pad, result_cache
from genrecall.gen.model import save_generator
from genrecall.gen.semantic import semantic_tensor
from genrecall.gen.sft import SFTConfig, epoch_order, make_optimizer
from genrecall.gen.tokenizer import GenTokenizer
from genrecall.rl.group import Groups, build_groups
from genrecall.rl.reward import RankerReward, RequestSids, RewardConfig
from genrecall.sid.trie import SidTrie

LOG_FIELDS: tuple[str, ...] = (
    "step",
    "reward_mean",
    "reward_std",
    "policy_reward_mean",
    "expert_reward_mean",
    "zero_variance_share",
    "unique_sids",
    "duplicate_share",
    "kl",
    "loss",
    "lr",
)


@dataclass(frozen=True)
class GRPOConfig:
    """One (EG-)GRPO run. Defaults follow the paper where it says, else GRPO practice, sized for a CPU."""

    group_size: int = 8  # paper: G = 8 sampled SIDs per request
    experts: int = 2  # paper: K = 2 injected expert SIDs; 0 = plain GRPO
    group_mode: str = "sample"  # "sample" (constrained sampling, as GRPO) | "beams" (top-G distinct beams)
    temperature: float = 1.0  # sampling temperature of the policy members; 1 = the policy as it is
    expert_duplicates: str = "redraw"  # "redraw": experts avoid SIDs the policy sampled | "keep" (flagged)
    clip_eps: float = 0.2  # PPO/GRPO clip range
    beta_kl: float = 0.04  # k3 KL to the SFT reference (DeepSeekMath GRPO: 0.04). Without it the small model drifted
    #                       to KL > 1e3 in 400 steps and lost up to a third of its hitrate@100 (docs/BENCHMARKS.md)
    track_kl: bool = True  # log the KL to the reference even when beta_kl = 0 (one extra no-grad forward)
    lr: float = 2e-5  # ~50x below the small model's SFT LR: RL refines a ranking, it does not retrain (1e-4 collapsed)
    betas: tuple[float, float] = (0.9, 0.95)  # as SFT
    weight_decay: float = 0.0  # RL steps are few; decay would only pull weights away from the SFT model
    warmup_steps: int = 10  # linear warm-up, then constant (GRPO practice)
    steps: int = 200  # optimizer rollouts; each sees prompts_per_step requests
    prompts_per_step: int = 16  # requests per rollout (x (G + K) members)
    updates_per_batch: int = 1  # GRPO's mu: gradient steps per rollout; 1 = on-policy (ratio 1, clip idle)
    grad_clip: float = 1.0  # global-norm clipping; 0 disables
    adv_eps: float = 1e-4  # advantage = (r - mean) / (std + adv_eps)
    seed: int = 0  # request order, expert draws and sampling
    log_every: int = 10  # steps between progress-bar updates
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default (1 on a busy shared CPU)
    device: str = "cpu"  # where the model lives; "cuda" with a GPU


@dataclass
class RLDataset:
    """UQ2SID prompts of logged requests and the SIDs behind their purchased/clicked/exposed lists."""

    prompts: list[list[int]]
    requests: list[RequestSids]
    request_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    vectors: np.ndarray | None = None  # (n, dim) sentence vectors of the queries, for a semantic-prompt model

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class GRPOResult:
    steps: int
    logs: list[dict[str, float]]  # one per step, keys LOG_FIELDS
    final_dir: Path | None = None
    log_csv: Path | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, float | None]:
        """Means over the run (and over its first/last tenth) of the logged values; None where never logged."""
        out: dict[str, float | None] = {"steps": self.steps, "seconds": round(self.seconds, 1)}
        tenth = max(1, len(self.logs) // 10)

        def mean(v: np.ndarray) -> float | None:
            return float(np.nanmean(v)) if np.isfinite(v).any() else None

        for key in LOG_FIELDS[1:]:
            vals = np.array([log[key] for log in self.logs], dtype=np.float64)
            if vals.size:
                out[key], out[f"{key}_first"], out[f"{key}_last"] = mean(vals), mean(vals[:tenth]), mean(vals[-tenth:])
        return out


def member_log_probs(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    prompts: Sequence[Sequence[int]],
    sids: np.ndarray,
    rows: np.ndarray,
    semantic: np.ndarray | None = None,
) -> torch.Tensor:
    """Per-token log-probs (N, D) of SIDs ``sids`` (N, D) after prompt ``prompts[rows[n]]``.

    Each prompt runs once; its KV cache is copied to its members (differentiable), and the D SID
    tokens are teacher-forced in one chunk. Full-vocabulary log-softmax, as beam search scores.
    """
    device, depth = next(model.parameters()).device, tokenizer.sid_depth
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
    idx = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(device)
    cache.reorder_cache(idx)
    tokens = torch.from_numpy(np.asarray(sids, dtype=np.int64) + tokenizer.sid_offsets[None, :depth]).to(device)
    n = tokens.shape[0]
    logits = res.logits[:, -1:, :].index_select(0, idx)  # predicts SID token 0
    if depth > 1:
        chunk_attn = torch.cat(
            [attn.index_select(0, idx), torch.ones((n, depth - 1), dtype=attn.dtype, device=device)], 1
        )
        chunk_pos = pos[:, -1:].index_select(0, idx) + 1 + torch.arange(depth - 1, device=device)[None, :]
        out = model(
            input_ids=tokens[:, :-1],
            attention_mask=chunk_attn,
            position_ids=chunk_pos,
            use_cache=True,
            **{cache_keyword(model): cache},
        )
        logits = torch.cat([logits, out.logits], dim=1)
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens[..., None]).squeeze(-1)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    beta_kl: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clipped surrogate (+ beta * k3 KL) averaged over tokens; returns (loss, mean k3 or None)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    surrogate = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    kl = None
    if ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1
    loss = surrogate.mean() + (beta_kl * kl.mean() if kl is not None and beta_kl else 0.0)
    return loss, (kl.mean().detach() if kl is not None else None)


@dataclass
class _GrpoRun:
    """What the steps of one ``train_grpo`` call share."""

    model: torch.nn.Module
    ref: torch.nn.Module | None  # frozen reference for the KL term (None: no KL)
    opt: torch.optim.Optimizer
    tokenizer: GenTokenizer
    trie: SidTrie
    data: RLDataset
    cfg: GRPOConfig
    ctx: dist.DistContext
    rng: np.random.Generator
    gen: torch.Generator
    reward_cfg: RewardConfig | None
    ranker: RankerReward | None


def train_grpo(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    data: RLDataset,
    cfg: GRPOConfig,
    out_dir: str | Path | None = None,
    *,
    reward_cfg: RewardConfig | None = None,
    ranker: RankerReward | None = None,
    reference: torch.nn.Module | None = None,
    show_progress: bool = True,
) -> GRPOResult:
    """Run ``cfg.steps`` rollouts + updates on ``model`` in place; save ``out_dir/final`` and ``log.csv``."""
    if len(data) == 0:
        raise ValueError("the RL dataset is empty")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    ctx = dist.context()  # world 1 (no process group) unless launched by torchrun
    if ctx.enabled and cfg.prompts_per_step < ctx.world_size:
        raise ValueError(f"prompts_per_step={cfg.prompts_per_step} < {ctx.world_size} processes")
    run = _new_run(model, tokenizer, trie, data, cfg, ctx, reference, reward_cfg, ranker)
    logs: list[dict[str, float]] = []
    start = time.perf_counter()
    with Progress(
        TextColumn(f"eg-grpo K={cfg.experts}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not (show_progress and ctx.is_main),
        transient=True,
    ) as bar:
        task = bar.add_task("rl", total=cfg.steps, info="")
        for step in range(cfg.steps):
            logs.append(_rl_step(run, step))
            if (step + 1) % max(1, cfg.log_every) == 0 or step + 1 == cfg.steps:
                recent = logs[-max(1, cfg.log_every) :]
                info = (
                    f"reward {np.mean([r['reward_mean'] for r in recent]):.3f} "
                    f"zero-var {np.mean([r['zero_variance_share'] for r in recent]):.2f}"
                )
                bar.update(task, completed=step + 1, info=info)
    model.eval()
    result = GRPOResult(cfg.steps, logs, seconds=time.perf_counter() - start)
    if out_dir is not None and ctx.is_main:
        out = Path(out_dir)
        # a generator is always a Qwen2 causal LM (gen.model.model_class); the trainer only needs a Module
        result.final_dir = save_generator(cast(Qwen2ForCausalLM, model), tokenizer, out / "final")
        state = {"stage": "eg_grpo", "steps": cfg.steps, "config": asdict(cfg), "summary": result.summary()}
        (out / "final" / "trainer_state.json").write_text(json.dumps(state, indent=2))
        result.log_csv = write_log_csv(out / "log.csv", logs)
    dist.barrier()
    return result


def _new_run(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    trie: SidTrie,
    data: RLDataset,
    cfg: GRPOConfig,
    ctx: dist.DistContext,
    reference: torch.nn.Module | None,
    reward_cfg: RewardConfig | None,
    ranker: RankerReward | None,
) -> _GrpoRun:
    """The model on its device with rank 0's weights, the frozen KL reference, the optimizer, seeded RNGs."""
    device = dist.resolve_device(cfg.device, ctx.local_rank)
    model.to(device)
    dist.broadcast_module(model)  # every rank starts from rank 0's weights
    ref = None
    if cfg.beta_kl > 0 or cfg.track_kl:
        ref = reference if reference is not None else copy.deepcopy(model)
        ref.eval().requires_grad_(False)
    opt = make_optimizer(model, SFTConfig(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay))
    seed = cfg.seed + 7919 * ctx.rank  # each rank samples its own groups; rank 0 = the single-process run
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    return _GrpoRun(model, ref, opt, tokenizer, trie, data, cfg, ctx, rng, gen, reward_cfg, ranker)


def _rl_step(run: _GrpoRun, step: int) -> dict[str, float]:
    """One step: this rank's prompts of the step, a group of rollouts each (with rewards and advantages),
    then the policy update; returns the step's log row (global means)."""
    cfg, data = run.cfg, run.data
    ids = data.request_ids if len(data.request_ids) == len(data) else np.arange(len(data))
    epoch, j = divmod(step, max(1, len(data) // cfg.prompts_per_step))
    step_idx = epoch_order(len(data), cfg.seed, epoch)[j * cfg.prompts_per_step : (j + 1) * cfg.prompts_per_step]
    idx = dist.shard(step_idx, run.ctx)  # this rank's prompts of the step (all of them in one process)
    prompts = [data.prompts[i] for i in idx]
    vectors = None if data.vectors is None else data.vectors[idx]
    run.model.eval()
    groups = build_groups(
        run.model,
        run.tokenizer,
        run.trie,
        prompts,
        [data.requests[i] for i in idx],
        group_size=cfg.group_size,
        experts=cfg.experts,
        mode=cfg.group_mode,
        temperature=cfg.temperature,
        duplicates=cfg.expert_duplicates,
        reward_cfg=run.reward_cfg,
        ranker=run.ranker,
        request_ids=ids[idx],
        rng=run.rng,
        generator=run.gen,
        eps=cfg.adv_eps,
        semantic=vectors,
    )
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
    for g in run.opt.param_groups:
        g["lr"] = lr
    loss, kl = _update(run.model, run.ref, run.opt, run.tokenizer, prompts, groups, cfg, vectors)
    stats = {k: dist.global_mean(v, len(idx), len(step_idx)) for k, v in groups.stats().items()}
    return {"step": step + 1, **stats, "kl": kl, "loss": loss, "lr": lr}


def _update(
    model: torch.nn.Module,
    ref: torch.nn.Module | None,
    opt: torch.optim.Optimizer,
    tokenizer: GenTokenizer,
    prompts: list[list[int]],
    groups: Groups,
    cfg: GRPOConfig,
    semantic: np.ndarray | None = None,
) -> tuple[float, float]:
    """``updates_per_batch`` clipped-surrogate steps on one batch of groups; returns (last loss, KL)."""
    b_idx, m_idx = np.nonzero(groups.active)
    sids = groups.sids[b_idx, m_idx]
    device = next(model.parameters()).device
    adv = torch.from_numpy(groups.advantages[b_idx, m_idx]).float().to(device)
    ref_logp = None
    if ref is not None:
        with torch.no_grad():
            ref_logp = member_log_probs(ref, tokenizer, prompts, sids, b_idx, semantic)
    n_tok = float(len(b_idx) * tokenizer.sid_depth)
    signal = dist.all_reduce_sum(torch.tensor([float(bool(adv.any())), n_tok], dtype=torch.float64))
    if not signal[0] and not cfg.beta_kl:  # every group (on every rank) has zero variance: no gradient at all
        return 0.0, _kl_only(
            model, tokenizer, prompts, sids, b_idx, ref_logp, semantic
        ) if ref_logp is not None else float("nan")
    w = dist.weight(int(n_tok), int(signal[1]))  # this rank's token-mean -> its share of the step's token-mean
    model.train()
    old, loss_v, kl_v = None, 0.0, float("nan")
    for _ in range(max(1, cfg.updates_per_batch)):
        logp = member_log_probs(model, tokenizer, prompts, sids, b_idx, semantic)
        old = logp.detach() if old is None else old
        loss, kl = grpo_loss(logp, old, adv, clip_eps=cfg.clip_eps, ref_logp=ref_logp, beta_kl=cfg.beta_kl)
        opt.zero_grad(set_to_none=True)
        (loss * w).backward()
        dist.average_gradients(model)  # by hand: member_log_probs runs the model twice per backward
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        loss_v = dist.global_mean(float(loss.detach()), int(n_tok), int(signal[1]))
        kl_v = dist.global_mean(float(kl), int(n_tok), int(signal[1])) if kl is not None else float("nan")
    return loss_v, kl_v


@torch.no_grad()
def _kl_only(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    prompts: list[list[int]],
    sids: np.ndarray,
    rows: np.ndarray,
    ref_logp: torch.Tensor,
    semantic: np.ndarray | None = None,
) -> float:
    d = ref_logp - member_log_probs(model, tokenizer, prompts, sids, rows, semantic)
    return float((torch.exp(d) - d - 1).mean())


def write_log_csv(path: str | Path, logs: Sequence[dict[str, float]], **extra: str) -> Path:
    """Step logs as CSV (for ``dvc plots``); ``extra`` adds constant columns such as variant=..."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*extra, *LOG_FIELDS])
        for log in logs:
            w.writerow(
                [*extra.values(), *(f"{log[k]:.6g}" if isinstance(log[k], float) else log[k] for k in LOG_FIELDS)]
            )
    return path
