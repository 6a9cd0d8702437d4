"""Embedding and frozen-tokenizer SID assignment over shards of the catalog, for a task runner.

The catalog (listed items, sorted by item_id) is cut into contiguous shards; each shard is embedded
through the embedding cache and assigned level codes by the frozen tokenizer, independently of the
others; the results are merged in shard order. So the output does not depend on how many workers ran
the shards, or where: ``flows/embed_assign.py`` maps these functions over shards as Prefect tasks on
the runner that ``ScaleConfig`` names (Prefect's local thread pool, or Dask through prefect-dask: a
LocalCluster on one machine, or the address of an existing cluster).

Functions take and return NumPy arrays and plain values, so they pickle cheaply to worker processes.
Each worker process loads the encoder and the tokenizer once and keeps them (``functools.cache``).
"""

from __future__ import annotations

import functools
import itertools
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrecall.sid.encoder import EmbeddingCache, EncoderConfig, TextEncoder, item_texts, make_encoder

RUNNERS = ("local", "dask")


@dataclass(frozen=True)
class ScaleConfig:
    """Where sharded work runs (params.yaml ``scale``); ``dist`` configures torchrun training."""

    runner: str = "local"  # "local": Prefect's ThreadPoolTaskRunner; "dask": prefect-dask's DaskTaskRunner
    shards: int = 8  # contiguous item shards; a few per worker so a slow shard does not idle the others
    max_workers: int = 2  # threads of the local runner (2 cores here)
    dask_address: str | None = None  # an existing scheduler, e.g. "tcp://scheduler:8786"; None = start one
    dask_cluster_class: str | None = (
        None  # None = distributed.LocalCluster; e.g. "dask_kubernetes.operator.KubeCluster"
    )
    dask_cluster: dict[str, Any] = field(default_factory=lambda: {"n_workers": 2, "threads_per_worker": 1})
    # ^ cluster kwargs: one single-threaded worker process per core (MiniLM and the hash encoder hold the GIL)
    dask_adapt: dict[str, Any] = field(default_factory=dict)  # e.g. {minimum: 2, maximum: 50}: adaptive scaling
    torch_threads: int = 1  # torch threads per task; workers x threads <= cores, or OpenMP threads spin
    dist: dict[str, Any] = field(default_factory=dict)  # genrecall.dist.DistConfig for `--nproc` training

    def __post_init__(self) -> None:
        if self.runner not in RUNNERS:
            raise ValueError(f"scale.runner must be one of {RUNNERS}, got {self.runner!r}")
        if self.shards < 1:
            raise ValueError("scale.shards must be >= 1")


@dataclass
class Catalog:
    """What a sharded run works on: listed items in item_id order, their texts and categories."""

    item_ids: np.ndarray  # (n,) int64, sorted
    texts: list[str]  # (n,) item_text of each item
    categories: np.ndarray  # (n,) float64 leaf category, NaN = unknown


@dataclass
class ShardedResult:
    """Merged outputs of a sharded run, row-aligned with ``item_ids``."""

    item_ids: np.ndarray  # (n,) int64
    vectors: np.ndarray  # (n, d) float32 embeddings
    codes: np.ndarray  # (n, L) int64 level codes from the frozen tokenizer
    shards: int
    runner: str
    seconds: float = 0.0


def load_catalog(data_dir: str | Path, *, limit: int | None = None) -> Catalog:
    """Listed items of ``data_dir`` (the first ``limit`` by item_id when given)."""
    from genrecall.pipeline.sid import categories_of, listed_items

    items = listed_items(data_dir)
    if limit is not None:
        items = items.iloc[:limit].reset_index(drop=True)
    return Catalog(items["item_id"].to_numpy(np.int64), item_texts(items), categories_of(items))


def shard_bounds(n: int, shards: int) -> list[slice]:
    """``shards`` contiguous row ranges covering ``range(n)`` in order (sizes differ by at most one)."""
    edges = np.linspace(0, n, min(max(shards, 1), max(n, 1)) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def merge(parts: list[np.ndarray]) -> np.ndarray:
    """Shard results concatenated in shard order."""
    return np.concatenate(parts) if parts else np.empty((0,))


class ShardCache(EmbeddingCache):
    """The embedding cache, safe for shards writing at once: every new part file carries a unique tag,
    so two workers never pick the same ``part-NNNNNN`` name. Reads see every part, as usual."""

    def _write(self, keys: list[str], vectors: np.ndarray, name: str) -> None:
        if name.startswith("part-") and name.endswith(".parquet") and name[5:-8].isdigit():
            name = f"{name[:-8]}-{uuid.uuid4().hex[:12]}.parquet"
        super()._write(keys, vectors, name)


@functools.cache
def _encoder(cfg: EncoderConfig) -> TextEncoder:
    return make_encoder(cfg)


@functools.cache
def _tokenizer(directory: str) -> Any:
    from genrecall.sid.tokenizer import SidTokenizer

    return SidTokenizer.load(directory)


def _threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


def embed_shard(
    texts: list[str], encoder: dict[str, Any] | EncoderConfig, cache_dir: str | None = None, *, torch_threads: int = 1
) -> np.ndarray:
    """(n, d) float32 vectors of ``texts``; through the cache in ``cache_dir`` when given."""
    _threads(torch_threads)
    cfg = encoder if isinstance(encoder, EncoderConfig) else _encoder_config(encoder)
    enc = _encoder(cfg)
    if cache_dir is None:
        return enc.encode(list(texts)).astype(np.float32)
    vectors, _ = ShardCache(cache_dir, enc).encode(list(texts))
    return vectors.astype(np.float32)


def assign_shard(
    vectors: np.ndarray, categories: np.ndarray, tokenizer_dir: str, *, torch_threads: int = 1
) -> np.ndarray:
    """(n, L) int64 level codes of one shard from the frozen tokenizer in ``tokenizer_dir``."""
    _threads(torch_threads)
    return _tokenizer(str(tokenizer_dir)).assign(np.asarray(vectors, dtype=np.float32), np.asarray(categories))


def _encoder_config(values: dict[str, Any]) -> EncoderConfig:
    from genrecall.config import from_dict

    return from_dict(EncoderConfig, values)


def make_task_runner(cfg: ScaleConfig) -> Any:
    """The Prefect task runner ``cfg`` names (a fresh instance per flow run)."""
    if cfg.runner == "local":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.max_workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(
        cluster_class=cfg.dask_cluster_class or "distributed.LocalCluster",
        cluster_kwargs=dict(cfg.dask_cluster),
        adapt_kwargs=dict(cfg.dask_adapt) or None,
    )


def save_result(result: ShardedResult, out_dir: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``item_ids.npy``, ``items.npy``, ``codes.npy`` and ``embed_assign.json`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "item_ids.npy", result.item_ids.astype(np.int64))
    np.save(out / "items.npy", result.vectors.astype(np.float32))
    np.save(out / "codes.npy", result.codes.astype(np.int64))
    meta = {
        "items": len(result.item_ids),
        "shards": result.shards,
        "runner": result.runner,
        "seconds": round(result.seconds, 3),
    } | (extra or {})
    (out / "embed_assign.json").write_text(json.dumps(meta, indent=2, default=str))
    return out
