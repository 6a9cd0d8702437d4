"""Supervised fine-tuning of the generator, one stage at a time: I2SID -> Q2SID -> UQ2SID.

The paper trains progressively: item text -> SID first (the model learns what the codes mean), then
query -> SID (search intent), then user + query -> SID (personalisation), each stage warm-started
from the previous checkpoint (`init_from`), before EG-GRPO. One trainer serves all three; an
`SFTConfig` per stage says how long and how fast.

The loss is cross-entropy on the target only: the SID tokens and the closing <eos>, never the prompt.
Batches are left-padded (as at decoding time), so the target sits in the last D+1 positions of every
row and the LM head runs on those positions alone.

Layout of ``out_dir``::

    checkpoints/step-0000200/  model.safetensors, optimizer.safetensors (AdamW moments + RNG),
                               trainer_state.json (step, schedule, loss history, config)
    final/                     config.json, model.safetensors, tokenizer.json, trainer_state.json
    loss.csv                   step, epoch, loss, lr

Nothing is pickled. Data order is a pure function of (seed, epoch) and the LR a pure function of the
step, so `resume=True` continues from the newest checkpoint and ends with the same weights as an
uninterrupted run.

Under ``torchrun`` (``genrecall train-sft --nproc N``) each process takes a contiguous slice of every
global batch and DDP all-reduces the gradients (``genrecall.dist``): the same global batches and the
same optimizer steps as one process, within float noise. Rank 0 alone writes checkpoints, loss.csv and
the final generator; ``batch_size`` stays the *global* batch.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file
from transformers import Qwen2ForCausalLM

from genrecall import dist
from genrecall.gen.examples import SidDataset
from genrecall.gen.model import save_generator
from genrecall.gen.semantic import is_semantic
from genrecall.gen.tokenizer import GenTokenizer

STAGES: tuple[str, ...] = ("i2sid", "q2sid", "uq2sid")  # the paper's progressive order


@dataclass(frozen=True)
class SFTConfig:
    """One SFT stage. Defaults suit the small from-scratch model on a CPU."""

    stage: str = "q2sid"  # one of STAGES; only names the run
    epochs: int = 3  # passes over the stage's examples (used when max_steps is None)
    max_steps: int | None = None  # optimizer steps; overrides epochs when set (0 = no training)
    batch_size: int = 64  # examples per step; fits the default model in CPU memory with room to spare
    lr: float = 1e-3  # peak LR for a small model from scratch; use ~1e-4 for a pretrained 0.5B
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    warmup_steps: int = 50  # linear warm-up; keeps Adam stable on freshly initialised SID embeddings
    weight_decay: float = 0.01  # on matrices only (not norms/biases), as in nanoGPT
    betas: tuple[float, float] = (0.9, 0.95)  # LM-training standard (nanoGPT, Qwen)
    grad_clip: float = 1.0  # global-norm clipping; 0 disables
    seed: int = 0  # data order and any dropout
    log_every: int = 20  # steps between progress-bar loss updates
    checkpoint_every: int = 500  # steps between resumable checkpoints; the last step always gets one
    keep_checkpoints: int = 2  # older checkpoints are deleted
    device: str = "cpu"  # "cpu" | "cuda" | "auto"; under torchrun CUDA ranks take cuda:<local rank>
    bf16: bool = False  # bf16 autocast on CUDA (ignored on CPU)
    # early stopping on a validation split carved from the stage's own examples (never the test set):
    # rows whose prompt text hashes into the first ``val_share`` are held out, so a held-out query is
    # unseen in training; training stops when the validation loss has not improved for ``patience``
    # evaluations, and the best weights are kept. 0 = off (train the full schedule).
    val_share: float = 0.0
    # rows of the earlier stages mixed into this one, as a share of its own rows (sampled from ``seed``):
    # a Q2SID stage on a few thousand logged queries otherwise forgets the I2SID map of the whole
    # catalog (measured on Home Depot; docs/BENCHMARKS.md). 0 = the paper's plain progressive order.
    replay: float = 0.0
    eval_every: int = 200  # optimizer steps between validation losses
    patience: int = 3  # evaluations without improvement before stopping
    num_threads: int = 0  # torch CPU threads for this process; 0 keeps torch's default. On a busy shared
    # CPU set 1: oversubscribed OpenMP threads spin, and 2 threads measured ~5x slower than 1 here


@dataclass
class SFTResult:
    stage: str
    final_dir: Path  # a generator directory (load with genrecall.gen.model.load_generator)
    steps: int
    losses: list[float] = field(default_factory=list)  # one per optimizer step, from step 1
    examples_seen: int = 0
    seconds: float = 0.0  # wall time of this call only
    examples_per_s: float = 0.0
    loss_csv: Path | None = None
    val_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss) when val_share > 0
    stopped_early: bool = False
    best_step: int | None = None


# -- batches and schedule -----------------------------------------------------------------------
def collate(dataset: SidDataset, indices: np.ndarray, tokenizer: GenTokenizer) -> dict[str, torch.Tensor]:
    """Left-padded prompt + SID tokens + <eos>; ``targets`` are the last D+1 tokens of every row."""
    seqs = [list(dataset.prompts[i]) + tokenizer.encode_target(dataset.targets[i]) for i in indices]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.tensor(s)
        mask[r, width - len(s) :] = 1
    n_target = tokenizer.sid_depth + 1
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        "targets": ids[:, -n_target:],
    }
    if dataset.vectors is not None:  # sentence vectors for a semantic-prompt model (gen/semantic.py)
        batch["semantic"] = torch.from_numpy(np.asarray(dataset.vectors[indices], dtype=np.float32))
    return batch


def target_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the SID tokens and <eos> of each row."""
    logits = target_logits(model, batch)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))


