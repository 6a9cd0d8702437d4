"""``cluster_oracle``: the best candidate list a generator could produce with given SID clusters.

A generator can only return whole clusters, so cluster size caps its recall at N items. This
diagnostic orders a query's clusters by the best cosine between the query's sentence vector and any
of their items (dense retrieval at cluster granularity, which a perfect "query meaning -> nearby
clusters" generator would match), expands them in that order (items of a cluster in id order, as a
generator's list with no quality signal) and keeps the first N. It is reported beside the methods
as a ceiling, not as a method: it reads the test queries' item similarities, which no generator sees.
"""

from __future__ import annotations

import numpy as np


def cluster_oracle(
    query_vectors: np.ndarray, item_vectors: np.ndarray, item_ids: np.ndarray, item_sids: np.ndarray, n: int = 1000
) -> list[np.ndarray]:
    """First ``n`` items per query, clusters ordered by their best item cosine (see the module docstring)."""
    _, cluster = np.unique(np.asarray(item_sids), axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    k = int(cluster.max()) + 1 if len(cluster) else 0
    out = []
    for q in np.asarray(query_vectors, dtype=np.float32):
        best = np.full(k, -np.inf)
        np.maximum.at(best, cluster, item_vectors @ q)
        out.append(expand_clusters(best, cluster, item_ids, n))
    return out


def expand_clusters(score: np.ndarray, cluster: np.ndarray, item_ids: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` item ids when clusters are expanded whole in order of ``score`` (one per cluster,
    best first, ties by cluster number) and a cluster's items in id order; ``cluster`` labels the items."""
    item_ids = np.asarray(item_ids)
    rank = np.empty(len(score), dtype=np.int64)
    rank[np.argsort(-np.asarray(score), kind="stable")] = np.arange(len(score))
    by_id = np.argsort(item_ids, kind="stable")
    order = by_id[np.argsort(rank[cluster[by_id]], kind="stable")]  # cluster rank, then item id
    return item_ids[order[:n]].astype(np.int64)
