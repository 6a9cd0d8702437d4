"""Recall metrics for generative retrieval: hitrate@B, truncated hitrate, beams-to-target, clk/exp/pvr.

The definitions are contracts (DESIGN.md sections 1 and 4); every value is a fraction in [0, 1].

- **hitrate@B**: the share of (request, target item) pairs whose target lies in the clusters of the
  request's top-B generated SIDs. Pairs are distinct per request; requests without targets add none.
- **truncated hitrate@B (N)**: expand the top-B SIDs to the union of their items, order it by item
  quality (descending), keep the first N, then the hitrate. Ties in quality are broken by the rank of
  the item's (first) SID, best beam first, then by item id ascending, so results are deterministic.
  Large clusters pay for their size: their items push the target past N.
- **beams-to-target**: the smallest B of the sweep whose truncated hitrate reaches a target (the
  paper: 0.9 x the best truncated hitrate of the RQ-VAE baseline anywhere in the sweep); None if never.
- **items@N**: hit within the first N items of a method's candidate list. For a generator that list
  is the truncated list; by default at the beam of the sweep that does best for that N (reported as
  ``items_beam``), or at a fixed ``items_beam``.
- **clk@k / exp@k**: hitrate@k against the request's clicked / exposed items. **pvr@k**: the share of
  a request's exposed items covered by its top-k SIDs, averaged over requests that have exposures.

Speed: SIDs are expanded once per request at the largest B (each distinct SID looked up once per
evaluation), every item keeps the rank of its first SID, and all beam sizes are read off that single
expansion with vectorised NumPy over chunks of requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from genrecall.eval.inputs import (
    GeneratorRun,
    ItemQuality,
    Sid,
    SidLookup,
    as_item_quality,
    as_sid_lookup,
    target_pairs,
)

__all__ = [
    "SWEEP",
    "EvalConfig",
    "GeneratorMetrics",
    "GeneratorRun",
    "ItemMetrics",
    "PairRanks",
    "PersonalizedMetrics",
    "as_item_quality",
    "as_sid_lookup",
    "beams_to_target",
    "evaluate_generator",
    "evaluate_ranked_items",
    "first_ranks",
    "personalized_metrics",
    "target_pairs",
]

SWEEP: tuple[int, ...] = (1, 2, 5, 10, 20, 30, 50, 65, 100, 160, 200)  # the paper's beam sweep
NOT_FOUND = np.iinfo(np.int64).max  # rank of a target no generated SID covers


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings (params.yaml ``evaluate``)."""

    beams: tuple[int, ...] = SWEEP  # paper's beam sweep for hitrate / truncated hitrate curves
    truncate_n: int = 1000  # paper: truncated hitrate keeps the first N=1000 items
    n_items: tuple[int, ...] = (100, 1000)  # candidate budgets shared by generators, BM25 and dense
    target_frac: float = 0.9  # paper: target = 0.9 x best truncated hitrate of the RQ-VAE baseline
    baseline: str = "rq_vae"  # the method whose curve sets the beams-to-target target
    report_beams: tuple[int, ...] = (1, 10, 100)  # hitrate@B keys written to metrics.json (contract)
    ks: tuple[int, ...] = (1, 10)  # clk@k / exp@k on the personalized set (paper Table 4)
    pvr_k: int = 10  # pvr@10 (paper Table 4)
    items_beam: int | None = None  # None: best beam of the sweep per N; an int fixes the beam
    chunk_requests: int = 256  # requests per vectorised chunk; bounds memory at 200 beams x big clusters


