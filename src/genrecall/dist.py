"""Data-parallel training across processes with ``torch.distributed`` (launched by ``torchrun``).

One process per device; every process holds the whole model and sees one contiguous slice of each
*global* batch. The global batch order is the single-process order (a pure function of the seed), and
each loss is weighted so the all-reduced gradient equals the gradient of the global-batch mean: N
processes take the same optimizer steps as one process, within float summation-order noise.

With no torchrun environment (``WORLD_SIZE`` unset or 1) nothing here creates a process group: every
helper is the identity and single-process runs behave exactly as before.

How a trainer adopts it (SFT in ``gen/sft.py``, the RQ-VAE in ``sid/tokenizer.py``)::

    ctx = dist.context()                                  # rank, world size, device
    ddp_model = dist.wrap(model, ctx)                     # DDP when world > 1, else the model itself
    local = dist.shard(global_idx, ctx)                   # this rank's contiguous slice
    loss = local_mean * dist.weight(len(local), len(global_idx), ctx)   # exact global mean gradient
    if ctx.is_main: save(...)                             # rank-0 checkpoints and logs
    dist.barrier()
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class DistConfig:
    """How to join a torchrun job (params.yaml ``scale.dist``)."""

    backend: str = "auto"  # "auto": nccl when the device is CUDA, gloo on CPU (the only one that runs here)
    device: str = "auto"  # "auto": cuda:<local rank> when a GPU is present, else cpu
    dtype: str = "fp32"  # "bf16" turns on bf16 autocast on CUDA (ignored on CPU, where it is slower)
    timeout_s: int = 1800  # collective timeout; generous so a slow rank-0 checkpoint never kills the job

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"scale.dist.device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"scale.dist.dtype must be one of {DTYPES}, got {self.dtype!r}")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False

    @property
    def enabled(self) -> bool:
        """True when a process group with more than one process is live."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and outputs; the others only compute."""
        return self.rank == 0


_CFG = DistConfig()


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto|cpu|cuda`` (or an explicit ``cuda:1``) -> a device; CUDA ranks take their local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cuda")
    return torch.device(name)


def env_world_size() -> int:
    """The WORLD_SIZE torchrun exported, or 1."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init(cfg: DistConfig | None = None) -> DistContext:
    """Join the torchrun job described by the environment (idempotent); without one, do nothing."""
    global _CFG  # noqa: PLW0603 - the process group is process-wide state, and so is the config it was joined with
    _CFG = cfg or _CFG
    if env_world_size() > 1 and not tdist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(_CFG.device, local_rank)
        backend = _CFG.backend if _CFG.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        tdist.init_process_group(backend, timeout=datetime.timedelta(seconds=_CFG.timeout_s))
    return context()


def teardown() -> None:
    """Leave the process group (safe to call when there is none)."""
    if tdist.is_initialized():
        tdist.destroy_process_group()


def context() -> DistContext:
    """The current process's rank, world size and default device (world 1 without a process group)."""
    bf16 = _CFG.dtype == "bf16"
    if not (tdist.is_available() and tdist.is_initialized()):
        return DistContext(device=resolve_device(_CFG.device if _CFG.device != "auto" else "cpu"), bf16=bf16)
    local_rank = int(os.environ.get("LOCAL_RANK", tdist.get_rank()))
    device = resolve_device(_CFG.device, local_rank)
    if tdist.get_backend() == "gloo" and device.type == "cuda" and _CFG.device == "auto":
        device = torch.device("cpu")  # a gloo group started by hand (tests): stay on the CPU
    return DistContext(tdist.get_rank(), tdist.get_world_size(), local_rank, device, bf16)


def is_main() -> bool:
    return context().is_main


def barrier() -> None:
    if context().enabled:
        tdist.barrier()


# -- global batches -------------------------------------------------------------------------------
def local_slice(n: int, ctx: DistContext | None = None) -> slice:
    """This rank's contiguous part of ``n`` global rows (sizes differ by at most one; rank order = row order)."""
    ctx = ctx or context()
    if not ctx.enabled:
        return slice(0, n)
    base, extra = divmod(n, ctx.world_size)
    lo = ctx.rank * base + min(ctx.rank, extra)
    return slice(lo, lo + base + (ctx.rank < extra))


