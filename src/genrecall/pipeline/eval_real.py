"""``genrecall eval-real``: the whole method on a real judged query-product set.

Judged data (e.g. the Home Depot search-relevance set) has products, queries and crowd relevance
labels, but no categories, users, clicks or timestamps. Queries whose judged items are relevant
(``relevance >= threshold``) play the role of clicks: they feed CQ-SID's query-item InfoNCE and the
Q2SID stage. Products have no category, so CQ-SID here is the query-constrained RQ-VAE with shared
clusters (category forcing has nothing to force). The test judgments' queries are then retrieved by
the CQ-SID generator, the RQ-VAE baseline generator, BM25 and dense retrieval over all products;
the result is one ``judged`` block in the metrics.json format. Nothing is ordered by popularity:
there is none, so truncation keeps beam order (ties by item id).

Beside the generators, three training-free references on CQ-SID's SIDs: ``tokenizer_beam`` (the query
vector through CQ-SID's own encoder and a beam over its codebooks), ``centroid_beam`` (a beam over the
trie by each node's item centroid) and ``sid_hybrid`` (the SIDs ranked by BM25 over their items' titles
and by their centroid, fused; gen/sid_hybrid.py); and a ``fusion`` block (what the generator adds to
BM25 and dense).
When the generator reads sentence vectors (``train.tokenizer.semantic_tokens``), every prompt carries
the MiniLM vector of its text, and items also train on pseudo-queries (``pseudo``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genrecall.config import from_dict, merge_params
from genrecall.data.judged import load_judged, relevant_pairs
from genrecall.data.text import normalize_query
from genrecall.eval.baselines import BM25Retriever, DenseRetriever
from genrecall.eval.fusion import FusionConfig, fusion_metrics, generator_items
from genrecall.eval.inputs import GeneratorRun, as_sid_lookup
from genrecall.eval.metrics import GeneratorMetrics, evaluate_generator, evaluate_ranked_items
from genrecall.eval.oracle import cluster_oracle
from genrecall.eval.report import build_metrics, metrics_block, print_summary, write_metrics
from genrecall.gen.centroid_prior import CentroidPrior, CentroidPriorConfig, NodeCentroids, centroid_beam
from genrecall.gen.model import load_generator
from genrecall.gen.semantic import SentenceEncoder
from genrecall.gen.sid_hybrid import SidHybrid, SidHybridConfig
from genrecall.gen.sid_prior import SidPrior, SidPriorConfig
from genrecall.pipeline.evaluate import EvaluateConfig, generate_sids
from genrecall.pipeline.sid import SidConfig, fit_method
from genrecall.pipeline.train import TrainConfig, train_method
from genrecall.sid.beam import tokenizer_beam
from genrecall.sid.encoder import EncoderConfig
from genrecall.sid.health import sid_health
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import QueryPairs, SidTokenizer

REFERENCE = "tokenizer_beam"  # the training-free reference, on the first method's (CQ-SID's) tokenizer
CENTROIDS = "centroid_beam"  # the other one: the first method's trie nodes ranked by their items' centroid
HYBRID = "sid_hybrid"  # and the first method's SIDs ranked by BM25 and their centroid, fused (gen/sid_hybrid.py)
ORACLE = "cluster_oracle"  # the recall ceiling of the first method's clusters (eval/oracle.py)


@dataclass(frozen=True)
class EvalRealConfig:
    """params.yaml ``eval_real``: nested blocks use the pipeline stages' own configs."""

    relevant_threshold: float = 2.5  # DESIGN.md: relevant = relevance >= 2.5 on the 1-3 scale
    methods: tuple[str, ...] = ("cq_sid", "rq_vae")
    cache_dir: str = ".state/embed-cache"  # shared with the embed stage: products are encoded once
    embed: dict[str, Any] = field(default_factory=dict)  # EncoderConfig
    sid: dict[str, Any] = field(default_factory=dict)  # SidConfig (test_days is ignored: no time)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig (no UQ2SID: no users)
    evaluate: dict[str, Any] = field(default_factory=dict)  # EvaluateConfig (beams, max_requests, ...)
    fusion: dict[str, Any] = field(default_factory=dict)  # FusionConfig
    tokenizer_beam: bool = True  # the training-free reference a trained generator must beat
    # and the stronger one: beam over the trie by the cosine of the query to each node's item centroid
    # (gen/centroid_prior.py; one vector per trie node, not per item)
    centroid_beam: bool = True
    # and the one that reads the wording: SIDs ranked by BM25 over their items' titles and by their
    # centroid, fused by reciprocal rank (gen/sid_hybrid.py); an empty block = SidHybridConfig's defaults
    sid_hybrid: dict[str, Any] | None = field(default_factory=dict)  # null: off
    # ablations on the first method's SIDs: name -> overrides of ``train`` (e.g. the semantic prompt off);
    # they share its SID fit and embeddings, so a row costs one generator, not a whole run
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # weight > 0 adds a "<method>+prior" row per method, the same generator decoded with a prior (the
    # plain row stays the generator alone): kind "tokenizer" (SidPriorConfig, gen/sid_prior.py) or
    # "centroid" (CentroidPriorConfig, gen/centroid_prior.py)
    decode_prior: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalRealResult:
    out: str
    test_queries: int
    test_pairs: int


