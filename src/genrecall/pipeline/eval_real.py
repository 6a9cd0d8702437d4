"""``genrecall eval-real``: the whole method on a real judged query-product set.

Judged data (e.g. the Home Depot search-relevance set) has products, queries and crowd relevance
labels, but no categories, users, clicks or timestamps. Queries whose judged items are relevant
(``relevance >= threshold``) play the role of clicks: they feed CQ-SID's query-item InfoNCE and the
Q2SID stage. Products have no category, so CQ-SID here is the query-constrained RQ-VAE with shared
clusters (category forcing has nothing to force). The test judgments' queries are then retrieved by
the CQ-SID generator, the RQ-VAE baseline generator, BM25 and dense retrieval over all products;
the result is one ``judged`` block in the metrics.json format. Nothing is ordered by popularity:
there is none, so truncation keeps beam order (ties by item id).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrecall.config import from_dict
from genrecall.data.judged import load_judged, relevant_pairs
from genrecall.eval.baselines import BM25Retriever, DenseRetriever
from genrecall.eval.metrics import GeneratorMetrics, evaluate_generator, evaluate_ranked_items
from genrecall.eval.report import build_metrics, metrics_block, print_summary, write_metrics
from genrecall.data.text import normalize_query
from genrecall.gen.model import load_generator
from genrecall.pipeline.evaluate import EvaluateConfig, generate_sids
from genrecall.pipeline.sid import SidConfig, fit_method
from genrecall.pipeline.train import TrainConfig, train_method
from genrecall.sid.encoder import EmbeddingCache, EncoderConfig, make_encoder
from genrecall.sid.health import sid_health
from genrecall.sid.tokenizer import QueryPairs


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


@dataclass
class EvalRealResult:
    out: str
    test_queries: int
    test_pairs: int


def judged_log(judgments: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One pseudo request per distinct query: exposed = judged items, clicked = relevant ones."""
    rel = relevant_pairs(judgments, threshold)
    rows = []
    for i, (q, group) in enumerate(judgments.groupby(judgments["query"].map(normalize_query), sort=True)):
        rows.append({"request_id": i, "query": q, "user_id": None, "exposed": group["item_id"].tolist(),
                     "clicked": [int(x) for x in rel.get(q, [])], "purchased": []})  # fmt: skip
    return pd.DataFrame(rows, columns=["request_id", "query", "user_id", "exposed", "clicked", "purchased"])


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
    train_set = load_judged(products_path, train_path)
    test_set = load_judged(products_path, test_path)
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

    # Embeddings (cached by text hash) for products and every query.
    encoder = make_encoder(from_dict(EncoderConfig, cfg.embed))
    cache = EmbeddingCache(cfg.cache_dir, encoder)
    x, _ = cache.encode(items["title"].astype(str).tolist())
    queries = sorted(set(train_log["query"]) | set(test_log["query"]))
    qv, _ = cache.encode(queries)
    qrow = {q: i for i, q in enumerate(queries)}
    pairs_df = train_log[["query", "clicked"]].explode("clicked").dropna()
    item_row = pd.Series(np.arange(len(ids)), index=ids)
    pairs_df = pairs_df[pairs_df["clicked"].astype(np.int64).isin(item_row.index)]
    pairs = QueryPairs(item_index=item_row.loc[pairs_df["clicked"].astype(np.int64)].to_numpy(np.int64),
                       query_index=pairs_df["query"].map(qrow).to_numpy(np.int64))  # fmt: skip
    cats = np.full(len(ids), np.nan)  # no categories in judged data

    sid_cfg = from_dict(SidConfig, {**cfg.sid, "methods": list(cfg.methods), "test_days": None})
    train_cfg = from_dict(TrainConfig, {**cfg.train, "methods": list(cfg.methods), "personalized_methods": []})
    texts = [*items["title"].astype(str), *train_log["query"]]
    quality = pd.Series(np.zeros(len(ids)), index=ids)  # no popularity signal: beam order only
    targets = [list(c) for c in test_log["clicked"]]
    gens: dict[str, GeneratorMetrics] = {}
    health: dict[str, Any] = {}
    for method in cfg.methods:
        tok, index, _ = fit_method(sid_cfg, method, ids, x, cats, qv, pairs)
        tok.save(work / "sid" / method)
        index.save(work / "index" / method)
        health[method] = sid_health(index.sid_of(ids), tok.codebook_sizes).to_dict()
        train_method(train_cfg, index, items, train_log, work / "generator" / method, texts=texts)
        gen = load_generator(work / "generator" / method / "q2sid" / "final")
        prompts = [gen.tokenizer.encode_prompt(normalize_query(q)) for q in test_log["query"]]
        run = generate_sids(gen, index.trie, prompts, max(ev.beams), ev.beam_batch)
        gens[method] = evaluate_generator(run, index, targets, quality, beams=ev.beams, n_items=ev.n_items,
                                          truncate_n=ev.truncate_n, items_beam=ev.items_beam)  # fmt: skip

    k = max(ev.n_items)
    bm25 = BM25Retriever().fit(ids, items["title"].astype(str).tolist())
    dense = DenseRetriever().fit(ids, x)
    test_qv = qv[[qrow[q] for q in test_log["query"]]]
    rankers = {
        "bm25": evaluate_ranked_items(bm25.search(test_log["query"].tolist(), k).items, targets, n_items=ev.n_items),
        "dense": evaluate_ranked_items(dense.search(test_qv, k).items, targets, n_items=ev.n_items),
    }
    block, _ = metrics_block(gens, rankers, baseline=ev.baseline, target_frac=ev.target_frac,
                             report_beams=ev.report_beams)  # fmt: skip
    n_pairs = sum(len(set(t)) for t in targets)
    data = {"preset": "judged", "items": len(ids), "requests": len(train_log), "test_pairs": n_pairs,
            "test_queries": len(test_log), "relevant_threshold": cfg.relevant_threshold,
            "source": {"products": Path(products_path).name, "train": Path(train_path).name,
                       "test": Path(test_path).name}}  # fmt: skip
    metrics = build_metrics(judged=block, sid_health=health, data=data)
    write_metrics(metrics, out)
    (work / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=list))
    print_summary(metrics)
    return EvalRealResult(str(out), len(test_log), n_pairs)
