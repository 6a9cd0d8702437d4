"""``sid_hybrid``: SIDs ranked by BM25 and dense retrieval at cluster granularity, fused (no training).

A training-free reference beside ``tokenizer_beam`` and ``centroid_beam`` (gen/centroid_prior.py), and
the one of the three that reads the query's *wording*. Every SID (one cluster of items) becomes

- one BM25 document: its items' texts joined (bm25s, through ``eval.baselines.BM25Retriever``), which
  matches brand names, model numbers and sizes the way BM25 over items does;
- one vector: the normalised mean of its items' sentence vectors, searched by inner product (faiss,
  through ``eval.baselines.DenseRetriever``), the meaning the way ``centroid_beam`` sees it.

A query ranks the SIDs both ways; the first ``depth`` of each are fused by reciprocal rank
(Cormack et al. 2009; ranx, through ``eval.fusion.rrf``) and the first ``k`` fused SIDs are the
answer, expanded to items like a generator's. It needs one document and one vector per SID, not per
item. Neither ranking nor the fusion has a tuned parameter (bm25s' and RRF's defaults). A generator's
SIDs can join the fusion as a third ranking (``search(..., generated=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genrecall.eval.baselines import BM25Retriever, DenseRetriever
from genrecall.eval.fusion import rrf


def cluster_centroids(cluster: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(clusters, dim) float64: the normalised mean of the unit vectors of each cluster's items
    (``cluster[i]`` numbers item i's cluster, 0..k-1)."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centres = np.zeros((int(cluster.max()) + 1 if len(cluster) else 0, x.shape[1]))
    np.add.at(centres, cluster, x)
    return centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class SidHybridConfig:
    """How many SIDs each ranking hands to the fusion, and the RRF constant."""

    depth: int = 1000  # SIDs per ranking before fusion: ~5x the ~200 SIDs a 1000-item budget takes
    rrf_k: int = 60  # Cormack et al.'s constant and ranx's default; not tuned

    def __post_init__(self) -> None:
        if self.depth < 1 or self.rrf_k < 1:
            raise ValueError("sid_hybrid: depth and rrf_k must be >= 1")


class SidHybrid:
    """``fit`` on the items' SIDs, texts and vectors; ``search`` gives each query its SIDs, best first."""

    def __init__(self, config: SidHybridConfig | None = None) -> None:
        self.config = config or SidHybridConfig()
        self.sids = np.empty((0, 0), dtype=np.int64)  # (clusters, depth): cluster c is SID sids[c]
        self._bm25 = BM25Retriever()
        self._dense = DenseRetriever()
        self._number: dict[tuple[int, ...], int] = {}  # SID -> its row of ``sids``

    def fit(self, item_sids: np.ndarray, item_texts: Sequence[str], item_vectors: np.ndarray) -> SidHybrid:
        """One document and one centroid per distinct SID row of ``item_sids`` (n, D)."""
        sids = np.asarray(item_sids, dtype=np.int64)
        if not len(sids) == len(item_texts) == len(item_vectors):
            raise ValueError(f"{len(sids)} item SIDs, {len(item_texts)} texts and {len(item_vectors)} vectors")
        self.sids, cluster = np.unique(sids, axis=0, return_inverse=True)
        cluster = cluster.reshape(-1)
        self._number = {tuple(row): c for c, row in enumerate(self.sids.tolist())}
        docs: list[list[str]] = [[] for _ in range(len(self.sids))]
        for c, text in zip(cluster.tolist(), item_texts):
            docs[c].append(str(text))
        ids = np.arange(len(self.sids))
        self._bm25.fit(ids, [" ".join(d) for d in docs])
        self._dense.fit(ids, cluster_centroids(cluster, item_vectors).astype(np.float32))
        return self

    def __len__(self) -> int:
        return len(self.sids)

    def search(
        self,
        queries: Sequence[str],
        query_vectors: np.ndarray,
        k: int,
        *,
        generated: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Per query its first ``k`` SIDs, (<= k, D) int64, best first (fewer when fewer match).

        ``generated``: per query a generator's SIDs (b, D), best first, fused as a third ranking (SIDs
        that are not one of the fitted clusters are skipped)."""
        if len(queries) != len(query_vectors) or (generated is not None and len(generated) != len(queries)):
            raise ValueError(f"{len(queries)} queries for {len(query_vectors)} vectors (and generated SIDs)")
        if not len(queries):
            return []
        depth = min(self.config.depth, len(self.sids))
        rankings = [
            [r[r >= 0] for r in self._bm25.search(list(queries), depth).items],
            [r[r >= 0] for r in self._dense.search(np.asarray(query_vectors), depth).items],
        ]
        if generated is not None:
            rankings.append([self.numbers(g)[:depth] for g in generated])
        fused = rrf(rankings, min(k, depth), self.config.rrf_k)
        return [self.sids[f] for f in fused]

    def numbers(self, sids: np.ndarray) -> np.ndarray:
        """The cluster numbers (rows of ``self.sids``) of SIDs (b, D), in order; unknown SIDs dropped."""
        found = (self._number.get(tuple(row), -1) for row in np.asarray(sids).tolist())
        return np.array([c for c in found if c >= 0], dtype=np.int64)
