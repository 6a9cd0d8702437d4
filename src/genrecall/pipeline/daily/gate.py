"""The daily gate's evaluation: today's candidate and the production bundle on the *same* sample.

The pipeline's ``evaluate`` stage measures every method, BM25 and dense at up to 200 beams on 1000
requests per set: the numbers for a paper table. A daily go/no-go needs less, and it needs it
like-for-like: production's manifest metrics were measured on an older test window, so comparing
them with today's numbers mixes a model change with a traffic change. Here both bundles answer the
same seeded sample of today's held-out requests with the same beams, the same item quality (today's
training period) and the same point-in-time user contexts:

- the *served* generator of each bundle (the last progressive stage) with its own index and trie;
- ``semantic``: requests with a click, query only (what the service does for an anonymous user);
- ``personalized``: requests of known users, with their Feast context, plus clk@k / exp@k / pvr@10.

User contexts carry recent *SIDs*, which only mean something in the code space of the index that
assigned them. On an incremental day both bundles share it (the frozen tokenizer), so one context
per request serves both. After a tokenizer refit they do not: the candidate's contexts come from the
day's Feast build (new codes) and production's from a Feast build of the same data with production's
own SID assignments (``production_feast_data_dir``), so each side is prompted as its own server would
prompt it. Giving production the new codes (as before) fed it SIDs from another code space and
biased the gate towards the candidate.

Metric names follow ``reports/metrics.json`` (``semantic/cq_sid/hitrate@10`` ...), so ``gate.metrics``
applies unchanged; the block says ``"generator": "served"`` so nobody mistakes it for the Q2SID row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from genrecall.data.schema import CATEGORIES, ITEMS, REQUESTS, TS, read_table
from genrecall.data.split import time_split
from genrecall.eval.metrics import evaluate_generator, personalized_metrics
from genrecall.features.sources import log_exposure_stats
from genrecall.gen.model import Generator
from genrecall.pipeline.evaluate import (
    EvaluateConfig,
    generate_sids,
    quality_from_stats,
    query_texts,
    request_prompts,
    sample_requests,
)
from genrecall.pipeline.train import feast_contexts
from genrecall.sid.index import SidIndex


@dataclass(frozen=True)
class DailyGateConfig:
    """The daily gate's sample (params.yaml ``daily.gate_eval``)."""

    max_requests: int = 300  # per set; hitrate@10 over 300 requests has a ~2-3 point standard error: the
    #                          paired comparison (same requests for both bundles) cancels most of it
    beams: tuple[int, ...] = (1, 2, 5, 10, 20)  # gated metrics are @10 and items@N; 20 = serve.default_beam_size
    seed: int = 0  # request sampling (the same rows for candidate and production)
    beam_batch: int = 16  # prompts per beam-search batch
    full_eval_on_rebuild: bool = True  # a full-rebuild day also runs the pipeline's evaluate (as dvc repro)
    num_threads: int = 0  # torch threads; 0 keeps torch's default


@dataclass
class GateSample:
    """Today's held-out requests both bundles answer, with everything scoring needs."""

    semantic: pd.DataFrame
    personalized: pd.DataFrame
    contexts: dict[int, Any]  # the candidate's (and production's, when they share a SID space)
    quality: pd.Series
    eval_cfg: EvaluateConfig
    production_contexts: dict[int, Any] | None = None  # production's own, after a tokenizer refit

    def describe(self) -> dict[str, Any]:
        return {
            "semantic_requests": len(self.semantic),
            "personalized_requests": len(self.personalized),
            "request_ids_sha": _ids_digest(self.semantic, self.personalized),
            "beams": list(self.eval_cfg.beams),
            "contexts": "shared SID space" if self.production_contexts is None else "each side's own SID space",
        }


def _ids_digest(*frames: pd.DataFrame) -> str:
    import hashlib

    ids = np.concatenate([f["request_id"].to_numpy(np.int64) for f in frames])
    return hashlib.sha256(ids.tobytes()).hexdigest()[:16]


