"""The embed stage: ITEMS + REQUESTS -> item and query embeddings, through the embedding cache.

Writes to ``out_dir``:

- ``item_ids.npy`` (int64, sorted) and ``items.npy`` (float32, row-aligned);
- ``queries.parquet`` (one column ``query``: the distinct queries, sorted) and ``queries.npy``;
- ``embed.json``: encoder name, dimension, counts and how many texts the cache already held.

A rerun encodes only texts that are new or changed (the cache lives in ``cache_dir``, outside
``out_dir`` so DVC can wipe outputs without losing it). ``load_embeddings`` reads the outputs back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genrecall.data.schema import ITEMS, REQUESTS, read_table
from genrecall.sid.encoder import EmbeddingCache, EncoderConfig, item_texts, make_encoder

EmbedConfig = EncoderConfig  # params.yaml namespace ``embed`` maps straight onto the encoder config


@dataclass
class EmbedResult:
    """What the stage wrote and how much the cache saved."""

    encoder: str
    dim: int
    items: int
    queries: int
    item_cache_hits: int
    item_encoded: int
    query_cache_hits: int
    query_encoded: int
    out_dir: str


@dataclass
class Embeddings:
    """The stage's outputs in memory: item vectors (sorted item_id order) and query vectors."""

    item_ids: np.ndarray  # (n,) int64
    items: np.ndarray  # (n, d) float32
    queries: list[str]  # (q,)
    query_vectors: np.ndarray  # (q, d) float32

    def item_rows(self, item_ids: np.ndarray) -> np.ndarray:
        """Row of each item id in ``items``; raises KeyError for an item that was not embedded."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.item_ids, ids), 0, max(len(self.item_ids) - 1, 0))
        if len(ids) and (len(self.item_ids) == 0 or not np.all(self.item_ids[pos] == ids)):
            missing = ids[self.item_ids[pos] != ids] if len(self.item_ids) else ids
            raise KeyError(f"{len(missing)} item(s) have no embedding, e.g. {missing[:5].tolist()}")
        return pos

    def query_rows(self) -> dict[str, int]:
        return {q: i for i, q in enumerate(self.queries)}

    def vectors_of(self, queries: Iterable[str]) -> np.ndarray:
        """(len(queries), d) vectors of embedded queries; raises KeyError for a query that was not embedded."""
        rows = self.query_rows()
        return np.stack([self.query_vectors[rows[q]] for q in queries]).astype(np.float32, copy=False)


def distinct_queries(requests: pd.DataFrame) -> list[str]:
    """Sorted distinct non-empty queries of a REQUESTS frame."""
    return sorted({q for q in requests["query"].dropna().tolist() if q})


def embed(
    cfg: EmbedConfig,
    data_dir: str | Path,
    cache_dir: str | Path,
    out_dir: str | Path,
    *,
    show_progress: bool = True,
) -> EmbedResult:
    """Embed every item (or only listed ones, ``cfg.listed_only``) and every distinct query."""
    items = read_table(ITEMS, data_dir).sort_values("item_id", kind="stable").reset_index(drop=True)
    if cfg.listed_only:
        items = items[items["delisted_at"].isna()].reset_index(drop=True)
    requests_path = Path(data_dir) / REQUESTS.filename()
    queries = distinct_queries(read_table(REQUESTS, data_dir)) if requests_path.exists() else []

    encoder = make_encoder(cfg)
    cache = EmbeddingCache(cache_dir, encoder)
    item_vecs, item_stats = cache.encode(item_texts(items), show_progress=show_progress)
    query_vecs, query_stats = cache.encode(queries, show_progress=show_progress)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "item_ids.npy", items["item_id"].to_numpy(np.int64))
    np.save(out / "items.npy", item_vecs.astype(np.float32))
    pd.DataFrame({"query": pd.Series(queries, dtype="string")}).to_parquet(out / "queries.parquet", index=False)
    np.save(out / "queries.npy", query_vecs.astype(np.float32))
    result = EmbedResult(
        encoder=encoder.name,
        dim=encoder.dim,
        items=len(items),
        queries=len(queries),
        item_cache_hits=item_stats.hits,
        item_encoded=item_stats.encoded,
        query_cache_hits=query_stats.hits,
        query_encoded=query_stats.encoded,
        out_dir=str(out),
    )
    (out / "embed.json").write_text(json.dumps(asdict(result) | {"config": asdict(cfg)}, indent=2, default=list))
    return result


def load_embeddings(emb_dir: str | Path) -> Embeddings:
    """Read what ``embed`` wrote (no pickle anywhere)."""
    d = Path(emb_dir)
    queries = pd.read_parquet(d / "queries.parquet")["query"].astype(str).tolist()
    return Embeddings(
        item_ids=np.load(d / "item_ids.npy", allow_pickle=False),
        items=np.load(d / "items.npy", allow_pickle=False),
        queries=queries,
        query_vectors=np.load(d / "queries.npy", allow_pickle=False),
    )