def shard(indices: np.ndarray, ctx: DistContext | None = None) -> np.ndarray:
    """This rank's contiguous slice of a global batch; the slices in rank order are the batch itself."""
    indices = np.asarray(indices)
    return indices[local_slice(len(indices), ctx)]


def weight(n_local: int, n_global: int, ctx: DistContext | None = None) -> float:
    """Factor on a rank's mean loss so DDP's gradient *average* equals the global-batch mean's gradient."""
    ctx = ctx or context()
    return n_local * ctx.world_size / max(n_global, 1) if ctx.enabled else 1.0


# -- collectives (identity without a process group) -------------------------------------------------
def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place and return it."""
    if context().enabled:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def global_mean(local_mean: float, n_local: int, n_global: int) -> float:
    """The global-batch mean of a per-row quantity whose local mean is ``local_mean`` (for logs)."""
    if not context().enabled:
        return float(local_mean)
    share = float(local_mean) * n_local / max(n_global, 1) if n_local else 0.0  # an empty slice adds nothing
    t = torch.tensor([share], dtype=torch.float64)
    return float(all_reduce_sum(t)[0])


def average_gradients(module: torch.nn.Module) -> None:
    """All-reduce and average every gradient: DDP's job, by hand, for loops that call collectives
    inside ``forward`` (the RQ-VAE's EMA update), where the DDP wrapper's hooks get in the way."""
    ctx = context()
    if not ctx.enabled:
        return
    for p in module.parameters():
        if p.grad is not None:
            tdist.all_reduce(p.grad, op=tdist.ReduceOp.SUM)
            p.grad.div_(ctx.world_size)


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of rank ``src`` to every rank (e.g. after a rank-0 k-means init)."""
    if context().enabled:
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                if t.dtype == torch.bool:  # gloo has no bool collectives: go through uint8
                    tmp = t.data.to(torch.uint8)
                    tdist.broadcast(tmp, src)
                    t.data.copy_(tmp.bool())
                else:
                    tdist.broadcast(t.data, src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s value of a small picklable object (a path, a step number) on every rank."""
    if not context().enabled:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src)
    return box[0]


def _counts(n: int) -> list[int]:
    t = torch.tensor([n], dtype=torch.long)
    out = [torch.zeros_like(t) for _ in range(context().world_size)]
    tdist.all_gather(out, t)
    return [int(c) for c in out]


def gather_rows(x: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
    """Rows of ``x`` from every rank, concatenated in rank order (= the global batch's row order).

    Slices may differ in length by one. ``grad=True`` keeps autograd through the gather: the backward
    sums every rank's gradient into the local rows, so a loss computed identically on all ranks
    (in-batch InfoNCE over the global batch) gets exactly its single-process gradient after averaging.
    """
    if not context().enabled:
        return x
    counts = _counts(x.shape[0])
    return _GatherRows.apply(x, counts) if grad else _gather(x.detach(), counts)


def _gather(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    pad = max(counts) - x.shape[0]
    padded = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x.contiguous()
    parts = [torch.empty_like(padded) for _ in counts]
    tdist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


class _GatherRows(torch.autograd.Function):
    """All-gather rows forward; backward sums the gradient over ranks and keeps this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, counts: list[int]) -> torch.Tensor:
        rank = tdist.get_rank()
        ctx.lo, ctx.hi = sum(counts[:rank]), sum(counts[: rank + 1])
        return _gather(x, counts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        tdist.all_reduce(grad, op=tdist.ReduceOp.SUM)
        return grad[ctx.lo : ctx.hi], None


def wrap(model: torch.nn.Module, ctx: DistContext | None = None) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when world > 1 (gradients all-reduced in backward), else ``model``.

    Keep a reference to the bare model for saving: the wrapper's state dict prefixes every key.
    """
    ctx = ctx or context()
    if not ctx.enabled:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