def gate_sample(
    cfg: DailyGateConfig,
    eval_cfg: EvaluateConfig,
    data_dir: Path,
    item_ids: np.ndarray,
    feast_repo: Path,
    feast_data_dir: Path,
    production_feast_data_dir: Path | None = None,
) -> GateSample:
    """Sample today's held-out requests; item quality for every item either index can return;
    production's own contexts from ``production_feast_data_dir`` when given (another SID space)."""
    ecfg = dataclasses.replace(
        eval_cfg,
        max_requests=cfg.max_requests,
        seed=cfg.seed,
        beams=tuple(cfg.beams),
        report_beams=tuple(b for b in (1, 10, 100) if b in cfg.beams),
        items_beam=None,
    )
    # whole rows for the test window only; the training period is needed for its click counts alone
    cutoff = time_split(read_table(REQUESTS, data_dir, columns=["request_id", "ts"]), ecfg.test_days).cutoff
    test = read_table(REQUESTS, data_dir, filters=[("ts", ">=", pa.scalar(cutoff, type=TS))])
    sem = sample_requests(test, known_users=False, cfg=ecfg)
    per = sample_requests(test, known_users=True, cfg=ecfg)
    categories = read_table(CATEGORIES, data_dir)
    contexts = feast_contexts(per, categories, feast_repo, feast_data_dir)
    own = (
        feast_contexts(per, categories, feast_repo, production_feast_data_dir)
        if production_feast_data_dir is not None
        else None
    )
    quality = quality_from_stats(
        log_exposure_stats(data_dir, before=cutoff), np.unique(item_ids), ecfg.quality_prior_strength
    )
    return GateSample(sem, per, contexts, quality, ecfg, production_contexts=own)


def gate_metrics(
    gen: Generator,
    index: SidIndex,
    sample: GateSample,
    *,
    method: str = "cq_sid",
    beam_batch: int = 16,
    contexts: dict[int, Any] | None = None,
) -> dict[str, Any]:
    """``{"semantic": {method: {...}}, "personalized": {method: {...}}}`` for one served generator
    (``contexts``: this side's user contexts, default the sample's)."""
    cfg, tok = sample.eval_cfg, gen.tokenizer
    contexts = sample.contexts if contexts is None else contexts
    kw: dict[str, Any] = {
        "beams": cfg.beams,
        "n_items": cfg.n_items,
        "truncate_n": cfg.truncate_n,
        "items_beam": None,
        "chunk_requests": cfg.chunk_requests,
        "progress": False,
    }
    out: dict[str, Any] = {}
    for name, rows, ctx in (("semantic", sample.semantic, None), ("personalized", sample.personalized, contexts)):
        targets = [list(c) for c in rows["clicked"]]
        run = generate_sids(
            gen,
            index.trie,
            request_prompts(tok, rows["query"], ctx, rows["request_id"]),
            max(cfg.beams),
            beam_batch,
            texts=query_texts(rows["query"]),
        )
        block = evaluate_generator(run, index, targets, sample.quality, **kw).to_dict(cfg.report_beams)
        if name == "personalized":
            block.update(
                personalized_metrics(
                    run, index, targets, [list(e) for e in rows["exposed"]], ks=cfg.ks, pvr_k=cfg.pvr_k
                ).to_dict()
            )
        numbers = {k: v for k, v in block.items() if isinstance(v, (int, float))}
        out[name] = {method: numbers, "served": numbers}  # the gate reads <set>/served/* (the bundle's generator)
    return out


def compare_on_sample(
    cfg: DailyGateConfig,
    eval_cfg: EvaluateConfig,
    *,
    data_dir: Path,
    candidate: Generator,
    candidate_index: SidIndex,
    production: Any | None,
    feast_repo: Path,
    feast_data_dir: Path,
    method: str = "cq_sid",
    production_feast_data_dir: Path | None = None,
) -> dict[str, Any]:
    """Candidate and production (a loaded ``Bundle``, or None before the first) on one sample;
    ``production_feast_data_dir``: a Feast store in production's SID space (after a refit)."""
    ids = [candidate_index.item_ids()] + ([production.index.item_ids()] if production is not None else [])
    listed = read_table(ITEMS, data_dir)
    ids.append(listed.loc[listed["delisted_at"].isna(), "item_id"].to_numpy(np.int64))
    own = production_feast_data_dir if production is not None else None
    sample = gate_sample(cfg, eval_cfg, data_dir, np.concatenate(ids), feast_repo, feast_data_dir, own)
    cand = gate_metrics(candidate, candidate_index, sample, method=method, beam_batch=cfg.beam_batch)
    prod = (
        gate_metrics(
            production.generator,
            production.index,
            sample,
            method=method,
            beam_batch=cfg.beam_batch,
            contexts=sample.production_contexts,
        )
        if production is not None
        else None
    )
    return {
        "sample": sample.describe(),
        "generator": "served",
        "candidate": cand,
        "production": prod,
        "production_tag": production.tag if production is not None else None,
    }
