"""The item tokenizer: fit an RQ-VAE on item embeddings, then assign level codes to any item.

One class, two methods (paper arXiv 2605.14434, section on CQ-SID):

- ``cq_sid``: level 1 is *forced* to the item's leaf-category code (one code per category; unknown
  or unseen category -> nearest level-1 code), and a bidirectional in-batch InfoNCE pulls an item's
  latent towards the latents of the queries that led to clicks/purchases on it. Queries are projected
  into the latent space by the *same* encoder MLP as items (both come from one text encoder), so the
  term needs no extra head. Items without a query are masked out of the term.
- ``rq_vae``: the TIGER-style baseline, both constraints off (unique IDs come later from a dedup
  suffix, see ``clusters.py``).

``fit`` trains; ``assign`` uses the frozen model (no training, cost proportional to the items given).
Under torchrun ``fit`` is data-parallel (``genrecall.dist``): k-means init on rank 0, broadcast; each
rank encodes a slice of every global batch; EMA statistics, InfoNCE negatives and gradients span the
global batch, so N processes fit the same model as one, within float noise.
The suffix position of a SID is not decided here but by ``clusters.py`` / ``SidIndex``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from safetensors.torch import load_file, save_file

from genrecall import dist
from genrecall.sid.rqvae import RQVAE, dead_after_steps

METHODS = ("cq_sid", "rq_vae")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SidTokenizerConfig:
    """RQ-VAE tokenizer settings; ``method`` picks CQ-SID or the TIGER baseline."""

    method: str = "cq_sid"  # "cq_sid" (the paper's method) or "rq_vae" (TIGER baseline)
    category_forcing: bool | None = None  # None = on for cq_sid, off for rq_vae (set for ablations)
    query_contrastive: bool | None = None  # None = on for cq_sid, off for rq_vae (set for ablations)
    codebook_sizes: tuple[int | str, ...] = ("auto", "auto", "auto")  # L=3 as in the paper; see resolve_codebook_sizes
    level1_spare: int = 0  # extra level-1 codes beyond the categories (0: the first token is exactly the category)
    hidden_dims: tuple[int, ...] = (256, 128)  # encoder MLP widths (decoder mirrors them); small enough for CPU
    latent_dim: int = 32  # RQ-VAE latent size; 32 is TIGER's choice
    epochs: int = 20  # passes over the catalog; the loss is flat by then on 20k items (~30 s per method on 1 core)
    batch_size: int = 128  # paper: batch 128 (also the InfoNCE negatives)
    lr: float = 1e-3  # Adam; the EMA codebooks need no learning rate
    weight_decay: float = 0.0  # none by default; the latent is regularised by commitment
    beta: float = 1.0  # paper: commitment weight beta = 1.0
    gamma: float = 0.001  # paper: InfoNCE weight gamma = 0.001
    tau: float = 0.1  # paper: InfoNCE temperature 0.1
    ema_decay: float = 0.99  # paper: EMA codebook decay 0.99
    dead_code_steps: int = (
        100  # restart a code unused this many steps (raised for big codebooks, capped at an epoch; rqvae.py)
    )
    kmeans_iters: int = 20  # Lloyd iterations for codebook init
    kmeans_sample: int = 20000  # items used for k-means init (all if fewer); bounds init cost on big catalogs
    target_items_per_sid: float = 4.0  # sizes "auto" levels so a full prefix holds about this many items
    min_level_size: int = 8  # smallest "auto" size of levels 2..L; 2 lets a large target_items_per_sid through
    seed: int = 0  # everything (init, batches, query sampling, restarts) derives from this

    @property
    def forcing(self) -> bool:
        return self.method == "cq_sid" if self.category_forcing is None else bool(self.category_forcing)

    @property
    def contrastive(self) -> bool:
        return self.method == "cq_sid" if self.query_contrastive is None else bool(self.query_contrastive)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if len(self.codebook_sizes) < 1:
            raise ValueError("codebook_sizes needs at least one level")


def resolve_codebook_sizes(cfg: SidTokenizerConfig, n_items: int, n_categories: int) -> tuple[int, ...]:
    """Turn ``"auto"`` entries into numbers for this catalog, so a SID holds ~``target_items_per_sid`` items.

    Level 1: #categories + spare (at least 2); with no categories, the level share of the SID count
    ``(n_items / target_items_per_sid) ** (1 / L)`` (<= 2048), so every level splits about equally.
    Deeper levels: the power of two (``min_level_size``..1024) that leaves about
    ``target_items_per_sid`` items per prefix.
    """
    sizes: list[int] = []
    spec = list(cfg.codebook_sizes)
    target = max(float(cfg.target_items_per_sid), 1e-9)
    if spec[0] == "auto":
        even = math.ceil((max(n_items, 1) / target) ** (1 / len(spec)))
        k1 = n_categories + cfg.level1_spare if n_categories else min(2048, even)
        sizes.append(max(2, k1))
    else:
        sizes.append(int(spec[0]))
    if cfg.forcing and sizes[0] < n_categories:
        raise ValueError(f"level-1 codebook ({sizes[0]}) must have one code per category ({n_categories})")
    deeper = len(spec) - 1
    per = (max(n_items, 1) / (sizes[0] * target)) ** (1 / max(deeper, 1))
    auto = int(min(1024, max(cfg.min_level_size, 2 ** math.ceil(math.log2(max(per, 1.0))))))
    sizes.extend(auto if s == "auto" else int(s) for s in spec[1:])
    return tuple(sizes)


@dataclass
class QueryPairs:
    """Which queries led to clicks/purchases on which item: rows index the item and query arrays."""

    item_index: np.ndarray  # (m,) int64 row in the item embedding array
    query_index: np.ndarray  # (m,) int64 row in the query embedding array


@dataclass
class FitReport:
    """What ``fit`` did: loss per epoch, codes restarted per level, items with queries, seconds."""

    method: str
    codebook_sizes: tuple[int, ...]
    epochs: int
    loss: list[float] = field(default_factory=list)
    recon: list[float] = field(default_factory=list)
    infonce: list[float] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)
    items_with_queries: int = 0
    seconds: float = 0.0


def info_nce(item_z: torch.Tensor, query_z: torch.Tensor, tau: float) -> torch.Tensor:
    """Bidirectional in-batch InfoNCE between row-aligned item and query latents (cosine / tau)."""
    a, b = F.normalize(item_z, dim=1), F.normalize(query_z, dim=1)
    logits = a @ b.T / tau
    target = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def query_info_nce(item_z: torch.Tensor, query_z: torch.Tensor, has_query: np.ndarray, tau: float) -> torch.Tensor:
    """The query term of one step: InfoNCE between this rank's batch items that have a query
    (``item_z[has_query]``) and ``query_z``, one drawn query latent per such item. Negatives span the
    global batch (latents gathered across ranks, with autograd); items without a query are neither
    anchors nor negatives, so they get no gradient from this term."""
    query_all = dist.gather_rows(query_z, grad=True)
    item_all = dist.gather_rows(item_z[torch.from_numpy(has_query)], grad=True)
    return info_nce(item_all, query_all, tau)


@dataclass
class QueryIndex:
    """Item -> its queries as CSR arrays (items without queries have an empty slice), plus the query embeddings."""

    offsets: np.ndarray  # (n + 1,) item i's queries are query_of[offsets[i] : offsets[i + 1]]
    query_of: np.ndarray  # row in ``queries`` per pair, grouped by item
    queries: torch.Tensor  # (q, d) query embeddings

    @classmethod
    def build(cls, pairs: QueryPairs, queries: np.ndarray, n_items: int) -> QueryIndex:
        order = np.argsort(pairs.item_index, kind="stable")
        return cls(
            offsets=np.concatenate([[0], np.cumsum(np.bincount(pairs.item_index, minlength=n_items))]),
            query_of=np.asarray(pairs.query_index, dtype=np.int64)[order],
            queries=torch.from_numpy(np.asarray(queries, dtype=np.float32)),
        )

    @property
    def items_with_queries(self) -> int:
        return int(np.sum(np.diff(self.offsets) > 0))

    def draw(self, batch: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        """Which ``batch`` items have a query, and one pair per such item drawn uniformly from its queries
        (a position in ``query_of``); None when fewer than 2 have one (InfoNCE needs an in-batch negative)."""
        counts = self.offsets[batch + 1] - self.offsets[batch]
        has = counts > 0
        if has.sum() < 2:
            return None
        return has, self.offsets[batch[has]] + (rng.random(int(has.sum())) * counts[has]).astype(np.int64)


class SidTokenizer:
    """``fit`` an RQ-VAE (CQ-SID or baseline) and ``assign`` level codes with the frozen model."""

    def __init__(self, cfg: SidTokenizerConfig | None = None) -> None:
        self.cfg = cfg or SidTokenizerConfig()
        self.model: RQVAE | None = None
        self.category_ids = np.empty(0, dtype=np.int64)  # category_ids[code] = category of level-1 code

    # -- helpers --------------------------------------------------------------------------------
    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        self._need_model()
        return self.model.codebook_sizes  # type: ignore[union-attr]

    def _need_model(self) -> None:
        if self.model is None:
            raise RuntimeError("tokenizer is not fitted: call fit() or SidTokenizer.load()")

    def category_code(self, categories: np.ndarray | None, n: int) -> np.ndarray:
        """The forced level-1 code per item (-1 = unknown or unseen category, or forcing off)."""
        if categories is None or not self.cfg.forcing:
            return np.full(n, -1, dtype=np.int64)
        cats = np.asarray(categories, dtype=np.float64)  # float so None/NaN mark unknown
        out = np.full(n, -1, dtype=np.int64)
        if len(self.category_ids) == 0:
            return out
        known = ~np.isnan(cats)
        ids = cats[known].astype(np.int64)
        pos = np.clip(np.searchsorted(self.category_ids, ids), 0, len(self.category_ids) - 1)
        hit = self.category_ids[pos] == ids  # category_ids is sorted (np.unique)
        out[np.flatnonzero(known)[hit]] = pos[hit]
        return out

    # -- fit --------------------------------------------------------------------------------------
    def fit(
        self,
        embeddings: np.ndarray,
        categories: np.ndarray | None = None,
        *,
        queries: np.ndarray | None = None,
        pairs: QueryPairs | None = None,
        show_progress: bool = False,
    ) -> FitReport:
        """Train on item ``embeddings`` (n, d); ``categories`` (n,) leaf ids, NaN/None = unknown;
        ``queries`` (q, d) query embeddings and ``pairs`` linking items to them (for the InfoNCE)."""
        cfg = self.cfg
        start = time.perf_counter()
        x_np = np.asarray(embeddings, dtype=np.float32)
        n = x_np.shape[0]
        if n == 0:
            raise ValueError("cannot fit a tokenizer on zero items")
        cats = None if categories is None else np.asarray(categories, dtype=np.float64)
        known = np.unique(cats[~np.isnan(cats)]).astype(np.int64) if cats is not None else np.empty(0, np.int64)
        sizes = resolve_codebook_sizes(cfg, n, len(known))  # the baseline gets the same level-1 size
        self.category_ids = known if cfg.forcing else np.empty(0, np.int64)
        forced = torch.from_numpy(self.category_code(cats, n))
        query_index = None  # item -> its queries, for the InfoNCE term (None: no term)
        if cfg.contrastive and cfg.gamma > 0 and queries is not None and pairs is not None and len(pairs.item_index):
            query_index = QueryIndex.build(pairs, queries, n)
        report = FitReport(
            cfg.method, sizes, cfg.epochs, items_with_queries=query_index.items_with_queries if query_index else 0
        )
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = self._new_model(x_np.shape[1], sizes, n)
        x = torch.from_numpy(x_np)
        self._init_codebooks(model, x, forced, rng, gen)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        model.train()
        steps = math.ceil(n / cfg.batch_size)
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task(f"fit {cfg.method}", total=cfg.epochs * steps)
            for _ in range(cfg.epochs):
                perm = rng.permutation(n)
                totals = np.zeros(3)  # loss, recon, infonce summed over the epoch's steps
                for step in range(steps):
                    batch = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]  # the global batch
                    totals += self._train_step(model, opt, x, forced, batch, query_index, rng, gen)
                    progress.advance(task)
                self._log_epoch(report, model, *(float(total) / steps for total in totals))
        model.eval()
        self.model = model
        report.restarts = [book.restarts for book in model.books]
        report.seconds = time.perf_counter() - start
        return report

    def _new_model(self, input_dim: int, sizes: tuple[int, ...], n: int) -> RQVAE:
        """A fresh RQ-VAE, its weights drawn from ``cfg.seed`` without touching the global torch RNG."""
        cfg = self.cfg
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            per_epoch = math.ceil(n / cfg.batch_size)
            dead = tuple(dead_after_steps(k, cfg.batch_size, cfg.dead_code_steps, per_epoch) for k in sizes)
            return RQVAE(
                input_dim,
                hidden_dims=cfg.hidden_dims,
                latent_dim=cfg.latent_dim,
                codebook_sizes=sizes,
                decay=cfg.ema_decay,
                dead_after=dead,
            )

    def _init_codebooks(
        self, model: RQVAE, x: torch.Tensor, forced: torch.Tensor, rng: np.random.Generator, gen: torch.Generator
    ) -> None:
        """k-means codebook init on a sample, on rank 0; its model and RNG state then go to every rank."""
        cfg = self.cfg
        sample = np.sort(rng.permutation(len(x))[: cfg.kmeans_sample])
        if dist.context().is_main:
            with torch.no_grad():
                model.init_codebooks(
                    model.encoder(x[sample]),
                    forced[sample] if cfg.forcing else None,
                    iters=cfg.kmeans_iters,
                    generator=gen,
                )
        dist.broadcast_module(model)  # rank 0's init (and weights) everywhere,
        gen.set_state(dist.broadcast_object(gen.get_state()))  # and its RNG, so restarts agree

    def _train_step(
        self,
        model: RQVAE,
        opt: torch.optim.Optimizer,
        x: torch.Tensor,
        forced: torch.Tensor,
        batch: np.ndarray,
        query_index: QueryIndex | None,
        rng: np.random.Generator,
        gen: torch.Generator,
    ) -> tuple[float, float, float]:
        """One optimiser step on the global ``batch`` (this rank encodes its slice); returns the global
        batch's (loss, reconstruction, InfoNCE) for the log."""
        cfg, ctx = self.cfg, dist.context()
        mine = dist.local_slice(len(batch), ctx)  # this rank's rows of it (all of it in one process)
        local = batch[mine]
        xb = x[local]
        out = model(xb, forced[local] if cfg.forcing else None, generator=gen)
        recon = F.mse_loss(out.recon, xb)
        part = recon + cfg.beta * out.commitment
        w = dist.weight(len(local), len(batch), ctx)
        loss = torch.nan_to_num(part) * w if ctx.enabled else part  # an empty slice is nan * 0
        nce_val = 0.0
        if query_index is not None and (drawn := query_index.draw(batch, rng)) is not None:
            has, pick = drawn  # one query per item with any, drawn uniformly from its queries
            local_has = has[mine]
            local_pick = pick[np.cumsum(has)[mine][local_has] - 1]
            query_z = model.encoder(query_index.queries[query_index.query_of[local_pick]])
            nce = query_info_nce(out.z, query_z, local_has, cfg.tau)
            loss = loss + cfg.gamma * nce
            nce_val = nce.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(model)
        opt.step()
        rec_val = dist.global_mean(recon.item(), len(local), len(batch))
        commitment = dist.global_mean(out.commitment.item(), len(local), len(batch))
        return rec_val + cfg.beta * commitment + cfg.gamma * nce_val, rec_val, nce_val

    def _log_epoch(self, report: FitReport, model: RQVAE, loss: float, recon: float, infonce: float) -> None:
        report.loss.append(loss)
        report.recon.append(recon)
        report.infonce.append(infonce)
        restarts = [book.restarts for book in model.books]
        log.info(
            "%s epoch %d: loss %.5f, dead codes restarted so far per level %s",
            self.cfg.method,
            len(report.loss),
            report.loss[-1],
            restarts,
        )

    # -- assign -----------------------------------------------------------------------------------
    def assign(self, embeddings: np.ndarray, categories: np.ndarray | None = None, *, chunk: int = 8192) -> np.ndarray:
        """Level codes (n, L) int64 for items, with the frozen model; known categories are forced."""
        self._need_model()
        x = np.asarray(embeddings, dtype=np.float32)
        forced = self.category_code(categories, len(x))
        out = np.empty((len(x), self.model.depth), dtype=np.int64)  # type: ignore[union-attr]
        for s in range(0, len(x), chunk):
            f = torch.from_numpy(forced[s : s + chunk]) if self.cfg.forcing else None
            out[s : s + chunk] = self.model.codes(torch.from_numpy(x[s : s + chunk]), f).numpy()  # type: ignore[union-attr]
        return out

    def latents(self, embeddings: np.ndarray) -> np.ndarray:
        """Encoder latents z (n, latent_dim) for items or queries."""
        self._need_model()
        with torch.no_grad():
            return self.model.encoder(torch.from_numpy(np.asarray(embeddings, dtype=np.float32))).numpy()  # type: ignore[union-attr]

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (weights + codebooks) and ``tokenizer.json`` (config, sizes, categories)."""
        self._need_model()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}  # type: ignore[union-attr]
        save_file(state, str(directory / "model.safetensors"))
        meta = {
            "config": dataclasses.asdict(self.cfg),
            "input_dim": self.model.input_dim,  # type: ignore[union-attr]
            "codebook_sizes": list(self.model.codebook_sizes),  # type: ignore[union-attr]
            "category_ids": [int(c) for c in self.category_ids],
        }
        (directory / "tokenizer.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SidTokenizer:
        directory = Path(directory)
        meta = json.loads((directory / "tokenizer.json").read_text())
        conf = meta["config"]
        for key in ("codebook_sizes", "hidden_dims"):
            conf[key] = tuple(conf[key])
        tok = cls(SidTokenizerConfig(**conf))
        tok.model = RQVAE(
            meta["input_dim"],
            hidden_dims=tok.cfg.hidden_dims,
            latent_dim=tok.cfg.latent_dim,
            codebook_sizes=tuple(meta["codebook_sizes"]),
            decay=tok.cfg.ema_decay,
        )
        tok.model.load_state_dict(load_file(str(directory / "model.safetensors")))
        tok.model.eval()
        tok.category_ids = np.asarray(meta["category_ids"], dtype=np.int64)
        return tok
