"""The RQ-VAE behind CQ-SID: encoder MLP -> latent z -> L residual levels -> decoder MLP.

Each level is an ``EMACodebook``: codes move by an exponential moving average of the residuals
assigned to them (no codebook loss), are initialised by k-means, and a code left unused for too long
is *restarted* on a random current residual (logged, and counted in ``restarts``). The first level can
be *forced*: an item whose category is known takes its category's code instead of the nearest one,
and the residual is taken against that code (CQ-SID's category constraint). Gradients pass the
quantiser straight through. Under torchrun the EMA statistics and restart residuals are those of the
global batch (all-reduced / gathered through ``genrecall.dist``), so ranks stay identical.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrecall import dist

log = logging.getLogger(__name__)


def kmeans(x: torch.Tensor, k: int, *, iters: int = 20, generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain Lloyd k-means on ``x`` (n, d) -> centroids (k, d); empty clusters reseed on random points."""
    n = x.shape[0]
    if n == 0:
        return torch.randn(k, x.shape[1], generator=generator) * 1e-2
    pick = torch.randperm(n, generator=generator)[: min(k, n)]
    centroids = x[pick].clone()
    if k > n:  # fewer points than codes: the extra codes start near random points
        extra = x[torch.randint(n, (k - n,), generator=generator)]
        centroids = torch.cat([centroids, extra + 1e-3 * torch.randn(extra.shape, generator=generator)])
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            centroids[empty] = x[torch.randint(n, (int(empty.sum()),), generator=generator)]
    return centroids


