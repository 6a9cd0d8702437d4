"""Dense-teacher targets: pseudo-queries labelled with the clusters a sentence encoder finds for them.

A pseudo-query made from one title ("angle bracket") is, as a query, about every product near it in
meaning, not only about the product it was cut from. Labelling it with its source item's SID teaches
the generator a one-hot answer; labelling it with a cluster drawn from those *nearest in embedding
space* teaches "query meaning -> nearby clusters", which is what a generator must do for wording it
never saw, and what the ``cluster_oracle`` ceiling (eval/oracle.py) does with the test queries.

This is distillation of a dense retriever into the generator, in the spirit of "Distillation Enhanced
Generative Retrieval" (Li et al., 2024), here at cluster granularity and by sampling: for each
relabelled row, the teacher (exact inner product over the item vectors, faiss) retrieves ``top_items``
items, ranks their clusters by their best item's cosine (the oracle's order), keeps the first
``top_clusters`` and draws one target from the softmax of those cosines at ``temperature``. Rows stay
one target each, so training costs what it cost before. Everything is deterministic from ``seed``.
The teacher sees training text only: item titles and the pseudo-queries made from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrecall.gen.examples import SidDataset


@dataclass(frozen=True)
class TeacherConfig:
    """Which pseudo-query rows get a dense teacher's target, and how the teacher's choice is drawn."""

    share: float = 0.0  # of pseudo-query rows relabelled; 0 = off (each keeps its source item's SID)
    top_items: int = 200  # items the teacher retrieves per pseudo-query; ~40 clusters at ~5 items each
    top_clusters: int = 20  # clusters, in order of their best cosine, that the target is drawn from
    temperature: float = 0.02  # softmax over cosines: MiniLM neighbours differ by ~0.01-0.05 in cosine
    batch: int = 4096  # rows per faiss search (bounds the (batch, top_items) result and the BLAS tile)
    seed: int = 0  # fixes which rows are relabelled and each draw

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"teacher.share must be in [0, 1], got {self.share}")
        if self.top_items < 1 or self.top_clusters < 1:
            raise ValueError("teacher.top_items and teacher.top_clusters must be >= 1")
        if self.temperature <= 0:
            raise ValueError(f"teacher.temperature must be > 0, got {self.temperature}")

    @property
    def enabled(self) -> bool:
        return self.share > 0


@dataclass(frozen=True)
class TeacherLabels:
    """What the teacher did to a dataset: the relabelled copy and how often it kept the source SID."""

    dataset: SidDataset
    relabelled: int  # rows whose target was drawn from the teacher
    kept_own: int  # of those, rows whose draw was their source item's own SID anyway


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def nearest_items(queries: np.ndarray, items: np.ndarray, k: int, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` item rows by cosine for each query row: (cosines, rows), both (n, k), best first."""
    import faiss

    items = _unit(items)
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    k = min(k, len(items))
    sims, rows = [], []
    q = _unit(queries)
    for start in range(0, len(q), batch):
        d, i = index.search(q[start : start + batch], k)
        sims.append(d)
        rows.append(i)
    if not sims:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(sims), np.concatenate(rows).astype(np.int64)


def draw_clusters(
    sims: np.ndarray, rows: np.ndarray, item_cluster: np.ndarray, cfg: TeacherConfig, rng: np.random.Generator
) -> np.ndarray:
    """One cluster id per query: clusters of its retrieved items ranked by best cosine (first occurrence,
    as ``rows`` is best first), the first ``top_clusters`` kept, one drawn from softmax(cosine / T)."""
    out = np.empty(len(rows), dtype=np.int64)
    gumbel = rng.gumbel(size=(len(rows), cfg.top_clusters))
    for r in range(len(rows)):
        clusters = item_cluster[rows[r]]
        _, first = np.unique(clusters, return_index=True)
        first = np.sort(first)[: cfg.top_clusters]  # best-cosine order: rows[r] is sorted by cosine
        logits = sims[r, first] / cfg.temperature
        out[r] = clusters[first[int(np.argmax(logits + gumbel[r, : len(first)]))]]
    return out


def relabel_with_teacher(
    dataset: SidDataset,
    row_vectors: np.ndarray,
    item_vectors: np.ndarray,
    item_sids: np.ndarray,
    cfg: TeacherConfig,
) -> TeacherLabels:
    """A copy of ``dataset`` whose rows (a ``cfg.share`` of them) target a teacher-drawn cluster's SID.

    ``row_vectors`` are the rows' text vectors, ``item_vectors`` / ``item_sids`` ((m, d) / (m, D)) the
    catalog's, in one row order. ``kept_own`` counts relabelled rows whose draw equals their old target.
    """
    if len(row_vectors) != len(dataset):
        raise ValueError(f"{len(row_vectors)} vectors for {len(dataset)} rows")
    item_sids = np.asarray(item_sids, dtype=np.int64)
    if len(item_sids) != len(item_vectors):
        raise ValueError(f"{len(item_sids)} item SIDs for {len(item_vectors)} item vectors")
    rng = np.random.default_rng(cfg.seed)
    chosen = np.flatnonzero(rng.random(len(dataset)) < cfg.share)
    targets = dataset.targets.copy()
    if len(chosen) and len(item_sids):
        cluster_sids, item_cluster = np.unique(item_sids, axis=0, return_inverse=True)
        sims, rows = nearest_items(row_vectors[chosen], item_vectors, cfg.top_items, cfg.batch)
        drawn = draw_clusters(sims, rows, item_cluster.reshape(-1), cfg, rng)
        targets[chosen] = cluster_sids[drawn]
    kept = int(np.all(targets[chosen] == dataset.targets[chosen], axis=1).sum()) if len(chosen) else 0
    relabelled = SidDataset(dataset.prompts, targets, dataset.kind, dataset.sources, dataset.texts, dataset.vectors)
    return TeacherLabels(relabelled, len(chosen), kept)
