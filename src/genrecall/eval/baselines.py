"""The classic recall baselines a generator must beat: BM25 over titles and dense inner-product search.

Both take NumPy in and give NumPy out: ``fit(item_ids, ...)`` then ``search(queries, k)`` returns a
``SearchResult`` of (n, k) item ids (best first, padded with -1) and scores. Feed ``result.items`` to
``evaluate_ranked_items`` to get items@100 / items@1000, the same candidate budgets the generators
are judged on. ``remove`` is cheap on both; ``add`` is cheap for dense and re-indexes for BM25.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class SearchResult(NamedTuple):
    """Ranked candidates per query: ``items`` (n, k) int64 padded with -1, ``scores`` (n, k) float32."""

    items: np.ndarray
    scores: np.ndarray


def _empty_result(n: int, k: int) -> SearchResult:
    return SearchResult(np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32))


# -- BM25 ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BM25Config:
    """BM25 settings (params.yaml ``bm25``)."""

    k1: float = 1.5  # the usual Lucene/Robertson default; titles are short, so length norm matters little
    b: float = 0.75  # the usual default length normalisation
    method: str = "lucene"  # bm25s' default scoring variant (same as Elasticsearch/Lucene)
    stopwords: str | None = "en"  # drop English stopwords ("for", "with") that match half the catalog
    # Keep 1-character tokens: sizes ("s", "l") and digits are meaningful in product titles.
    token_pattern: str = r"(?u)\b\w+\b"
    # Stemming off: it needs an extra package (PyStemmer), and brand/model tokens ("cordless",
    # "18v", "airpods") are mangled by English stemmers; queries and titles share shop vocabulary.
    stemmer: str | None = None  # a PyStemmer language ("english") when installed and wanted


class BM25Retriever:
    """BM25 over item texts with the ``bm25s`` package; items with no matching term are not returned."""

    def __init__(self, config: BM25Config | None = None) -> None:
        self.config = config or BM25Config()
        self._ids = np.empty(0, dtype=np.int64)
        self._texts: list[str] = []
        self._alive = np.empty(0, dtype=bool)
        self._model: Any = None  # bm25s.BM25 once fitted
        self._stemmer: Any = None
        if self.config.stemmer:
            import Stemmer  # PyStemmer; only needed when stemming is asked for

            self._stemmer = Stemmer.Stemmer(self.config.stemmer)

    def _tokenize(self, texts: Sequence[str], *, ids: bool) -> Any:
        import bm25s

        return bm25s.tokenize(
            [t or "" for t in texts],
            lower=True,
            token_pattern=self.config.token_pattern,
            stopwords=self.config.stopwords,
            stemmer=self._stemmer,
            return_ids=ids,
            show_progress=False,
        )

    def fit(self, item_ids: np.ndarray | Sequence[int], texts: Sequence[str]) -> BM25Retriever:
        """Index ``texts[i]`` (title, brand, attributes) under ``item_ids[i]``."""
        import bm25s

        ids = np.asarray(item_ids, dtype=np.int64)
        if ids.shape != (len(texts),):
            raise ValueError(f"{ids.size} item ids for {len(texts)} texts")
        if np.unique(ids).size != ids.size:
            raise ValueError("item ids must be unique")
        self._ids, self._texts, self._alive = ids, list(texts), np.ones(ids.size, dtype=bool)
        self._model = None
        if ids.size:
            c = self.config
            self._model = bm25s.BM25(k1=c.k1, b=c.b, method=c.method)
            self._model.index(self._tokenize(self._texts, ids=True), show_progress=False)
        return self

    def __len__(self) -> int:
        return int(self._alive.sum())

    def remove(self, item_ids: np.ndarray | Sequence[int]) -> int:
        """Stop returning these items (a mask; IDF keeps counting them until the next fit/add)."""
        hit = np.isin(self._ids, np.asarray(item_ids, dtype=np.int64)) & self._alive
        self._alive &= ~hit
        return int(hit.sum())

    def add(self, item_ids: np.ndarray | Sequence[int], texts: Sequence[str]) -> int:
        """Add (or replace) items; bm25s has no incremental index, so this re-indexes the live corpus."""
        new = np.asarray(item_ids, dtype=np.int64)
        keep = self._alive & ~np.isin(self._ids, new)
        ids = np.concatenate([self._ids[keep], new])
        texts_all = [t for t, k in zip(self._texts, keep) if k] + list(texts)
        self.fit(ids, texts_all)
        return int(new.size)

    def search(self, queries: Sequence[str], k: int = 1000, *, batch_size: int = 512) -> SearchResult:
        """Top-``k`` items per query by BM25 score; fewer (padded with -1) when fewer items match."""
        from rich.progress import Progress

        n = len(queries)
        out = _empty_result(n, k)
        if self._model is None or n == 0 or k < 1 or not self._alive.any():
            return out
        kk = min(k, self._ids.size)
        mask = None if self._alive.all() else self._alive.astype(np.float32)
        with Progress(transient=True, disable=n <= batch_size) as prog:
            task = prog.add_task("bm25 search", total=n)
            for s in range(0, n, batch_size):
                e = min(s + batch_size, n)
                docs, scores = self._model.retrieve(
                    self._tokenize(queries[s:e], ids=False), k=kk, show_progress=False, weight_mask=mask
                )
                scores = np.asarray(scores, dtype=np.float32)
                matched = scores > 0  # zero score = no shared term; their order would be arbitrary
                out.items[s:e, :kk] = np.where(matched, self._ids[np.asarray(docs)], -1)
                out.scores[s:e, :kk] = np.where(matched, scores, -np.inf)
                prog.advance(task, e - s)
        return out


# -- dense --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DenseConfig:
    """Dense retrieval settings (params.yaml ``dense``)."""

    normalize: bool = True  # cosine similarity, the metric MiniLM sentence embeddings are trained for
    threads: int = 0  # faiss OpenMP threads; 0 leaves faiss' default (all cores)


class DenseRetriever:
    """Exact inner-product search (faiss ``IndexFlatIP`` in an ``IndexIDMap2``) over item embeddings."""

    def __init__(self, config: DenseConfig | None = None) -> None:
        self.config = config or DenseConfig()
        self._index: Any = None  # faiss.IndexIDMap2 once fitted
        self.dim: int | None = None

    def _prep(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {x.shape[1]}, the index holds {self.dim}")
        if self.config.normalize:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.where(norms > 0, norms, 1.0)
        return np.ascontiguousarray(x, dtype=np.float32)

    def fit(self, item_ids: np.ndarray | Sequence[int], embeddings: np.ndarray) -> DenseRetriever:
        """Index ``embeddings[i]`` (n, d) under ``item_ids[i]``."""
        import faiss

        if self.config.threads:
            faiss.omp_set_num_threads(self.config.threads)
        emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        self.dim = int(emb.shape[1])
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        self.add(item_ids, emb)
        return self

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def add(self, item_ids: np.ndarray | Sequence[int], embeddings: np.ndarray) -> int:
        """Add items (an id already present is replaced)."""
        if self._index is None:
            self.fit(item_ids, embeddings)
            return len(self)
        ids = np.asarray(item_ids, dtype=np.int64)
        x = self._prep(embeddings)
        if ids.shape != (x.shape[0],):
            raise ValueError(f"{ids.size} item ids for {x.shape[0]} vectors")
        if np.unique(ids).size != ids.size:
            raise ValueError("item ids must be unique")
        self.remove(ids)
        self._index.add_with_ids(x, ids)
        return int(ids.size)

    def remove(self, item_ids: np.ndarray | Sequence[int]) -> int:
        """Remove items by id; unknown ids are ignored."""
        import faiss

        if self._index is None:
            return 0
        ids = np.ascontiguousarray(np.asarray(item_ids, dtype=np.int64))
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids.size, faiss.swig_ptr(ids))))

    def search(self, query_embeddings: np.ndarray, k: int = 1000) -> SearchResult:
        """Top-``k`` items by inner product (cosine when normalised); padded with -1 past the catalog."""
        q = self._prep(query_embeddings)
        out = _empty_result(q.shape[0], k)
        if self._index is None or len(self) == 0 or k < 1:
            return out
        kk = min(k, len(self))
        scores, ids = self._index.search(q, kk)
        out.items[:, :kk] = ids
        out.scores[:, :kk] = np.where(ids >= 0, scores, -np.inf)
        return out
