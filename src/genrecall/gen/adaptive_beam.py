"""Adaptive beam: pick each request's beam from the generator's own confidence (the paper's 20/50/100).

The paper serves at a "dynamic" beam of 20, 50 or 100. Here the policy reads the first SID level's
distribution after the prefill (`lean_beam_search`'s ``choose`` hook; free: the prefill runs anyway):
the level-1 log-probabilities over the codes the trie allows, renormalised over those codes. Where the
model puts most of its mass on one level-1 code (in CQ-SID: one category) the beams spread within one
category and a small beam finds the target; where it hesitates between categories a larger beam keeps
each of them alive. So

    confidence = top-1 probability of the renormalised level-1 distribution
    beam       = tiers[i] for the first i with confidence >= thresholds[i], else tiers[-1]

then capped by the request's own ``beam_size`` (an upper bound: a client that asks for 20 never gets
100). ``tiers`` ascend and ``thresholds`` descend, one fewer than the tiers. The thresholds are
measured, not guessed: benchmarks/bench_adaptive_beam.py calibrates them on half of a test set and
reports recall and mean beam on the other half beside fixed beams (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AdaptiveBeam:
    """A confidence -> beam policy (``ServeConfig.adaptive_*`` builds it)."""

    tiers: tuple[int, ...] = (20, 50, 100)  # the paper's dynamic beams, smallest first
    thresholds: tuple[float, ...] = (0.9, 0.6)  # top-1 level-1 probability needed for each tier but the last

    def __post_init__(self) -> None:
        if not self.tiers or any(b < 1 for b in self.tiers) or list(self.tiers) != sorted(self.tiers):
            raise ValueError(f"adaptive beam tiers must be ascending positive integers, got {self.tiers}")
        if len(self.thresholds) != len(self.tiers) - 1:
            raise ValueError(f"{len(self.tiers)} tiers need {len(self.tiers) - 1} thresholds, got {self.thresholds}")
        if list(self.thresholds) != sorted(self.thresholds, reverse=True):
            raise ValueError(
                f"adaptive beam thresholds must descend (one per tier but the last), got {self.thresholds}"
            )

    def beams(self, confidence: np.ndarray) -> np.ndarray:
        """The beam for each confidence value (no cap)."""
        conf = np.asarray(confidence, dtype=np.float64)
        # the index of the first threshold met; none met -> the last tier
        met = conf[:, None] >= np.asarray(self.thresholds, dtype=np.float64)[None, :]
        first = np.where(met.any(axis=1), met.argmax(axis=1), len(self.thresholds))
        return np.asarray(self.tiers, dtype=np.int64)[first]

    def __call__(self, first_level: torch.Tensor, bounds: Sequence[int]) -> list[int]:
        """`lean_beam_search`'s ``choose``: beams from level-1 log-probs ``(n, size)``, capped by ``bounds``."""
        beams = self.beams(confidence(first_level))
        return [int(min(b, bound)) for b, bound in zip(beams, bounds)]


def confidence(first_level: torch.Tensor) -> np.ndarray:
    """Top-1 probability of each row's level-1 distribution renormalised over its allowed (finite) codes."""
    logp = first_level.float()
    if logp.shape[-1] == 0:
        return np.ones(logp.shape[0])
    norm = torch.log_softmax(logp, dim=-1)  # -inf columns stay at probability 0
    top = norm.max(dim=-1).values.exp()
    return np.nan_to_num(top.cpu().numpy().astype(np.float64), nan=1.0)  # a row with no allowed code: any beam


def calibrate(
    conf: np.ndarray,
    hits: np.ndarray,
    pairs: np.ndarray,
    tiers: Sequence[int],
    target: float,
    *,
    grid: int = 41,
) -> AdaptiveBeam:
    """The thresholds with the lowest mean beam whose recall reaches ``target``, from measured runs.

    ``conf`` (n,): each request's `confidence`; ``hits`` (n, len(tiers)): the relevant pairs each request
    finds at each tier's fixed beam; ``pairs`` (n,): its relevant pairs; recall = hits / pairs summed
    over requests. Candidate thresholds are ``grid`` quantiles of ``conf`` (plus 0 and above 1). Without a
    candidate that reaches ``target`` the policy always takes the largest tier."""
    tiers = tuple(int(t) for t in tiers)
    if hits.shape != (len(conf), len(tiers)):
        raise ValueError(f"hits must be (requests, tiers) = {(len(conf), len(tiers))}, got {hits.shape}")
    cands = np.unique(np.r_[np.quantile(conf, np.linspace(0, 1, grid)), 0.0, 1.0 + 1e-9])
    best: tuple[float, tuple[float, ...]] = (float(tiers[-1]) + 1, tuple([1.0 + 1e-9] * (len(tiers) - 1)))
    total = float(np.sum(pairs)) or 1.0
    for combo in _descending(cands, len(tiers) - 1):
        policy = AdaptiveBeam(tiers, combo)
        chosen = policy.beams(conf)
        column = np.searchsorted(np.asarray(tiers), chosen)
        recall = float(hits[np.arange(len(conf)), column].sum()) / total
        mean_beam = float(chosen.mean()) if len(chosen) else 0.0
        if recall >= target and mean_beam < best[0]:
            best = (mean_beam, combo)
    return AdaptiveBeam(tiers, best[1])


def _descending(values: np.ndarray, k: int) -> list[tuple[float, ...]]:
    """Every non-increasing k-tuple of ``values``."""
    if k == 0:
        return [()]
    out = []
    for i, v in enumerate(values):
        out += [(float(v), *rest) for rest in _descending(values[: i + 1], k - 1)]
    return out
