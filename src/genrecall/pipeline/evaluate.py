"""The evaluate stage: every method on the same held-out requests -> ``reports/metrics.json``.

Test sets (DESIGN.md section 4), both from the last ``test_days`` of the log (time split):

- ``semantic``: requests with a click; query only. Generators: the Q2SID checkpoint of each SID
  method (``cq_sid``, ``rq_vae``); rankers: BM25 and dense retrieval over the same listed items.
- ``personalized``: requests of known users with a click. ``cq_sid`` is the final UQ2SID model with
  the user's point-in-time context from Feast, ``cq_sid_q2sid`` the stage-2 checkpoint on the same
  requests; plus clk@k, exp@k and pvr@10. The RL variants of the train_rl stage (``grpo``,
  ``eg_grpo_k2``, ``eg_grpo_k4``; ``rl_methods``) join them, same requests and contexts, when their
  checkpoints exist under ``rl_dir`` (the pipeline still runs without train_rl).

Truncation orders items by a quality score (smoothed CTR) computed from the *training* period only.
Also writes ``reports/curves.csv`` (hitrate vs beams, for ``dvc plots``) and one PNG per test set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genrecall.data.schema import CATEGORIES, ITEMS, REQUESTS, read_table
from genrecall.data.split import time_split
from genrecall.eval.baselines import BM25Retriever, DenseRetriever
from genrecall.eval.metrics import (
    EvalConfig,
    GeneratorMetrics,
    GeneratorRun,
    evaluate_generator,
    evaluate_ranked_items,
    personalized_metrics,
)
from genrecall.eval.report import build_metrics, metrics_block, plot_hitrate, print_summary, write_curves, write_metrics
from genrecall.features.sources import exposure_stats, log_ctr, quality_score
from genrecall.gen.beam import beam_search
from genrecall.gen.centroid_prior import CentroidPrior, NodeCentroids, centroid_beam
from genrecall.gen.examples import encode_user_query, normalize_query
from genrecall.gen.model import Generator, load_generator
from genrecall.gen.semantic import SentenceEncoder, is_semantic, vectors_for
from genrecall.gen.sid_hybrid import SidHybrid
from genrecall.gen.sid_prior import SidPrior
from genrecall.pipeline.embed import Embeddings, load_embeddings
from genrecall.pipeline.train import feast_contexts
from genrecall.sid.beam import tokenizer_beam
from genrecall.sid.encoder import item_texts
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import SidTokenizer


@dataclass(frozen=True)
class EvaluateConfig(EvalConfig):
    """The evaluate stage (params.yaml ``evaluate``): metric settings + which requests and models."""

    test_days: int = 2  # must match train.test_days: the held-out end of the log
    max_requests: int | None = 1000  # sampled test requests per set; beam search at 200 beams dominates cost
    seed: int = 0  # request sampling
    semantic_methods: tuple[str, ...] = ("cq_sid", "rq_vae")
    personalized_beams: int = 100  # the personalized set reports up to hitrate@100
    beam_batch: int = 16  # prompts per beam-search batch (x beams sequences in flight)
    quality_prior_strength: float = 20.0  # smoothed CTR for truncation, as the Feast item view computes it
    num_threads: int = 0  # torch threads; 0 keeps torch's default
    rl_methods: tuple[str, ...] = ("grpo", "eg_grpo_k2", "eg_grpo_k4")  # train_rl variants, evaluated if present


@dataclass
class EvaluateResult:
    metrics_path: str
    test_pairs: dict[str, int]


def item_quality(train_log: pd.DataFrame, item_ids: np.ndarray, strength: float) -> pd.Series:
    """Smoothed CTR of every item from the training period (unseen items get the prior mean)."""
    return quality_from_stats(exposure_stats(train_log), item_ids, strength)


def quality_from_stats(stats: pd.DataFrame, item_ids: np.ndarray, strength: float) -> pd.Series:
    """``item_quality`` from per-item exposure/click counts (``exposure_stats``' columns)."""
    stats = stats.set_index("item_id").reindex(item_ids, fill_value=0)
    q = quality_score(
        stats["clicks"].to_numpy(), stats["exposures"].to_numpy(), prior_ctr=log_ctr(stats), strength=strength
    )
    return pd.Series(q, index=pd.Index(item_ids, name="item_id"))


def sample_requests(test: pd.DataFrame, *, known_users: bool, cfg: EvaluateConfig) -> pd.DataFrame:
    """Test requests with at least one click (and a known user), sampled to ``max_requests``."""
    keep = test["clicked"].map(lambda c: c is not None and len(c) > 0)
    if known_users:
        keep &= test["user_id"].notna()
    rows = test[keep]
    if cfg.max_requests is not None and len(rows) > cfg.max_requests:
        rows = rows.sample(n=cfg.max_requests, random_state=cfg.seed)
    return rows.sort_values("request_id").reset_index(drop=True)


def generate_sids(
    gen: Generator,
    trie: Any,
    prompts: list[list[int]],
    beams: int,
    batch: int,
    *,
    texts: Sequence[str] | None = None,
    encoder: SentenceEncoder | None = None,
    prior: Callable[[np.ndarray], SidPrior | CentroidPrior] | None = None,
) -> GeneratorRun:
    """Beam search every prompt with a loaded generator (identical inputs are searched once).

    ``texts``: the text each prompt was made from; a semantic-prompt generator gets their sentence
    vectors (from ``encoder``, by default the one recorded in the model; gen/semantic.py). ``prior``:
    builds a decoding prior from the same vectors, one per distinct input (gen/sid_prior.py or
    gen/centroid_prior.py; needs ``encoder`` for a plain generator). Where vectors are read, an input
    is the prompt *and* its text: two texts can share their prompt tokens (truncated at
    ``max_text_tokens``, or no text tokens at all) yet not their vectors."""
    model, tok = gen
    model.eval()
    with_text = is_semantic(model) or prior is not None
    if with_text and (texts is None or len(texts) != len(prompts)):
        raise ValueError("a semantic-prompt generator or a decode prior needs the text of every prompt (texts=...)")
    unique: dict[tuple[object, ...], int] = {}
    keys = [
        unique.setdefault((*p, str(texts[i])) if with_text and texts is not None else tuple(p), len(unique))
        for i, p in enumerate(prompts)
    ]
    firsts = {k: i for i, k in reversed(list(enumerate(keys)))}  # the first prompt of each distinct input
    vectors = sid_prior = None
    if with_text and texts is not None:
        unique_texts = [str(texts[firsts[k]]) for k in range(len(unique))]
        vectors = vectors_for(model, unique_texts, encoder)
        if prior is not None:
            prior_vectors = vectors if vectors is not None else (encoder(unique_texts) if encoder else None)
            if prior_vectors is None:
                raise ValueError("a decode prior on a plain generator needs an encoder for the prompt texts")
            sid_prior = prior(prior_vectors)
    results = beam_search(
        model,
        tok,
        trie,
        [list(prompts[firsts[k]]) for k in range(len(unique))],
        beams,
        batch_size=batch,
        show_progress=True,
        semantic=vectors,
        prior=sid_prior,
    )
    return GeneratorRun.from_sids([results[k].sids for k in keys])


def query_texts(queries: pd.Series) -> list[str]:
    """The normalised query texts prompts are made from (and a semantic prompt encodes)."""
    return [normalize_query(q) for q in queries]


def request_prompts(
    tok: Any, queries: pd.Series, contexts: dict[int, Any] | None, request_ids: pd.Series
) -> list[list[int]]:
    """The generator's prompt for each request: its normalised query, plus the user's context (by
    request id) when ``contexts`` has one. The pipeline's evaluate and the daily gate prompt alike."""
    ctx = contexts or {}
    return [encode_user_query(tok, normalize_query(q), ctx.get(int(r))) for q, r in zip(queries, request_ids)]


@dataclass
class _TestSet:
    """One test set's sampled requests, their targets and what every generator and ranker scored on them."""

    requests: pd.DataFrame
    targets: list[list[int]]
    generators: dict[str, GeneratorMetrics]
    rankers: dict[str, Any]
    personalized: dict[str, Any] = field(default_factory=dict)  # personalized_metrics per generator

    @property
    def pairs(self) -> int:
        return sum(len(set(t)) for t in self.targets)


def evaluate(
    cfg: EvaluateConfig,
    data_dir: str | Path,
    sid_dir: str | Path,
    emb_dir: str | Path,
    gen_dir: str | Path,
    reports_dir: str | Path,
    *,
    feast_repo: str | Path = "feature_repo",
    feast_data_dir: str | Path = "data/feast",
    preset: str | None = None,
    source: str = "marketplace",
    rl_dir: str | Path | None = None,
    sid_model_dir: str | Path | None = None,
) -> EvaluateResult:
    """Evaluate generators, BM25 and dense on the held-out requests; write metrics, curves, plots.

    ``source``/``preset``: where the data came from, for metrics.json's ``data`` block: the source kind
    (params ``source.kind``), plus the simulator's preset only when the simulator made the data.
    ``rl_dir``: the train_rl output (``<rl_dir>/cq_sid/<variant>/final``); None skips the RL variants.
    ``sid_model_dir``: the sid stage's tokenizers (``<dir>/cq_sid``); given, the query-only set also
    scores the three training-free references on CQ-SID's SIDs, ``tokenizer_beam``, ``centroid_beam`` and
    ``sid_hybrid`` (the rows a trained generator has to beat); None skips them.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    sid_dir, gen_dir, reports = Path(sid_dir), Path(gen_dir), Path(reports_dir)
    items = read_table(ITEMS, data_dir)
    listed = items[items["delisted_at"].isna()].sort_values("item_id").reset_index(drop=True)
    log = read_table(REQUESTS, data_dir)
    split = time_split(log, cfg.test_days)
    quality = item_quality(split.train, listed["item_id"].to_numpy(np.int64), cfg.quality_prior_strength)
    emb = load_embeddings(emb_dir)
    rankers = _rankers(listed, emb, k=max(cfg.n_items))
    indexes = {m: SidIndex.load(sid_dir / m) for m in {*cfg.semantic_methods, "cq_sid"}}
    refs = None if sid_model_dir is None else _references(cfg, Path(sid_model_dir), indexes["cq_sid"], listed, emb)
    sem = _semantic_set(cfg, split.test, gen_dir, indexes, rankers, quality, refs)
    semantic, target = metrics_block(
        sem.generators, sem.rankers, baseline=cfg.baseline, target_frac=cfg.target_frac, report_beams=cfg.report_beams
    )
    per_requests = sample_requests(split.test, known_users=True, cfg=cfg)
    contexts = feast_contexts(per_requests, read_table(CATEGORIES, data_dir), feast_repo, feast_data_dir)
    per = _personalized_set(cfg, per_requests, contexts, gen_dir, rl_dir, indexes["cq_sid"], rankers, quality)
    personalized, _ = metrics_block(
        per.generators, per.rankers, per.personalized, baseline="none", report_beams=cfg.report_beams
    )
    health_path = reports / "sid_health.json"
    health = json.loads(health_path.read_text()) if health_path.exists() else {}
    pairs = {"semantic": sem.pairs, "personalized": per.pairs}
    data = {
        "source": source,
        **({"preset": preset} if source == "marketplace" else {}),  # a shop's data has no simulator preset
        "items": len(listed),
        "requests": len(log),
        "test_requests": {"semantic": len(sem.requests), "personalized": len(per.requests)},
        "test_pairs": pairs["semantic"],
        "test_pairs_by_set": pairs,
        "cutoff": str(split.cutoff),
    }
    metrics = build_metrics(semantic=semantic, personalized=personalized, sid_health=health, data=data)
    out = write_metrics(metrics, reports / "metrics.json")
    write_curves({"semantic": sem.generators, "personalized": per.generators}, reports / "curves.csv")
    plot_hitrate(
        sem.generators, sem.rankers, reports / "hitrate_vs_beams.png", target=target, title="semantic test set"
    )
    title = "personalized test set"
    plot_hitrate(per.generators, per.rankers, reports / "hitrate_vs_beams_personalized.png", title=title)
    print_summary(metrics)
    return EvaluateResult(str(out), pairs)


def _score(
    cfg: EvaluateConfig,
    run: GeneratorRun,
    index: SidIndex,
    targets: list[list[int]],
    quality: pd.Series,
    beams: Sequence[int],
) -> GeneratorMetrics:
    return evaluate_generator(
        run,
        index,
        targets,
        quality,
        beams=beams,
        n_items=cfg.n_items,
        truncate_n=cfg.truncate_n,
        items_beam=cfg.items_beam,
        chunk_requests=cfg.chunk_requests,
    )


def _semantic_set(
    cfg: EvaluateConfig,
    test: pd.DataFrame,
    gen_dir: Path,
    indexes: dict[str, SidIndex],
    rankers: dict[str, Any],
    quality: pd.Series,
    references: Callable[[pd.Series], dict[str, list[np.ndarray]]] | None = None,
) -> _TestSet:
    """Query only: every semantic method's Q2SID generator, BM25 and dense on anonymous test requests
    (and the training-free references on CQ-SID's SIDs when ``references`` is given)."""
    sem = sample_requests(test, known_users=False, cfg=cfg)
    targets = [list(c) for c in sem["clicked"]]
    gens: dict[str, GeneratorMetrics] = {}
    for method in cfg.semantic_methods:
        gen = load_generator(gen_dir / method / "q2sid" / "final")
        run = generate_sids(
            gen,
            indexes[method].trie,
            request_prompts(gen.tokenizer, sem["query"], None, sem["request_id"]),
            max(cfg.beams),
            cfg.beam_batch,
            texts=query_texts(sem["query"]),
        )
        gens[method] = _score(cfg, run, indexes[method], targets, quality, cfg.beams)
    for name, sids in (references(sem["query"]) if references else {}).items():
        gens[name] = _score(cfg, GeneratorRun.from_sids(sids), indexes["cq_sid"], targets, quality, cfg.beams)
    ranked = {
        name: evaluate_ranked_items(fn(sem["query"]), targets, n_items=cfg.n_items) for name, fn in rankers.items()
    }
    return _TestSet(sem, targets, gens, ranked)


def _personalized_set(
    cfg: EvaluateConfig,
    per: pd.DataFrame,
    contexts: dict[int, Any],
    gen_dir: Path,
    rl_dir: str | Path | None,
    index: SidIndex,
    rankers: dict[str, Any],
    quality: pd.Series,
) -> _TestSet:
    """User + query: the CQ-SID generators (UQ2SID, Q2SID, RL variants) on the sampled known users'
    requests ``per`` with their ``contexts``."""
    targets = [list(c) for c in per["clicked"]]
    exposed = [list(e) for e in per["exposed"]]
    beams = tuple(b for b in cfg.beams if b <= cfg.personalized_beams)
    result = _TestSet(per, targets, {}, {})
    for name, path, ctx in personalized_generators(cfg, gen_dir, rl_dir, contexts):
        gen = load_generator(path)
        run = generate_sids(
            gen,
            index.trie,
            request_prompts(gen.tokenizer, per["query"], ctx, per["request_id"]),
            max(beams),
            cfg.beam_batch,
            texts=query_texts(per["query"]),
        )
        result.generators[name] = _score(cfg, run, index, targets, quality, beams)
        result.personalized[name] = personalized_metrics(run, index, targets, exposed, ks=cfg.ks, pvr_k=cfg.pvr_k)
    result.rankers = {
        name: evaluate_ranked_items(fn(per["query"]), targets, n_items=cfg.n_items) for name, fn in rankers.items()
    }
    return result


def personalized_generators(
    cfg: EvaluateConfig, gen_dir: Path, rl_dir: str | Path | None, contexts: dict[int, Any]
) -> list[tuple[str, Path, dict[int, Any] | None]]:
    """(method name, generator dir, user contexts or None) of every generator on the personalized set."""
    out = [
        ("cq_sid", gen_dir / "cq_sid" / "uq2sid" / "final", contexts),
        ("cq_sid_q2sid", gen_dir / "cq_sid" / "q2sid" / "final", None),
    ]
    if rl_dir is None:
        return out
    for name in cfg.rl_methods:
        path = Path(rl_dir) / "cq_sid" / name / "final"
        if (path / "model.safetensors").exists():
            out.append((name, path, contexts))
    return out


def _references(
    cfg: EvaluateConfig, sid_model_dir: Path, index: SidIndex, listed: pd.DataFrame, emb: Embeddings
) -> Callable[[pd.Series], dict[str, list[np.ndarray]]]:
    """Queries -> each training-free reference's SIDs (best first) on CQ-SID's SIDs: ``tokenizer_beam``
    (sid/beam.py: the query's vector through the tokenizer's codebooks), ``centroid_beam``
    (gen/centroid_prior.py: the trie nodes' item centroids), both from the embed stage's vectors, and
    ``sid_hybrid`` (gen/sid_hybrid.py: BM25 over each SID's item texts fused with its centroid)."""
    tok = SidTokenizer.load(sid_model_dir / "cq_sid")
    ids = listed["item_id"].to_numpy(np.int64)
    sids, x = index.sid_of(ids), emb.items[emb.item_rows(ids)]
    nodes = NodeCentroids.fit(index.trie, index.sid_vocab_sizes, sids, x)
    hybrid = SidHybrid().fit(sids, item_texts(listed), x)

    def search(queries: pd.Series) -> dict[str, list[np.ndarray]]:
        vecs = emb.vectors_of(queries)
        beams = max(cfg.beams)
        return {
            "tokenizer_beam": tokenizer_beam(tok, index.trie, vecs, beams, index.sid_vocab_sizes),
            "centroid_beam": centroid_beam(nodes, vecs, beams),
            "sid_hybrid": hybrid.search(list(queries), vecs, beams),
        }

    return search


def _rankers(listed: pd.DataFrame, emb: Embeddings, *, k: int) -> dict[str, Any]:
    """BM25 over item texts and dense retrieval over the embed stage's vectors; both over ``listed``."""
    ids = listed["item_id"].to_numpy(np.int64)
    bm25 = BM25Retriever().fit(ids, item_texts(listed))
    dense = DenseRetriever().fit(ids, emb.items[emb.item_rows(ids)])

    def dense_search(queries: pd.Series) -> np.ndarray:
        return dense.search(emb.vectors_of(queries), k).items

    return {"bm25": lambda q: bm25.search(list(q), k).items, "dense": dense_search}
