"""Decoding with the clusters' centroids: the generator's beam search, nudged toward the trie nodes
whose items lie near the query in the encoder's space.

Every node of the SID trie (a prefix c_1..c_t) stands for the items whose SID starts with it; its
*centroid* is the normalised mean of their sentence vectors (the vectors the embed stage made, the
ones the SIDs were fitted on). At each level a beam's children are scored by the cosine between the
query's sentence vector and the child's centroid, and that joins the generator's log-probabilities as
a product of experts, like gen/sid_prior.py does with the tokenizer's residual codebooks:

    score(c_1..c_D) = sum_t [ log p_gen(c_t | prefix) + weight * log softmax_c(cos(q, m(prefix, c)) / temperature) ]

(m = a child node's centroid; the softmax runs over the children the trie allows.)
``weight = 0`` is the generator alone, exactly; only SIDs in the trie are emitted either way. Ranking
the children by that cosine alone (no generator) is ``centroid_beam``, a training-free reference that
needs only one vector per trie node (not one per item, as a dense index does). Weight and temperature
are chosen on held-out *training* queries (benchmarks/bench_decode_prior.py), never the test queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genrecall.sid.trie import SidTrie


@dataclass(frozen=True)
class CentroidPriorConfig:
    """How much of the centroid prior joins the generator's scores (``eval_real.centroid_prior``)."""

    weight: float = 0.0  # 0 = the generator alone; chosen on held-out training queries (docs/BENCHMARKS.md)
    temperature: float = 0.05  # cosine units; MiniLM cosines of a query to sibling nodes differ by ~0.01-0.2

    def __post_init__(self) -> None:
        if self.weight < 0 or self.temperature <= 0:
            raise ValueError("centroid prior: weight must be >= 0 and temperature > 0")

    @property
    def enabled(self) -> bool:
        return self.weight > 0