def target_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(rows, D + 1, vocab) float logits of the positions that predict each row's SID tokens and <eos>."""
    n_target = batch["targets"].shape[1]
    extra = {"semantic": batch["semantic"]} if "semantic" in batch and is_semantic(model) else {}
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
        logits_to_keep=n_target + 1,
        **extra,
    )
    return out.logits[:, :-1, :].float()  # position j predicts token j+1


def validation_split(dataset: SidDataset, share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): whole prompt texts go to validation by a hash of (seed, text)."""
    n = len(dataset)
    if share <= 0 or n < 2:
        return np.arange(n), np.empty(0, dtype=np.int64)
    keys = dataset.texts if len(dataset.texts) == n else [" ".join(map(str, p)) for p in dataset.prompts]
    cut = int(share * 2**32)
    held = np.array([zlib.crc32(f"{seed}\x00{k}".encode()) < cut for k in keys], dtype=bool)
    if held.all() or not held.any():
        return np.arange(n), np.empty(0, dtype=np.int64)
    return np.flatnonzero(~held), np.flatnonzero(held)


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, dataset: SidDataset, tokenizer: GenTokenizer, device: torch.device, batch_size: int = 256
) -> float:
    """Mean target loss over ``dataset`` (row-weighted), in eval mode."""
    was = model.training
    model.eval()
    total, rows = 0.0, 0
    for lo in range(0, len(dataset), batch_size):
        idx = np.arange(lo, min(lo + batch_size, len(dataset)))
        batch = {k: v.to(device) for k, v in collate(dataset, idx, tokenizer).items()}
        total += float(target_loss(model, batch)) * len(idx)
        rows += len(idx)
    model.train(was)
    return total / max(rows, 1)


def lr_at(step: int, total: int, cfg: SFTConfig) -> float:
    """LR for optimizer step ``step`` (0-based): linear warm-up, then cosine to lr * min_lr_ratio."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a pure function of (seed, epoch), so resume replays it."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).numpy()


def make_optimizer(model: torch.nn.Module, cfg: SFTConfig) -> torch.optim.AdamW:
    params = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), foreach=False)


# -- checkpoints ----------------------------------------------------------------------------------
def load_weights(model: torch.nn.Module, directory: str | Path) -> None:
    """Load ``model.safetensors`` from a checkpoint or generator dir into ``model`` (strict, tied-aware)."""
    state = load_file(str(Path(directory) / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise ValueError(f"{directory}: weights do not fit the model (missing {missing}, unexpected {unexpected})")


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(path))


def _save_checkpoint(
    model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, losses: list[float], cfg: SFTConfig, out_dir: Path
) -> Path:
    ckpt = out_dir / "checkpoints" / f"step-{step:07d}"
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save_weights(model, tmp / "model.safetensors")
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v.detach().contiguous().cpu() for i, st in sd["state"].items() for k, v in st.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    state = {"step": step, "stage": cfg.stage, "config": asdict(cfg), "param_groups": groups, "losses": losses}
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)  # a crash mid-write never leaves a half checkpoint under the real name
    old = sorted((out_dir / "checkpoints").glob("step-???????"))[: -max(1, cfg.keep_checkpoints)]
    for d in old:
        shutil.rmtree(d, ignore_errors=True)
    return ckpt


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = sorted((Path(out_dir) / "checkpoints").glob("step-???????"))
    return found[-1] if found else None