# -- results ------------------------------------------------------------------------------------
@dataclass
class GeneratorMetrics:
    """A generator's curves over the beam sweep and its candidate-budget hits."""

    beams: tuple[int, ...]
    hitrate: np.ndarray  # (len(beams),) click hitrate@B
    truncated: dict[int, np.ndarray]  # N -> (len(beams),) truncated hitrate@B with the first N items
    mean_items: np.ndarray  # (len(beams),) mean distinct items behind the top-B SIDs, per request
    items: dict[int, float]  # N -> items@N
    items_beam: dict[int, int]  # N -> the beam items@N was read at
    truncate_n: int  # the N of the main truncated curve (beams-to-target uses it)
    n_requests: int
    n_pairs: int

    def hitrate_at(self, b: int) -> float:
        return float(self.hitrate[self.beams.index(b)])

    def truncated_curve(self, n: int | None = None) -> np.ndarray:
        return self.truncated[self.truncate_n if n is None else n]

    def best_truncated(self) -> float:
        """The best truncated hitrate anywhere in the sweep (the baseline's sets the target)."""
        curve = self.truncated_curve()
        return float(curve.max()) if curve.size else 0.0

    def beams_to(self, target: float) -> int | None:
        return beams_to_target(self.truncated_curve(), target, beams=self.beams)

    def to_dict(self, report_beams: Sequence[int] = (1, 10, 100), target: float | None = None) -> dict[str, Any]:
        """The metrics.json entries of this generator (hitrate@B, items@N, beams_to_target)."""
        out: dict[str, Any] = {}
        for b in report_beams:
            if b in self.beams:
                out[f"hitrate@{b}"] = self.hitrate_at(b)
        for n, v in self.items.items():
            out[f"items@{n}"] = float(v)
        if target is not None:
            out["beams_to_target"] = self.beams_to(target)
        return out


@dataclass
class ItemMetrics:
    """items@N of a method that ranks items directly (BM25, dense)."""

    items: dict[int, float]  # N -> share of pairs whose target is within the first N items
    depth: int  # the longest ranked list seen; items@N with N > depth is capped by it
    n_requests: int
    n_pairs: int

    def to_dict(self) -> dict[str, Any]:
        return {f"items@{n}": float(v) for n, v in self.items.items()}


@dataclass
class PersonalizedMetrics:
    """clk@k, exp@k and pvr@k of a generator on the personalized test set."""

    clk: dict[int, float]
    exp: dict[int, float]
    pvr: float
    pvr_k: int
    n_requests: int

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"clk@{k}": float(v) for k, v in self.clk.items()}
        out.update({f"exp@{k}": float(v) for k, v in self.exp.items()})
        out[f"pvr@{self.pvr_k}"] = float(self.pvr)
        return out


class PairRanks(NamedTuple):
    """Distinct (request, target item) pairs, sorted by request then item, with their first SID rank."""

    request: np.ndarray  # int64 request index (position in the run)
    item: np.ndarray  # int64 target item id
    rank: np.ndarray  # int64 0-based rank of the first SID holding the item; NOT_FOUND if none


# -- the vectorised core ------------------------------------------------------------------------
@dataclass
class _Expansion:
    """Distinct (request, item) entries of a chunk, sorted by (request, item), with first SID rank."""

    req: np.ndarray  # int64, local request index within the chunk
    item: np.ndarray  # int64
    rank: np.ndarray  # int64, rank of the first SID that holds the item (0 = best beam)
    width: int  # key multiplier: item ids are < width


def _expand(sids: list[np.ndarray], expand: Callable[[Sid], np.ndarray], max_beams: int, extra_max: int) -> _Expansion:
    """Expand a chunk of requests' top-``max_beams`` SIDs to distinct (request, item, first rank)."""
    got: list[np.ndarray] = []
    per_req: list[int] = []
    for arr in sids:
        rows = arr[:max_beams].tolist()
        got.extend(expand(tuple(row)) for row in rows)
        per_req.append(len(rows))
    sizes = np.fromiter((g.size for g in got), dtype=np.int64, count=len(got))
    if not sizes.sum():
        e = np.empty(0, dtype=np.int64)
        return _Expansion(e, e, e, max(extra_max + 1, 1))
    item = np.concatenate(got).astype(np.int64, copy=False)
    if item.min() < 0:
        raise ValueError("item ids must be >= 0")
    n_sid = np.asarray(per_req, dtype=np.int64)
    sid_req = np.repeat(np.arange(len(sids), dtype=np.int64), n_sid)
    sid_rank = np.arange(sizes.size, dtype=np.int64) - np.repeat(np.cumsum(n_sid) - n_sid, n_sid)
    req, rank = np.repeat(sid_req, sizes), np.repeat(sid_rank, sizes)
    width = int(max(item.max(), extra_max)) + 1
    if len(sids) * width >= np.iinfo(np.int64).max:
        raise ValueError("item ids too large for the combined (request, item) key")
    # Entries arrive in (request, rank) order, so a stable sort on (request, item) keeps the best rank first.
    order = np.argsort(req * width + item, kind="stable")
    req, item, rank = req[order], item[order], rank[order]
    keep = np.ones(req.size, dtype=bool)
    keep[1:] = (req[1:] != req[:-1]) | (item[1:] != item[:-1])
    return _Expansion(req[keep], item[keep], rank[keep], width)