@dataclass(frozen=True)
class NodeCentroids:
    """Per level t, the unit centroid of every trie node of length t+1, numbered as ``trie.tables``."""

    child: tuple[np.ndarray, ...]  # the trie's child tables (level t: (nodes of length t, size))
    centroids: tuple[np.ndarray, ...]  # level t: (nodes of length t+1, dim) float32, unit rows (0 if empty)

    @classmethod
    def fit(cls, trie: SidTrie, sizes: Sequence[int], item_sids: np.ndarray, item_vectors: np.ndarray) -> NodeCentroids:
        """Centroids of ``trie``'s nodes from the items' SIDs (n, D) and sentence vectors (n, dim)."""
        sids = np.asarray(item_sids, dtype=np.int64)
        x = np.asarray(item_vectors, dtype=np.float64)
        if len(sids) != len(x):
            raise ValueError(f"{len(sids)} item SIDs for {len(x)} item vectors")
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        tables = trie.tables(sizes)
        node = np.zeros(len(sids), dtype=np.int64)  # every item starts at the root
        out = []
        for t, table in enumerate(tables.child):
            ok = node >= 0
            ok[ok] = sids[ok, t] < table.shape[1]
            nxt = np.full(len(sids), -1, dtype=np.int64)
            nxt[ok] = table[node[ok], sids[ok, t]]  # -1 when an item's SID is not in the trie
            sums = np.zeros((int(table.max(initial=-1)) + 1, x.shape[1]))
            keep = nxt >= 0
            np.add.at(sums, nxt[keep], x[keep])
            sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
            out.append(sums.astype(np.float32))
            node = nxt
        return cls(tables.child, tuple(out))

    def scores(self, query_vectors: np.ndarray) -> list[np.ndarray]:
        """Per level, the cosine of every query to every node: (n queries, nodes of length t+1)."""
        q = np.asarray(query_vectors, dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        return [q @ c.T for c in self.centroids]


class CentroidPrior:
    """Per-prompt cosines to every trie node; `start` gives the state one beam search carries."""

    def __init__(
        self, child: Sequence[torch.Tensor], cosines: Sequence[torch.Tensor], cfg: CentroidPriorConfig
    ) -> None:
        self.child = list(child)
        self.cosines = list(cosines)
        self.cfg = cfg

    @classmethod
    def from_nodes(cls, nodes: NodeCentroids, query_vectors: np.ndarray, cfg: CentroidPriorConfig) -> CentroidPrior:
        """The prior of ``nodes`` for sentence vectors ``query_vectors`` (n, dim), one per prompt."""
        child = [torch.from_numpy(t) for t in nodes.child]
        return cls(child, [torch.from_numpy(s) for s in nodes.scores(query_vectors)], cfg)

    def __len__(self) -> int:
        return int(self.cosines[0].shape[0])

    def rows(self, lo: int, hi: int) -> CentroidPrior:
        """The prior of prompts ``lo:hi`` (beam search runs prompts in batches)."""
        return CentroidPrior(self.child, [s[lo:hi] for s in self.cosines], self.cfg)

    def start(self, device: torch.device) -> CentroidState:
        """The state of a fresh search: one beam per prompt, at the root."""
        n = len(self)
        return CentroidState(
            [c.to(device) for c in self.child],
            [s.to(device) for s in self.cosines],
            torch.zeros((n, 1), dtype=torch.long, device=device),
            self.cfg,
        )


@dataclass
class CentroidState:
    """The trie node of every live beam, (n prompts, k beams), through one beam search."""

    child: list[torch.Tensor]
    cosines: list[torch.Tensor]
    node: torch.Tensor
    cfg: CentroidPriorConfig

    def bonus(self, level: int, size: int) -> torch.Tensor:
        """``weight * log-prior`` over the level's first ``size`` codes, (n, k, size); 0 where no child."""
        n, k = self.node.shape
        nxt = self.child[level][self.node.clamp(min=0)][..., :size]  # (n, k, size)
        cos = self.cosines[level].gather(1, nxt.clamp(min=0).reshape(n, -1)).reshape(n, k, -1)
        logits = (cos / self.cfg.temperature).masked_fill(nxt < 0, float("-inf"))
        prior = torch.log_softmax(logits, dim=-1).nan_to_num(nan=0.0, neginf=0.0)  # no child: masked anyway
        bonus = self.cfg.weight * prior
        if bonus.shape[-1] < size:
            bonus = torch.nn.functional.pad(bonus, (0, size - bonus.shape[-1]))
        return bonus

    def advance(self, level: int, parent: torch.Tensor, code: torch.Tensor) -> None:
        """Follow the kept beams to their new nodes (-1 for a dead beam)."""
        table = self.child[level]
        prev = self.node.gather(1, parent)
        fits = (prev >= 0) & (code < table.shape[1])
        self.node = torch.where(fits, table[prev.clamp(min=0), code.clamp(max=table.shape[1] - 1)], -1)


def centroid_beam(
    nodes: NodeCentroids, query_vectors: np.ndarray, beam_size: int, *, batch_size: int = 64
) -> list[np.ndarray]:
    """Training-free reference: per query the top ``beam_size`` SIDs (n, D), beam over the trie by the
    cosine of each level's child centroids (the prior alone, as the generator's beam would run it)."""
    child = [torch.from_numpy(t) for t in nodes.child]
    out: list[np.ndarray] = []
    for lo in range(0, len(query_vectors), batch_size):
        cos = [torch.from_numpy(s) for s in nodes.scores(query_vectors[lo : lo + batch_size])]
        n = cos[0].shape[0]
        node = torch.zeros((n, 1), dtype=torch.long)
        score = torch.zeros((n, 1))
        codes = torch.zeros((n, 1, 0), dtype=torch.long)
        for t, table in enumerate(child):
            nxt = table[node.clamp(min=0)]  # (n, k, size)
            k, size = nxt.shape[1], nxt.shape[2]
            # rank by the child's own cosine (the last level's), which beat summing levels' cosines
            c = cos[t].gather(1, nxt.clamp(min=0).reshape(n, -1)).reshape(n, k, size)
            alive = (nxt >= 0) & torch.isfinite(score)[..., None]
            cand = c.masked_fill(~alive, float("-inf")).reshape(n, -1)
            top, idx = torch.sort(cand, dim=-1, descending=True, stable=True)
            top, idx = top[:, :beam_size], idx[:, :beam_size]
            parent, code = idx // size, idx % size
            node = nxt.reshape(n, -1).gather(1, idx)
            codes = torch.cat([codes.gather(1, parent[..., None].expand(-1, -1, t)), code[..., None]], dim=2)
            score = top
        for i in range(n):
            keep = torch.isfinite(score[i]).numpy()
            out.append(codes[i].numpy()[keep].copy())
    return out