class EMACodebook(nn.Module):
    """One level's codebook, updated by EMA with dead-code restart.

    A code is dead when no item picked it for ``dead_after`` consecutive training steps; it is then
    moved onto a random residual of the current batch. Codes in ``protected`` (the category codes of a
    forced level) are never restarted: their meaning is fixed by the category, not by usage.
    """

    embed: torch.Tensor  # (size, dim) the codes
    cluster_size: torch.Tensor  # (size,) EMA of items per code
    embed_sum: torch.Tensor  # (size, dim) EMA of the sum of residuals per code
    unused_steps: torch.Tensor  # (size,) steps since a code was last picked
    protected: torch.Tensor  # (size,) bool, never restarted

    def __init__(self, size: int, dim: int, *, decay: float = 0.99, dead_after: int = 100, eps: float = 1e-5) -> None:
        super().__init__()
        self.size, self.dim, self.decay, self.dead_after, self.eps = size, dim, decay, dead_after, eps
        self.register_buffer("embed", torch.randn(size, dim) * 1e-2)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("unused_steps", torch.zeros(size, dtype=torch.long))
        self.register_buffer("protected", torch.zeros(size, dtype=torch.bool))
        self.restarts = 0  # total codes restarted during training (not saved: a training statistic)

    def set_codes(self, codes: torch.Tensor) -> None:
        """Overwrite the codebook (k-means / category-mean init) and reset the EMA statistics."""
        self.embed.copy_(codes)
        self.cluster_size.fill_(1.0)
        self.embed_sum.copy_(codes)
        self.unused_steps.zero_()

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared L2) for each row of ``x``."""
        d2 = x.pow(2).sum(1, keepdim=True) - 2 * x @ self.embed.T + self.embed.pow(2).sum(1)[None]
        return d2.argmin(dim=1)

    @torch.no_grad()
    def update(self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None) -> int:
        """EMA step on residuals ``x`` assigned to codes ``idx``; returns how many codes were restarted."""
        onehot_counts = torch.bincount(idx, minlength=self.size).to(x.dtype)
        sums = torch.zeros_like(self.embed).index_add_(0, idx, x)
        dist.all_reduce_sum(onehot_counts)  # under torchrun: the statistics of the global batch,
        dist.all_reduce_sum(sums)  # so every rank moves its codes exactly as one process would
        self.cluster_size.mul_(self.decay).add_(onehot_counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total  # Laplace smoothing
        used = onehot_counts > 0
        # only codes picked in this step move; an unused code keeps its place (no slow drift to the
        # origin through the smoothing) until it is used again or restarted
        self.embed[used] = (self.embed_sum / smoothed[:, None])[used]
        self.unused_steps.add_(1).masked_fill_(used, 0)
        dead = (self.unused_steps >= self.dead_after) & ~self.protected
        n_dead = int(dead.sum())
        pool = dist.gather_rows(x) if n_dead else x  # every rank restarts on the same global residuals
        if n_dead and pool.shape[0]:
            pick = torch.randint(pool.shape[0], (n_dead,), generator=generator)
            self.embed[dead] = pool[pick]
            self.embed_sum[dead] = pool[pick]
            self.cluster_size[dead] = 1.0
            self.unused_steps[dead] = 0
            self.restarts += n_dead
            log.debug("restarted %d dead code(s) of a %d-code level on random residuals", n_dead, self.size)
        return n_dead


@dataclass
class RQVAEOutput:
    """One forward pass: reconstruction, latents, codes and the commitment loss."""

    recon: torch.Tensor  # (n, input_dim)
    z: torch.Tensor  # (n, latent_dim) encoder output before quantisation
    z_q: torch.Tensor  # (n, latent_dim) sum of the chosen codes (straight-through in training)
    codes: torch.Tensor  # (n, levels) int64
    commitment: torch.Tensor  # scalar: sum over levels of mean ||residual - sg(code)||^2
    restarts: list[int]  # codes restarted at each level in this step


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with SiLU in between (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """Encoder MLP -> residual quantiser with ``len(codebook_sizes)`` EMA levels -> decoder MLP."""

    def __init__(
        self,
        input_dim: int,
        *,
        hidden_dims: tuple[int, ...] = (256, 128),
        latent_dim: int = 32,
        codebook_sizes: tuple[int, ...] = (256, 32, 32),
        decay: float = 0.99,
        dead_after: tuple[int, ...] | int = 100,
    ) -> None:
        super().__init__()
        self.input_dim, self.latent_dim = input_dim, latent_dim
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        dead = (dead_after,) * len(self.codebook_sizes) if isinstance(dead_after, int) else tuple(dead_after)
        self.encoder = mlp([input_dim, *hidden_dims, latent_dim])
        self.decoder = mlp([latent_dim, *reversed(hidden_dims), input_dim])
        self.levels = nn.ModuleList(
            EMACodebook(k, latent_dim, decay=decay, dead_after=d) for k, d in zip(self.codebook_sizes, dead)
        )

    @property
    def depth(self) -> int:
        return len(self.levels)

    @property
    def books(self) -> list[EMACodebook]:
        """The level codebooks, typed (``self.levels`` is an ``nn.ModuleList``)."""
        return [book for book in self.levels if isinstance(book, EMACodebook)]

    def quantize(
        self,
        z: torch.Tensor,
        forced: torch.Tensor | None = None,
        *,
        update: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """Residual quantisation of ``z``; ``forced`` (n,) gives a level-1 code per row or -1 for nearest.

        Returns (z_q, codes, commitment, restarts). With ``update`` the EMA codebooks learn from the
        residuals (training only).
        """
        residual = z
        z_q = torch.zeros_like(z)
        codes, restarts = [], []
        commitment = z.new_zeros(())
        for level, book in enumerate(self.books):
            r = residual.detach()
            idx = book.nearest(r)
            if level == 0 and forced is not None:
                idx = torch.where(forced >= 0, forced, idx)
            q = book.embed[idx]
            commitment = commitment + F.mse_loss(residual, q.detach())
            restarts.append(book.update(r, idx, generator) if update else 0)
            q = book.embed[idx] if update else q  # codes moved by the EMA step: use the updated ones
            z_q = z_q + q
            residual = residual - q.detach()
            codes.append(idx)
        return z_q, torch.stack(codes, dim=1), commitment, restarts

    def forward(
        self, x: torch.Tensor, forced: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> RQVAEOutput:
        z = self.encoder(x)
        z_q, codes, commitment, restarts = self.quantize(z, forced, update=self.training, generator=generator)
        z_st = z + (z_q - z).detach()  # straight-through estimator
        return RQVAEOutput(self.decoder(z_st), z, z_q, codes, commitment, restarts)

    @torch.no_grad()
    def init_codebooks(
        self,
        z: torch.Tensor,
        forced: torch.Tensor | None = None,
        *,
        iters: int = 20,
        generator: torch.Generator | None = None,
    ) -> None:
        """k-means init level by level on the residuals of ``z``.

        With ``forced``, level-1 codes that some item is forced to start at the mean latent of their
        items (the category centroid) and are protected from restart; the other level-1 codes are
        k-means centroids of the unforced items (or of all items when every item is forced).
        """
        residual = z
        for level, book in enumerate(self.books):
            if level == 0 and forced is not None and bool((forced >= 0).any()):
                has = forced >= 0
                counts = torch.bincount(forced[has], minlength=book.size).to(z.dtype)
                sums = torch.zeros(book.size, z.shape[1]).index_add_(0, forced[has], residual[has])
                category_codes = counts > 0
                free_points = residual[~has] if bool((~has).sum() >= 1) else residual
                codes = kmeans(free_points, book.size, iters=iters, generator=generator)
                codes[category_codes] = sums[category_codes] / counts[category_codes, None]
                book.set_codes(codes)
                book.protected.copy_(category_codes)
                idx = torch.where(has, forced, book.nearest(residual))
            else:
                book.set_codes(kmeans(residual, book.size, iters=iters, generator=generator))
                idx = book.nearest(residual)
            residual = residual - book.embed[idx]

    @torch.no_grad()
    def codes(self, x: torch.Tensor, forced: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen assignment: (n, levels) codes for inputs ``x`` (no EMA update, no restart)."""
        was = self.training
        self.eval()
        try:
            return self.quantize(self.encoder(x), forced)[1]
        finally:
            self.train(was)


def dead_after_steps(
    codebook_size: int, batch_size: int, minimum: int = 100, steps_per_epoch: int | None = None
) -> int:
    """Steps a code may stay unused before restart: ``minimum``, raised to 8 batches' worth of draws
    under uniform use (a 2048-code level sees only 128 items a step, so 100 steps is too few), and
    capped at one epoch (a code that no item picked during a whole pass over the catalog is dead;
    on a small catalog ``minimum`` steps may be the whole training run)."""
    steps = max(minimum, 8 * math.ceil(codebook_size / max(batch_size, 1)))
    return min(steps, steps_per_epoch) if steps_per_epoch else steps