def _lookup_ranks(ex: _Expansion, pair_req: np.ndarray, pair_item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each pair: the entry index in ``ex`` (or -1) and the first SID rank (or NOT_FOUND)."""
    if ex.req.size == 0 or pair_req.size == 0:
        return np.full(pair_req.size, -1, dtype=np.int64), np.full(pair_req.size, NOT_FOUND, dtype=np.int64)
    keys = ex.req * ex.width + ex.item
    want = pair_req * ex.width + pair_item
    pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    found = keys[pos] == want
    return np.where(found, pos, -1), np.where(found, ex.rank[pos], NOT_FOUND)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, max(size, 1))]


def _progress(total: int, label: str, show: bool) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True, disable=not show
    )
    return prog, prog.add_task(label, total=total)


def first_ranks(
    run: GeneratorRun,
    index: SidLookup,
    targets: Sequence[Sequence[int]],
    *,
    max_beams: int | None = None,
    chunk_requests: int = 256,
    progress: bool = False,
) -> PairRanks:
    """Per distinct (request, target) pair: the rank of the first SID covering it.

    The rank is 0-based (0 = best beam); NOT_FOUND when none of the top ``max_beams`` SIDs (default:
    all) holds the target. A pair is a hit at beam B exactly when its rank < B.
    """
    _check_len(run, targets)
    expand = as_sid_lookup(index)
    pair_req, pair_item = target_pairs(targets)
    ranks = np.full(pair_req.size, NOT_FOUND, dtype=np.int64)
    prog, task = _progress(len(run), "first ranks", progress and len(run) > chunk_requests)
    bounds = np.searchsorted(pair_req, [s for s, _ in _chunks(len(run), chunk_requests)] + [len(run)])
    with prog:
        for i, (s, e) in enumerate(_chunks(len(run), chunk_requests)):
            lo, hi = bounds[i], bounds[i + 1]
            pi = pair_item[lo:hi]
            ex = _expand(run.sids[s:e], expand, max_beams or run.max_beams, int(pi.max()) if pi.size else 0)
            ranks[lo:hi] = _lookup_ranks(ex, pair_req[lo:hi] - s, pi)[1]
            prog.advance(task, e - s)
    return PairRanks(pair_req, pair_item, ranks)


def evaluate_generator(
    run: GeneratorRun,
    index: SidLookup,
    targets: Sequence[Sequence[int]],
    quality: ItemQuality,
    *,
    beams: Sequence[int] = SWEEP,
    n_items: Sequence[int] = (100, 1000),
    truncate_n: int = 1000,
    items_beam: int | None = None,
    chunk_requests: int = 256,
    progress: bool = True,
) -> GeneratorMetrics:
    """Hitrate@B, truncated hitrate@B (for ``truncate_n`` and each of ``n_items``) and items@N.

    ``index`` maps a SID to its items (an object with ``items(sid)``, a mapping or a callable);
    ``targets[r]`` are the target item ids of request r; ``quality`` scores items (a mapping
    item -> score or an array indexed by item id; unknown items score 0).
    """
    _check_len(run, targets)
    beams = _checked_beams(beams, items_beam)
    ns = tuple(sorted({int(truncate_n), *(int(n) for n in n_items)}))
    expand, score = as_sid_lookup(index), as_item_quality(quality)
    pair_req, pair_item = target_pairs(targets)
    hits = np.zeros(len(beams), dtype=np.int64)
    thits = np.zeros((len(ns), len(beams)), dtype=np.int64)
    n_cand = np.zeros(len(beams), dtype=np.int64)
    b_arr = np.asarray(beams, dtype=np.int64)
    chunks = _chunks(len(run), chunk_requests)
    bounds = np.searchsorted(pair_req, [s for s, _ in chunks] + [len(run)])
    prog, task = _progress(len(run), "evaluate", progress and len(run) > chunk_requests)
    with prog:
        for i, (s, e) in enumerate(chunks):
            lo, hi = bounds[i], bounds[i + 1]
            preq, pitem = pair_req[lo:hi] - s, pair_item[lo:hi]
            ex = _expand(run.sids[s:e], expand, max(beams), int(pitem.max()) if pitem.size else 0)
            entry, rank = _lookup_ranks(ex, preq, pitem)
            hits += np.searchsorted(np.sort(rank), b_arr, side="left")  # pairs with rank < B
            n_cand += np.searchsorted(np.sort(ex.rank), b_arr, side="left")
            if ex.req.size and preq.size:
                thits += _truncated_hits(ex, entry, rank, preq, score, beams, ns)
            prog.advance(task, e - s)
    n_pairs, n_req = int(pair_req.size), len(run)
    hr = hits / max(n_pairs, 1)
    trunc = {n: thits[k] / max(n_pairs, 1) for k, n in enumerate(ns)}
    items, items_at = {}, {}
    for n in n_items:
        curve = trunc[int(n)]
        j = beams.index(items_beam) if items_beam is not None else int(np.argmax(curve))
        items[int(n)], items_at[int(n)] = float(curve[j]), beams[j]
    return GeneratorMetrics(beams, hr, trunc, n_cand / max(n_req, 1), items, items_at, int(truncate_n), n_req, n_pairs)


def _checked_beams(beams: Sequence[int], items_beam: int | None) -> tuple[int, ...]:
    """The beam sweep as ints; it must increase, and hold ``items_beam`` when one is given."""
    beams = tuple(int(b) for b in beams)
    if not beams or any(b < 1 for b in beams) or list(beams) != sorted(set(beams)):
        raise ValueError(f"beams must be increasing positive ints, got {beams}")
    if items_beam is not None and items_beam not in beams:
        raise ValueError(f"items_beam={items_beam} is not in the sweep {beams}")
    return beams


def _truncated_hits(
    ex: _Expansion,
    entry: np.ndarray,
    rank: np.ndarray,
    preq: np.ndarray,
    score: Callable[[np.ndarray], np.ndarray],
    beams: tuple[int, ...],
    ns: tuple[int, ...],
) -> np.ndarray:
    """(len(ns), len(beams)) pairs of one chunk whose target is in the first N of its request's list
    at B beams, the list ordered by quality (desc), then SID rank, then item id."""
    bmax = max(beams)
    n_arr = np.asarray(ns, dtype=np.int64)
    thits = np.zeros((len(ns), len(beams)), dtype=np.int64)
    # One order per chunk: request, quality desc, SID rank, item id. ``ex`` is (request, item)
    # sorted and the sort is stable, so the item id tie-break comes for free. One int64 key
    # sorts ~10x faster than np.lexsort on a float key.
    q_rank = np.unique(-score(ex.item), return_inverse=True)[1].astype(np.int64).ravel()
    key = (ex.req * (int(q_rank.max()) + 1) + q_rank) * (bmax + 1) + ex.rank
    order = np.argsort(key, kind="stable")
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    o_rank = ex.rank[order]
    at = inv[np.maximum(entry, 0)]  # each pair's place in the ordered chunk
    seg_start = np.searchsorted(ex.req[order], preq)  # place of its request's first entry
    for j, b in enumerate(beams):
        cs = np.cumsum(o_rank < b)
        before = np.where(seg_start > 0, cs[np.maximum(seg_start - 1, 0)], 0)
        position = cs[at] - before  # 1-based place of the target in its truncated list
        ok = rank < b
        thits[:, j] += (ok[None, :] & (position[None, :] <= n_arr[:, None])).sum(axis=1)
    return thits


def beams_to_target(curve: np.ndarray | Sequence[float], target: float, *, beams: Sequence[int] = SWEEP) -> int | None:
    """The smallest B whose value on ``curve`` (aligned to ``beams``) reaches ``target``; else None."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.shape != (len(beams),):
        raise ValueError(f"curve has shape {curve.shape}, the sweep has {len(beams)} beams")
    reached = np.flatnonzero(curve >= target - 1e-12)  # tolerate float round-off at equality
    return int(beams[reached[0]]) if reached.size else None


def evaluate_ranked_items(
    ranked_items: np.ndarray | Sequence[Sequence[int]] | Sequence[np.ndarray],
    targets: Sequence[Sequence[int]],
    *,
    n_items: Sequence[int] = (100, 1000),
) -> ItemMetrics:
    """items@N of item lists ranked best first ((n, k) array padded with -1, or one list per request)."""
    if len(ranked_items) != len(targets):
        raise ValueError(f"{len(ranked_items)} ranked lists for {len(targets)} requests")
    pair_req, pair_item = target_pairs(targets)
    if isinstance(ranked_items, np.ndarray) and ranked_items.ndim == 2:
        rows = ranked_items.astype(np.int64, copy=False)
        ok = rows >= 0
        req, place = np.nonzero(ok)
        item, depth = rows[ok], int(ok.sum(axis=1).max(initial=0))
    else:
        lists = [np.asarray(x, dtype=np.int64).ravel() for x in ranked_items]
        lists = [x[x >= 0] for x in lists]  # drop -1 pads (they sit at the end of short lists)
        req = np.concatenate(
            [np.full(x.size, r, dtype=np.int64) for r, x in enumerate(lists)] or [np.empty(0, np.int64)]
        )
        place = np.concatenate([np.arange(x.size, dtype=np.int64) for x in lists] or [np.empty(0, np.int64)])
        item, depth = np.concatenate(lists or [np.empty(0, np.int64)]), max((x.size for x in lists), default=0)
    if item.size and item.min() < 0:
        raise ValueError("item ids must be >= 0")
    width = int(max(item.max(initial=0), pair_item.max(initial=0))) + 1
    ex = _Expansion(*_sorted_first(req.astype(np.int64), item, place.astype(np.int64)), width=width)
    pos = _lookup_ranks(ex, pair_req, pair_item)[1]  # 0-based place of each target in its list
    n_pairs = int(pair_req.size)
    res = {int(n): float((pos < n).sum() / max(n_pairs, 1)) for n in n_items}
    return ItemMetrics(res, depth, len(targets), n_pairs)


def _sorted_first(req: np.ndarray, item: np.ndarray, place: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by (request, item) and keep each pair's first (lowest ``place``) occurrence."""
    order = np.lexsort((place, item, req))
    req, item, place = req[order], item[order], place[order]
    keep = np.ones(req.size, dtype=bool)
    keep[1:] = (req[1:] != req[:-1]) | (item[1:] != item[:-1])
    return req[keep], item[keep], place[keep]


def personalized_metrics(
    run: GeneratorRun,
    index: SidLookup,
    clicked: Sequence[Sequence[int]],
    exposed: Sequence[Sequence[int]],
    *,
    ks: Sequence[int] = (1, 10),
    pvr_k: int = 10,
    chunk_requests: int = 256,
) -> PersonalizedMetrics:
    """clk@k and exp@k (pair hitrates with the top-k SIDs) and pvr@k (mean per-request exposure coverage)."""
    top = max(*ks, pvr_k)  # only the top SIDs matter: expand no further
    c_rank = first_ranks(run, index, clicked, max_beams=top, chunk_requests=chunk_requests).rank
    e_req, _, e_rank = first_ranks(run, index, exposed, max_beams=top, chunk_requests=chunk_requests)
    clk = {int(k): float((c_rank < k).sum() / max(c_rank.size, 1)) for k in ks}
    exp = {int(k): float((e_rank < k).sum() / max(e_rank.size, 1)) for k in ks}
    n = len(run)
    total = np.bincount(e_req, minlength=n)
    covered = np.bincount(e_req, weights=(e_rank < pvr_k).astype(np.float64), minlength=n)
    has = total > 0
    pvr = float((covered[has] / total[has]).mean()) if has.any() else 0.0
    return PersonalizedMetrics(clk, exp, pvr, int(pvr_k), n)


def _check_len(run: GeneratorRun, targets: Sequence[Any]) -> None:
    if len(run) != len(targets):
        raise ValueError(f"the run has {len(run)} requests but targets has {len(targets)}")