def _load_checkpoint(model: torch.nn.Module, opt: torch.optim.Optimizer, ckpt: Path) -> tuple[int, list[float]]:
    load_weights(model, ckpt)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in state["param_groups"]]
    opt.load_state_dict({"state": opt_state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(state["step"]), [float(x) for x in state["losses"]]


def _write_loss_csv(path: Path, losses: list[float], steps_per_epoch: int, total: int, cfg: SFTConfig) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "epoch", "loss", "lr"])
        for s, loss in enumerate(losses):
            w.writerow([s + 1, s // steps_per_epoch, f"{loss:.6f}", f"{lr_at(s, total, cfg):.6g}"])


# -- the trainer ----------------------------------------------------------------------------------
@dataclass
class _SftRun:
    """What the steps of one ``train_sft`` call share."""

    model: torch.nn.Module  # the module saved
    ddp_model: torch.nn.Module  # the module stepped (DDP-wrapped under torchrun)
    opt: torch.optim.Optimizer
    tokenizer: GenTokenizer
    dataset: SidDataset  # training rows (validation rows removed)
    cfg: SFTConfig
    ctx: dist.DistContext
    device: torch.device
    autocast: torch.autocast
    out_dir: Path
    steps_per_epoch: int
    total: int  # steps of the whole schedule
    end: int  # steps this call runs to


@dataclass
class _EarlyStopping:
    """Validation losses on the held-out rows and the best weights so far."""

    val_set: SidDataset
    patience: int
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (loss, step, weights)

    def evaluate(self, run: _SftRun, step: int) -> bool:
        """Record the validation loss after ``step``; True when ``patience`` evaluations brought no improvement."""
        self.losses.append((step, validation_loss(run.model, self.val_set, run.tokenizer, run.device)))
        if self.best is None or self.losses[-1][1] < self.best[0]:
            self.best = (self.losses[-1][1], step, {k: v.detach().clone() for k, v in run.model.state_dict().items()})
            return False
        return len(self.losses) - 1 - [s for s, _ in self.losses].index(self.best[1]) >= self.patience


def train_sft(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    dataset: SidDataset,
    cfg: SFTConfig,
    out_dir: str | Path,
    init_from: str | Path | None = None,
    resume: bool = False,
    *,
    stop_after: int | None = None,
    show_progress: bool = True,
    replay_from: list[SidDataset] | None = None,
) -> SFTResult:
    """Train ``model`` on ``dataset``; write checkpoints, the final generator and loss.csv under ``out_dir``.

    ``init_from``: a previous stage's final dir (or any checkpoint) to warm-start from (weights only).
    ``resume``: continue from the newest checkpoint in ``out_dir`` (optimizer, schedule, RNG, losses).
    ``stop_after``: leave after this many steps in this call (a checkpoint is written), e.g. to fit a
    time budget; call again with ``resume=True`` to finish.
    ``replay_from``: earlier stages' datasets; ``cfg.replay`` x this stage's *training* rows are drawn
    from them and trained on. They never enter the validation split: it scores this stage's own
    held-out rows only (rows the model memorised in an earlier stage would hide what this one learns).
    """
    if len(dataset) == 0:
        raise ValueError(f"stage {cfg.stage!r}: the dataset is empty")
    if dataset.targets.shape[1] != tokenizer.sid_depth:
        raise ValueError(f"targets have depth {dataset.targets.shape[1]}, tokenizer expects {tokenizer.sid_depth}")
    ctx = dist.context()  # world 1 (no process group) unless launched by torchrun
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device, init_from = _place_and_warm_start(model, cfg, ctx, init_from)
    train_rows, val_rows = validation_split(dataset, cfg.val_share, cfg.seed)
    early = _EarlyStopping(dataset.subset(val_rows), cfg.patience) if len(val_rows) else None
    if early is not None:
        dataset = dataset.subset(train_rows)
    dataset = with_replay(dataset, replay_from or [], cfg.replay, cfg.seed)
    opt = make_optimizer(model, cfg)
    step, losses = _resume_or_seed(model, opt, cfg, out_dir, resume)
    steps_per_epoch = math.ceil(len(dataset) / cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    end = total if stop_after is None else min(total, step + stop_after)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=(cfg.bf16 or ctx.bf16) and device.type == "cuda")
    ddp_model = dist.wrap(model, ctx)  # gradients all-reduced in backward; `model` stays the one saved
    run = _SftRun(
        model, ddp_model, opt, tokenizer, dataset, cfg, ctx, device, autocast, out_dir, steps_per_epoch, total, end
    )
    if early is not None and step == 0:  # the warm start itself is a candidate: a stage may only hurt
        early.evaluate(run, 0)
    result = _train_keeping_the_best(run, step, losses, early, show_progress)
    if ctx.is_main:  # rank 0 writes; the barrier keeps the others from reading a half-written stage
        _write_outputs(run, result, init_from)
    dist.barrier()
    return result


def _place_and_warm_start(
    model: torch.nn.Module, cfg: SFTConfig, ctx: dist.DistContext, init_from: str | Path | None
) -> tuple[torch.device, str | Path | None]:
    """Thread count, the model on its device, and rank 0's ``init_from`` weights loaded (returned, with the device)."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = dist.resolve_device(cfg.device, ctx.local_rank)
    model.to(device)
    init_from = dist.broadcast_object(init_from)  # rank 0's files: other ranks may have scratch out_dirs
    if init_from is not None:
        load_weights(model, init_from)
    return device, init_from


def _resume_or_seed(
    model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: SFTConfig, out_dir: Path, resume: bool
) -> tuple[int, list[float]]:
    """(step, losses) of the newest checkpoint when resuming (weights, optimizer and RNG restored), else
    (0, []) with torch seeded from ``cfg.seed``.

    A fresh start deletes the checkpoints an earlier run left in ``out_dir``: kept, they outnumber this
    run's (pruning by step would delete the new ones first) and a later ``resume`` would continue the
    earlier run instead of this one."""
    ckpt = dist.broadcast_object(latest_checkpoint(out_dir) if resume else None)
    if ckpt is not None:
        return _load_checkpoint(model, opt, ckpt)
    if dist.is_main():
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    dist.barrier()
    torch.manual_seed(cfg.seed)
    return 0, []


def _train_keeping_the_best(
    run: _SftRun, step: int, losses: list[float], early: _EarlyStopping | None, show_progress: bool
) -> SFTResult:
    """Train from ``step`` to ``run.end``, then go back to the best validated weights (if any), in eval mode."""
    run.model.train()
    start = time.perf_counter()
    step, seen, stopped = _train_loop(run, step, losses, early, show_progress)
    seconds = time.perf_counter() - start
    best = early.best if early is not None else None
    if best is not None and best[1] != step:
        run.model.load_state_dict(best[2])
    run.model.eval()
    return SFTResult(
        run.cfg.stage,
        run.out_dir / "final",
        step,
        losses,
        seen,
        seconds,
        seen / seconds if seconds > 0 else 0.0,
        run.out_dir / "loss.csv",
        early.losses if early is not None else [],
        stopped,
        best[1] if best is not None else None,
    )


def _train_loop(
    run: _SftRun, step: int, losses: list[float], early: _EarlyStopping | None, show_progress: bool
) -> tuple[int, int, bool]:
    """Optimizer steps from ``step`` to ``run.end`` (appending to ``losses``), with progress, checkpoints and
    early stopping; returns (step reached, examples seen, stopped early)."""
    cfg = run.cfg
    seen, stopped = 0, False
    with Progress(
        TextColumn(f"sft {cfg.stage}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not (show_progress and run.ctx.is_main),
        transient=True,
    ) as bar:
        task = bar.add_task("train", total=run.total, completed=step, info="")
        order, order_epoch = np.empty(0, dtype=np.int64), -1
        while step < run.end:
            epoch, j = divmod(step, run.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(len(run.dataset), cfg.seed, epoch), epoch
            idx = order[j * cfg.batch_size : (j + 1) * cfg.batch_size]  # the global batch
            losses.append(_train_step(run, idx, step))
            seen += len(idx)
            step += 1
            if step % max(1, cfg.log_every) == 0 or step == run.end:
                recent = losses[-max(1, cfg.log_every) :]
                bar.update(task, completed=step, info=f"loss {sum(recent) / len(recent):.4f}")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < run.end and run.ctx.is_main:
                _save_checkpoint(run.model, run.opt, step, losses, cfg, run.out_dir)
            due = step % max(1, cfg.eval_every) == 0 or step == run.end
            if early is not None and due and early.evaluate(run, step):
                stopped = True  # no improvement for `patience` evaluations: keep the best weights
                break
    return step, seen, stopped


def _train_step(run: _SftRun, idx: np.ndarray, step: int) -> float:
    """One optimizer step on the global batch ``idx`` (this rank takes its shard); the global mean loss."""
    ctx, opt = run.ctx, run.opt
    local = dist.shard(idx, ctx)
    w = dist.weight(len(local), len(idx), ctx)  # local mean -> share of the global mean
    if len(local) == 0:  # fewer rows than ranks: a zero-weight row keeps the collectives in step
        local, w = idx[:1], 0.0
    batch = {k: v.to(run.device) for k, v in collate(run.dataset, local, run.tokenizer).items()}
    for g in opt.param_groups:
        g["lr"] = lr_at(step, run.total, run.cfg)
    with run.autocast:
        loss = target_loss(run.ddp_model, batch)
    opt.zero_grad(set_to_none=True)
    (loss * w if ctx.enabled else loss).backward()
    if run.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    opt.step()
    return dist.global_mean(float(loss.detach()), len(local) if w else 0, len(idx))


def _write_outputs(run: _SftRun, result: SFTResult, init_from: str | Path | None) -> None:
    """Rank 0: the last checkpoint, loss.csv, val.csv, and (when the schedule is done) the final generator."""
    cfg, out_dir, step, losses = run.cfg, run.out_dir, result.steps, result.losses
    last = latest_checkpoint(out_dir)
    if last is None or last.name != f"step-{step:07d}":
        _save_checkpoint(run.model, run.opt, step, losses, cfg, out_dir)
    _write_loss_csv(out_dir / "loss.csv", losses, run.steps_per_epoch, run.total, cfg)
    if result.val_losses:
        with (out_dir / "val.csv").open("w", newline="") as f:
            csv.writer(f).writerows([("step", "val_loss"), *((s_, f"{v:.6f}") for s_, v in result.val_losses)])
    if step >= run.total or result.stopped_early:
        # a generator is always a Qwen2 causal LM (gen.model.model_class); the trainer only needs a Module
        save_generator(cast(Qwen2ForCausalLM, run.model), run.tokenizer, result.final_dir)
        state = {
            "stage": cfg.stage,
            "steps": step,
            "final_loss": losses[-1] if losses else None,
            "init_from": str(init_from) if init_from else None,
            "config": asdict(cfg),
            "world_size": run.ctx.world_size,
            "stopped_early": result.stopped_early,
            "best_step": result.best_step,
            "val_losses": result.val_losses,
        }
        (result.final_dir / "trainer_state.json").write_text(json.dumps(state, indent=2))


def train_progressive(
    model: torch.nn.Module,
    tokenizer: GenTokenizer,
    datasets: dict[str, SidDataset],
    configs: dict[str, SFTConfig],
    out_dir: str | Path,
    *,
    init_from: str | Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> dict[str, SFTResult]:
    """Run the stages of STAGES present in ``datasets`` in order, each warm-started from the last."""
    results: dict[str, SFTResult] = {}
    prev = init_from
    earlier: list[SidDataset] = []
    for stage in (s for s in STAGES if s in datasets):
        cfg = configs.get(stage, SFTConfig(stage=stage))
        results[stage] = train_sft(
            model,
            tokenizer,
            datasets[stage],
            cfg,
            Path(out_dir) / stage,
            init_from=prev,
            resume=resume,
            show_progress=show_progress,
            replay_from=earlier,
        )
        prev = results[stage].final_dir
        earlier.append(datasets[stage])
    return results


def with_replay(dataset: SidDataset, earlier: list[SidDataset], share: float, seed: int = 0) -> SidDataset:
    """``dataset`` plus ``share`` x its size rows drawn (without replacement) from the ``earlier`` stages."""
    if share <= 0 or not earlier:
        return dataset
    pool = SidDataset.concat(*earlier, kind="replay")
    n = min(len(pool), round(share * len(dataset)))
    rows = np.sort(np.random.default_rng(seed).choice(len(pool), size=n, replace=False))
    return SidDataset.concat(dataset, pool.subset(rows), kind=dataset.kind)