@dataclass
class JudgedRun:
    """The judged data as the pipeline sees it: items, train log, sampled test log, vectors."""

    items: pd.DataFrame
    ids: np.ndarray
    train_log: pd.DataFrame
    test_log: pd.DataFrame
    x: np.ndarray  # item vectors, rows aligned to ``ids``
    test_vectors: np.ndarray  # query vectors of ``test_log``
    pairs: QueryPairs  # training (query, relevant item) pairs for CQ-SID's InfoNCE
    query_vectors: np.ndarray  # rows indexed by ``pairs.query_index``
    encode: SentenceEncoder  # the cached encoder, for prompts of any text

    @property
    def targets(self) -> list[list[int]]:
        return [list(c) for c in self.test_log["clicked"]]


def judged_log(judgments: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One pseudo request per distinct query: exposed = judged items, clicked = relevant ones."""
    rel = relevant_pairs(judgments, threshold)
    rows = []
    for i, (q, group) in enumerate(judgments.groupby(judgments["query"].map(normalize_query), sort=True)):
        rows.append(
            {
                "request_id": i,
                "query": q,
                "user_id": None,
                "exposed": group["item_id"].tolist(),
                "clicked": [int(x) for x in rel.get(q, [])],
                "purchased": [],
            }
        )
    return pd.DataFrame(rows, columns=["request_id", "query", "user_id", "exposed", "clicked", "purchased"])


def load_run(cfg: EvalRealConfig, products: str | Path, train: str | Path, test: str | Path) -> JudgedRun:
    """Read and split the judgments, sample the test queries, embed products and queries (cached)."""
    train_set, test_set = load_judged(products, train), load_judged(products, test)
    items = train_set.products.sort_values("item_id").reset_index(drop=True)
    ids = items["item_id"].to_numpy(np.int64)
    train_log = judged_log(train_set.judgments, cfg.relevant_threshold)
    test_log = judged_log(test_set.judgments, cfg.relevant_threshold)
    overlap = set(train_log["query"]) & set(test_log["query"])
    if overlap:
        raise ValueError(f"{len(overlap)} queries are in both train and test judgments, e.g. {sorted(overlap)[:3]}")
    ev = from_dict(EvaluateConfig, cfg.evaluate)
    test_log = test_log[test_log["clicked"].map(len) > 0]
    if ev.max_requests is not None and len(test_log) > ev.max_requests:
        test_log = test_log.sample(n=ev.max_requests, random_state=ev.seed)
    test_log = test_log.sort_values("request_id").reset_index(drop=True)

    encode = SentenceEncoder(from_dict(EncoderConfig, cfg.embed), cfg.cache_dir)

    x = encode(items["title"].astype(str).tolist())
    queries = sorted(set(train_log["query"]))
    qv = encode(queries)
    qrow = {q: i for i, q in enumerate(queries)}
    pairs_df = train_log[["query", "clicked"]].explode("clicked").dropna()
    item_row = pd.Series(np.arange(len(ids)), index=ids)
    pairs_df = pairs_df[pairs_df["clicked"].astype(np.int64).isin(item_row.index)]
    pairs = QueryPairs(
        item_index=item_row.loc[pairs_df["clicked"].astype(np.int64)].to_numpy(np.int64),
        query_index=pairs_df["query"].map(qrow).to_numpy(np.int64),
    )
    test_vectors = encode(test_log["query"].tolist())
    return JudgedRun(items, ids, train_log, test_log, x, test_vectors, pairs, qv, encode)


def fit_sids(cfg: EvalRealConfig, method: str, run: JudgedRun, work: Path) -> tuple[SidTokenizer, SidIndex]:
    """Fit one SID method on the products (no categories in judged data) and save it under ``work``."""
    sid_cfg = from_dict(SidConfig, {**cfg.sid, "methods": list(cfg.methods), "test_days": None})
    cats = np.full(len(run.ids), np.nan)
    tok, index, _ = fit_method(sid_cfg, method, run.ids, run.x, cats, run.query_vectors, run.pairs)
    tok.save(work / "sid" / method)
    index.save(work / "index" / method)
    return tok, index


def train_and_search(
    cfg: EvalRealConfig, train: dict[str, Any], index: SidIndex, run: JudgedRun, out_dir: Path
) -> GeneratorRun:
    """Train a generator (I2SID -> Q2SID) on ``index``'s SIDs; beam-search the test queries."""
    train_cfg = from_dict(TrainConfig, {**train, "methods": list(cfg.methods), "personalized_methods": []})
    texts = [*run.items["title"].astype(str), *run.train_log["query"]]
    train_method(train_cfg, index, run.items, run.train_log, out_dir, texts=texts, encoder=run.encode)
    return search(cfg, index, run, out_dir)


def search(
    cfg: EvalRealConfig,
    index: SidIndex,
    run: JudgedRun,
    gen_dir: Path,
    prior: Callable[[np.ndarray], SidPrior | CentroidPrior] | None = None,
) -> GeneratorRun:
    """Beam-search ``run.test_log``'s queries with the trained generator under ``gen_dir``; with ``prior``
    (see `decode_prior`), decoded with that prior of the queries' sentence vectors."""
    ev = from_dict(EvaluateConfig, cfg.evaluate)
    gen = load_generator(gen_dir / "q2sid" / "final")
    texts = run.test_log["query"].tolist()
    prompts = [gen.tokenizer.encode_prompt(q) for q in texts]
    return generate_sids(
        gen, index.trie, prompts, max(ev.beams), ev.beam_batch, texts=texts, encoder=run.encode, prior=prior
    )


def decode_prior(
    cfg: EvalRealConfig, tok: SidTokenizer, index: SidIndex, run: JudgedRun, nodes: NodeCentroids | None = None
) -> Callable[[np.ndarray], SidPrior | CentroidPrior] | None:
    """``cfg.decode_prior`` as a function of the queries' sentence vectors; None when its weight is 0.

    ``kind: tokenizer`` is the SID tokenizer's residual codebooks (gen/sid_prior.py), ``kind: centroid``
    the trie nodes' centroids of the items' vectors (gen/centroid_prior.py; ``nodes`` when the caller
    has them already, else fitted from ``index`` and ``run``)."""
    spec = dict(cfg.decode_prior)
    kind = spec.pop("kind", "tokenizer")
    if kind == "tokenizer":
        scfg = from_dict(SidPriorConfig, spec)
        return (lambda v: SidPrior.from_tokenizer(tok, v, scfg)) if scfg.enabled else None
    if kind == "centroid":
        ccfg = from_dict(CentroidPriorConfig, spec)
        if not ccfg.enabled:
            return None
        if nodes is None:
            nodes = NodeCentroids.fit(index.trie, index.sid_vocab_sizes, index.sid_of(run.ids), run.x)
        fitted = nodes
        return lambda v: CentroidPrior.from_nodes(fitted, v, ccfg)
    raise ValueError(f"eval_real.decode_prior.kind must be 'tokenizer' or 'centroid', got {kind!r}")


class _Timings:
    """Wall seconds per named step (rounded to 0.1 s), in the order the steps ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 1)


@dataclass
class _MethodResults:
    """What the SID methods (and their variants and references) scored on the test queries."""

    generators: dict[str, GeneratorMetrics] = field(default_factory=dict)
    lists: dict[str, list[np.ndarray]] = field(default_factory=dict)  # fused item lists per method
    health: dict[str, Any] = field(default_factory=dict)
    oracles: dict[str, Any] = field(default_factory=dict)


def eval_real(
    cfg: EvalRealConfig,
    products_path: str | Path,
    train_path: str | Path,
    test_path: str | Path,
    out: str | Path,
    *,
    work_dir: str | Path | None = None,
) -> EvalRealResult:
    """Train tokenizers and generators on ``train_path`` judgments; evaluate on ``test_path``'s queries."""
    out = Path(out)
    work = Path(work_dir) if work_dir else out.with_suffix("")
    ev = from_dict(EvaluateConfig, cfg.evaluate)
    if ev.num_threads:  # every step (SID fit included) on this many torch threads: 1 on a shared 2-core box
        torch.set_num_threads(ev.num_threads)
    start = time.perf_counter()
    run = load_run(cfg, products_path, train_path, test_path)
    fcfg = from_dict(FusionConfig, cfg.fusion)
    timings = _Timings()
    timings.seconds["load_and_embed"] = round(time.perf_counter() - start, 1)
    results = _MethodResults()
    for method in cfg.methods:
        _evaluate_method(cfg, ev, fcfg, method, run, work, timings, results)
    ranked = baseline_rankings(run, max(*ev.n_items, fcfg.n))
    rankers = {name: evaluate_ranked_items(r, run.targets, n_items=ev.n_items) for name, r in ranked.items()}
    block, _ = metrics_block(
        results.generators,
        rankers | results.oracles,
        baseline=ev.baseline,
        target_frac=ev.target_frac,
        report_beams=ev.report_beams,
    )
    main = cfg.methods[0]
    rows = {name: [r[r >= 0] for r in ranked[name]] for name in ranked}
    block["fusion"] = fusion_metrics(results.lists[main], rows["bm25"], rows["dense"], run.targets, fcfg)
    n_pairs = sum(len(set(t)) for t in run.targets)
    data = {
        "preset": "judged",
        "items": len(run.ids),
        "requests": len(run.train_log),
        "test_pairs": n_pairs,
        "test_queries": len(run.test_log),
        "relevant_threshold": cfg.relevant_threshold,
        "fusion_of": main,
        "seconds": timings.seconds | {"total": round(time.perf_counter() - start, 1)},
        "source": {"products": Path(products_path).name, "train": Path(train_path).name, "test": Path(test_path).name},
    }
    metrics = build_metrics(judged=block, sid_health=results.health, data=data)
    write_metrics(metrics, out)
    (work / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=list))
    print_summary(metrics)
    return EvalRealResult(str(out), len(run.test_log), n_pairs)


