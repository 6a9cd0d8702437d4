"""Adaptive beam vs fixed beams 20/50/100: recall and mean beam on the semantic test set, one run.

    python benchmarks/bench_adaptive_beam.py --tiny                      # builds the tests' tiny pipeline
    python benchmarks/bench_adaptive_beam.py --tiny --quick              # 200 test requests
    python benchmarks/bench_adaptive_beam.py --bundle BUNDLE_DIR_OR_TAG --data data/validated \
        --out reports/bench_adaptive_beam.json

The semantic test set as the evaluate stage builds it: requests of the last ``--test-days`` days with a
click, query only (Q2SID prompt; a semantic generator gets the query's sentence vector). Every request
is decoded with the lean decoder at each tier's fixed beam (one prompt per call, as a lone client);
its relevant pairs are the clicked items, and a pair is found at budget N when the item lies in the
first N items of the beams' SIDs ordered by item quality (``items@N``, the truncated metric; N =
``--n-items``). The policy (gen/adaptive_beam.py) is calibrated by cross-fitting: thresholds fitted
on one half of the requests (lowest mean beam with items@N >= (1 - ``--tolerance``) x fixed beam 50's
on that half) decide the other half, and the other way round, so no request is decided by thresholds
fitted on it. Reported: items@N, hitrate (SID of a clicked item among the beams) and mean beam for
fixed 20/50/100 and adaptive (upper bound 100), per-request decode time of each, and the thresholds
fitted on all requests (what ``serve.adaptive_thresholds`` would be set to; its row times the policy
running inside the decode loop). The cross-fitted row is the honest estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _test_set(data_dir: Path, test_days: int, n: int | None) -> pd.DataFrame:
    from genrecall.data.schema import REQUESTS, read_table
    from genrecall.data.split import time_split
    from genrecall.pipeline.evaluate import EvaluateConfig, sample_requests

    split = time_split(read_table(REQUESTS, data_dir), test_days)
    return sample_requests(split.test, known_users=False, cfg=EvaluateConfig(max_requests=n))


def _found(bundle: Any, sids: np.ndarray, targets: list[int], n_items: int) -> tuple[int, int]:
    """(pairs within the first ``n_items`` items by quality, pairs whose SID is among the beams)."""
    parts = [bundle.index.items(s) for s in sids]
    items = np.concatenate(parts) if parts else np.empty(0, np.int64)
    quality = bundle.items.quality[bundle.items.rows(items)]
    first = set(items[np.lexsort((items, -quality))[:n_items]].tolist())
    every = set(items.tolist())
    unique = set(targets)
    return sum(t in first for t in unique), sum(t in every for t in unique)


def _decode_all(ctx: dict[str, Any], beams: int, choose: Any = None) -> tuple[list[Any], list[int], float]:
    """Every prompt alone (as a lone client), returns (results, beams used, mean ms per request)."""
    from genrecall.gen.lean_beam import lean_beam_search

    results, used = [], []
    start = time.perf_counter()
    for i, p in enumerate(ctx["prompts"]):
        vec = None if ctx["vectors"] is None else ctx["vectors"][i : i + 1]
        out = lean_beam_search(ctx["decoder"], ctx["tok"], ctx["trie"], [p], beams, semantic=vec, choose=choose)
        results += out.results
        used += out.beam_sizes
    return results, used, (time.perf_counter() - start) * 1000 / max(len(ctx["prompts"]), 1)


def _summary(
    name: str, found: np.ndarray, sid_hits: np.ndarray, pairs: np.ndarray, beams: np.ndarray, ms: float
) -> dict[str, Any]:
    total = max(float(pairs.sum()), 1.0)
    return {
        "policy": name,
        "items@N": float(found.sum()) / total,
        "hitrate": float(sid_hits.sum()) / total,
        "mean_beam": float(beams.mean()),
        "ms_per_request": ms,
    }


def _load(args: argparse.Namespace) -> tuple[Any, Path]:
    from genrecall.serving.bundle import Bundle

    if args.tiny:
        from tests.serving_fixtures import make_bundle, shared_tiny_pipeline

        tiny = shared_tiny_pipeline()
        path = make_bundle(tiny, Path(tempfile.mkdtemp(prefix="bench-adaptive-")) / "b")
        return Bundle.load(path), tiny.data_dir
    if not args.bundle or not args.data:
        sys.exit("pass --tiny, or --bundle and --data")
    return Bundle.load(args.bundle), Path(args.data)


@dataclass
class Measured:
    """Per request: level-1 confidence, pairs found at each tier (items@N and by SID), relevant pairs."""

    conf: np.ndarray  # (n,)
    found: np.ndarray  # (n, tiers)
    sid_hits: np.ndarray  # (n, tiers)
    pairs: np.ndarray  # (n,)
    ms: dict[int, float]  # mean decode ms per request at each fixed tier


def measure(args: argparse.Namespace, bundle: Any, ctx: dict[str, Any], targets: list[list[int]]) -> Measured:
    """Decode every request at every tier; the last tier's run also records each request's confidence."""
    import torch

    from genrecall.gen.adaptive_beam import confidence

    conf: list[float] = []

    def record(first: torch.Tensor, bounds: Any) -> list[int]:
        conf.extend(confidence(first).tolist())
        return list(bounds)

    n, tiers = len(targets), args.tiers
    found, sid_hits, ms = np.zeros((n, len(tiers))), np.zeros((n, len(tiers))), {}
    for j, beam in enumerate(tiers):
        results, _, ms[beam] = _decode_all(ctx, beam, record if beam == tiers[-1] else None)
        for i, (res, t) in enumerate(zip(results, targets)):
            found[i, j], sid_hits[i, j] = _found(bundle, res.sids, t, args.n_items)
    pairs = np.array([len(set(t)) for t in targets], dtype=np.float64)
    return Measured(np.array(conf), found, sid_hits, pairs, ms)


def cross_fit(args: argparse.Namespace, m: Measured) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """Each half's beams under thresholds fitted on the other half; the thresholds of both fits."""
    from genrecall.gen.adaptive_beam import calibrate

    ref = args.tiers.index(args.reference)
    half = np.arange(len(m.conf)) % 2 == 0
    chosen = np.zeros(len(m.conf), dtype=np.int64)
    fitted = []
    for fit, apply in ((half, ~half), (~half, half)):
        target = (1 - args.tolerance) * m.found[fit, ref].sum() / max(m.pairs[fit].sum(), 1.0)
        policy = calibrate(m.conf[fit], m.found[fit], m.pairs[fit], args.tiers, target)
        fitted.append(policy.thresholds)
        chosen[apply] = policy.beams(m.conf[apply])
    return chosen, fitted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="build the tests' tiny pipeline and use its bundle and data")
    ap.add_argument("--bundle", default="", help="bundle directory or store tag")
    ap.add_argument("--data", default="", help="the data dir the bundle was built from (REQUESTS)")
    ap.add_argument("--test-days", type=int, default=2, help="evaluate.test_days")
    ap.add_argument("--requests", type=int, default=1000, help="sampled test requests (evaluate.max_requests)")
    ap.add_argument("--n-items", type=int, default=1000, help="candidate budget N of items@N")
    ap.add_argument("--tiers", type=int, nargs="+", default=[20, 50, 100], help="the policy's beams, ascending")
    ap.add_argument("--reference", type=int, default=50, help="the fixed beam (one of the tiers) to match")
    ap.add_argument("--tolerance", type=float, default=0.01, help="allowed relative recall loss vs the reference")
    ap.add_argument("--quick", action="store_true", help="200 test requests")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.requests = 200
    if args.reference not in args.tiers or args.tiers != sorted(args.tiers):
        sys.exit("--tiers must ascend and hold --reference")

    from genrecall.env import apply_defaults

    apply_defaults()
    import torch

    torch.set_num_threads(1)
    from genrecall.gen.adaptive_beam import calibrate
    from genrecall.gen.fast_decode import LeanDecoder
    from genrecall.gen.semantic import SentenceEncoder
    from genrecall.pipeline.evaluate import query_texts, request_prompts

    bundle, data_dir = _load(args)
    model, tok = bundle.generator
    sem = _test_set(data_dir, args.test_days, args.requests)
    encoder = SentenceEncoder.for_model(model)
    ctx = {
        "decoder": LeanDecoder(model),
        "tok": tok,
        "trie": bundle.trie,
        "prompts": request_prompts(tok, sem["query"], None, sem["request_id"]),
        "vectors": None if encoder is None else encoder(query_texts(sem["query"])),
    }
    m = measure(args, bundle, ctx, [list(c) for c in sem["clicked"]])
    chosen, fitted = cross_fit(args, m)
    ref = args.tiers.index(args.reference)
    overall = calibrate(
        m.conf, m.found, m.pairs, args.tiers, (1 - args.tolerance) * m.found[:, ref].sum() / m.pairs.sum()
    )
    _, used, ms = _decode_all(ctx, args.tiers[-1], overall)  # timed: the policy inside the decode loop
    rows = np.arange(len(chosen))
    table = [
        _summary(f"fixed {b}", m.found[:, j], m.sid_hits[:, j], m.pairs, np.full(len(rows), b), m.ms[b])
        for j, b in enumerate(args.tiers)
    ]
    col = np.searchsorted(args.tiers, chosen)
    table.append(_summary("adaptive, cross-fitted", m.found[rows, col], m.sid_hits[rows, col], m.pairs, chosen, ms))
    col = np.searchsorted(args.tiers, used)
    table.append(
        _summary("adaptive, fitted on all", m.found[rows, col], m.sid_hits[rows, col], m.pairs, np.array(used), ms)
    )
    print(f"{len(rows)} semantic test requests, {int(m.pairs.sum())} relevant pairs, items@{args.n_items}")
    for r in table:
        print(
            f"{r['policy']:>24}  items@N {r['items@N']:.4f}  hitrate {r['hitrate']:.4f}  "
            f"mean beam {r['mean_beam']:6.1f}  {r['ms_per_request']:6.2f} ms/request"
        )
    print(f"thresholds fitted per half: {fitted}; on all: {overall.thresholds}")
    print(f"confidence quantiles (10/50/90%): {np.quantile(m.conf, [0.1, 0.5, 0.9]).round(3).tolist()}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out = {"requests": len(rows), "pairs": int(m.pairs.sum()), "n_items": args.n_items, "tiers": args.tiers}
        out |= {"results": table, "thresholds_per_half": fitted, "thresholds_all": overall.thresholds}
        out |= {"cpu_count": os.cpu_count(), "load_avg": os.getloadavg()}
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