def _evaluate_method(
    cfg: EvalRealConfig,
    ev: EvaluateConfig,
    fcfg: FusionConfig,
    method: str,
    run: JudgedRun,
    work: Path,
    timings: _Timings,
    results: _MethodResults,
) -> None:
    """Fit ``method``'s SIDs, train and score its generator; for the first method also the cluster oracle
    and the variants; the tokenizer-beam reference once (all into ``results``)."""
    with timings.step(f"sid/{method}"):
        tok, index = fit_sids(cfg, method, run, work)
    with timings.step(f"generator/{method}"):
        gen_run = train_and_search(cfg, cfg.train, index, run, work / "generator" / method)
    sids = index.sid_of(run.ids)  # the items' SIDs, rows aligned to run.ids
    results.health[method] = sid_health(sids, tok.codebook_sizes).to_dict()
    results.generators[method] = score_run(ev, run, gen_run, index)
    nodes = NodeCentroids.fit(index.trie, index.sid_vocab_sizes, sids, run.x)  # seconds
    prior = decode_prior(cfg, tok, index, run, nodes)
    if prior is not None:
        with timings.step(f"prior/{method}"):
            prior_run = search(cfg, index, run, work / "generator" / method, prior=prior)
        results.generators[f"{method}+prior"] = score_run(ev, run, prior_run, index)
    items_beam = results.generators[method].items_beam[fcfg.n]
    results.lists[method] = generator_items(gen_run.sids, as_sid_lookup(index), None, items_beam, fcfg.n)
    first = method == cfg.methods[0]
    if first:  # the recall ceiling of these clusters (a diagnostic, not a method)
        ceiling = cluster_oracle(run.test_vectors, run.x, run.ids, sids, max(ev.n_items))
        results.oracles[ORACLE] = evaluate_ranked_items(ceiling, run.targets, n_items=ev.n_items)
    if cfg.tokenizer_beam and REFERENCE not in results.generators:
        beams = tokenizer_beam(tok, index.trie, run.test_vectors, max(ev.beams), index.sid_vocab_sizes)
        results.generators[REFERENCE] = score_run(ev, run, GeneratorRun.from_sids(beams), index)
    if cfg.centroid_beam and CENTROIDS not in results.generators:
        beams = centroid_beam(nodes, run.test_vectors, max(ev.beams))
        results.generators[CENTROIDS] = score_run(ev, run, GeneratorRun.from_sids(beams), index)
    if cfg.sid_hybrid is not None and HYBRID not in results.generators:
        with timings.step(HYBRID):  # fit and search
            hybrid = SidHybrid(from_dict(SidHybridConfig, cfg.sid_hybrid))
            hybrid.fit(sids, run.items["title"].astype(str).tolist(), run.x)
            beams = hybrid.search(run.test_log["query"].tolist(), run.test_vectors, max(ev.beams))
        results.generators[HYBRID] = score_run(ev, run, GeneratorRun.from_sids(beams), index)
    if first:
        for name, overrides in cfg.variants.items():
            with timings.step(f"generator/{name}"):
                params = merge_params(cfg.train, overrides or {})
                variant = train_and_search(cfg, params, index, run, work / "generator" / name)
            results.generators[name] = score_run(ev, run, variant, index)


def score_run(ev: EvaluateConfig, run: JudgedRun, gen_run: GeneratorRun, index: SidIndex) -> GeneratorMetrics:
    """The generator metrics of ``gen_run`` on the test targets (no popularity signal: beam order only)."""
    quality = pd.Series(np.zeros(len(run.ids)), index=run.ids)
    return evaluate_generator(
        gen_run,
        index,
        run.targets,
        quality,
        beams=ev.beams,
        n_items=ev.n_items,
        truncate_n=ev.truncate_n,
        items_beam=ev.items_beam,
    )


def baseline_rankings(run: JudgedRun, k: int) -> dict[str, np.ndarray]:
    """The top ``k`` items per test query of BM25 on titles and of dense retrieval on the embeddings."""
    bm25 = BM25Retriever().fit(run.ids, run.items["title"].astype(str).tolist())
    dense = DenseRetriever().fit(run.ids, run.x)
    return {
        "bm25": bm25.search(run.test_log["query"].tolist(), k).items,
        "dense": dense.search(run.test_vectors, k).items,
    }
