"""The sid stage: fit CQ-SID and the RQ-VAE baseline on the listed items, write SIDs, index, health.

``sid`` (full build) writes, for each method in ``cfg.methods``:

- ``<model_dir>/<method>/``: ``model.safetensors`` + ``tokenizer.json`` (the frozen tokenizer) and
  ``fit.json`` (losses, restarts, seconds);
- ``<out_dir>/<method>/``: ``sid_assignments.parquet`` (SID_ASSIGNMENTS contract) + ``index.json``,
  i.e. a saved ``SidIndex`` (load it with ``SidIndex.load``);
- ``<reports_dir>/sid_health.json`` = ``{"cq_sid": {...}, "rq_vae": {...}}`` and
  ``sid_cluster_sizes.png``.

``sid_update`` (daily rebuild) assigns SIDs to new listed items with the saved frozen tokenizer and
removes delisted ones from the saved index: no training, cost grows with the delta.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genrecall.data.schema import ITEMS, REQUESTS, read_table
from genrecall.data.split import time_split
from genrecall.pipeline.embed import Embeddings, load_embeddings
from genrecall.sid.clusters import ClusterConfig, make_sids
from genrecall.sid.health import plot_cluster_sizes, sid_health
from genrecall.sid.index import SidIndex
from genrecall.sid.tokenizer import METHODS, FitReport, QueryPairs, SidTokenizer, SidTokenizerConfig

SUFFIX_MODE = {"cq_sid": "group", "rq_vae": "dedup"}  # shared clusters vs TIGER's unique IDs


@dataclass(frozen=True)
class SidConfig(SidTokenizerConfig):
    """The sid stage (params.yaml namespace ``sid``): tokenizer settings shared by both methods + these."""

    methods: tuple[str, ...] = ("cq_sid", "rq_vae")  # both, so every claim has its baseline on the same data
    t_max: int = 50  # paper: split clusters above 50 items
    g_max: int = 100  # paper: at most 100 groups per cluster
    query_signals: tuple[str, ...] = ("clicked", "purchased")  # paper: queries that led to clicks/purchases
    # The InfoNCE sees only the training period of the log (the last ``test_days`` are held out for
    # evaluation, the same time split as train_sft/evaluate); None uses the whole log.
    test_days: int | None = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown SID method(s) {unknown}; known: {METHODS}")

    def tokenizer_config(self, method: str) -> SidTokenizerConfig:
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(SidTokenizerConfig)}
        return SidTokenizerConfig(**(base | {"method": method}))

    def cluster_config(self, method: str) -> ClusterConfig:
        return ClusterConfig(suffix_mode=SUFFIX_MODE[method], t_max=self.t_max, g_max=self.g_max, seed=self.seed)


@dataclass
class MethodSummary:
    items: int
    sids: int
    codebook_sizes: list[int]
    items_with_queries: int
    fit_seconds: float


@dataclass
class SidResult:
    methods: dict[str, MethodSummary] = field(default_factory=dict)
    health_path: str = ""
    plot_path: str = ""


@dataclass
class SidUpdateResult:
    """One incremental update per method: how many items joined, left, and how long it took."""

    added: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    sids: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def listed_items(data_dir: str | Path) -> pd.DataFrame:
    """Listed items (``delisted_at`` null), sorted by item_id."""
    items = read_table(ITEMS, data_dir)
    return items[items["delisted_at"].isna()].sort_values("item_id", kind="stable").reset_index(drop=True)


def categories_of(items: pd.DataFrame) -> np.ndarray:
    """Leaf category per item as float64, NaN = unknown (the tokenizer's convention)."""
    return pd.to_numeric(items["category_id"], errors="coerce").astype("float64").to_numpy()


def query_pairs(requests: pd.DataFrame, item_ids: np.ndarray, emb: Embeddings, signals: tuple[str, ...]) -> QueryPairs:
    """Distinct (item row, query row) pairs from the ``signals`` lists of REQUESTS."""
    rows = pd.DataFrame({"query": requests["query"]})
    parts = []
    for col in signals:
        part = rows.assign(item_id=requests[col]).explode("item_id").dropna(subset=["item_id", "query"])
        parts.append(part)
    pairs = pd.concat(parts).drop_duplicates() if parts else pd.DataFrame(columns=["query", "item_id"])
    item_row = pd.Series(np.arange(len(item_ids)), index=item_ids)
    query_row = pd.Series(emb.query_rows(), dtype="int64")
    pairs = pairs[pairs["item_id"].astype("int64").isin(item_row.index) & pairs["query"].isin(query_row.index)]
    return QueryPairs(
        item_index=item_row.loc[pairs["item_id"].astype("int64")].to_numpy(np.int64),
        query_index=query_row.loc[pairs["query"]].to_numpy(np.int64),
    )


def fit_method(
    cfg: SidConfig,
    method: str,
    item_ids: np.ndarray,
    x: np.ndarray,
    cats: np.ndarray,
    query_vectors: np.ndarray | None,
    pairs: QueryPairs | None,
    *,
    show_progress: bool = True,
) -> tuple[SidTokenizer, SidIndex, FitReport]:
    """Fit one method's tokenizer on item embeddings ``x`` and build its SID index."""
    tok = SidTokenizer(cfg.tokenizer_config(method))
    report = tok.fit(x, cats, queries=query_vectors, pairs=pairs, show_progress=show_progress)
    sids = make_sids(tok.assign(x, cats), cfg.cluster_config(method))
    index = SidIndex.build(
        item_ids,
        sids,
        codebook_sizes=tok.codebook_sizes,
        suffix_mode=SUFFIX_MODE[method],
        t_max=cfg.t_max,
        g_max=cfg.g_max,
    )
    return tok, index, report


def sid(
    cfg: SidConfig,
    data_dir: str | Path,
    emb_dir: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    reports_dir: str | Path,
    *,
    show_progress: bool = True,
) -> SidResult:
    """Fit every method in ``cfg.methods`` on the listed items; write tokenizers, indexes, health."""
    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown SID method(s) {unknown}; known: {METHODS}")
    items = listed_items(data_dir)
    ids = items["item_id"].to_numpy(np.int64)
    cats = categories_of(items)
    emb = load_embeddings(emb_dir)
    x = emb.items[emb.item_rows(ids)]
    requests_path = Path(data_dir) / REQUESTS.filename()
    pairs = None
    if requests_path.exists():
        log = read_table(REQUESTS, data_dir)
        if cfg.test_days is not None:
            log = time_split(log, cfg.test_days).train
        pairs = query_pairs(log, ids, emb, cfg.query_signals)

    result = SidResult()
    health: dict[str, dict] = {}
    sizes: dict[str, np.ndarray] = {}
    for method in cfg.methods:
        tok, index, report = fit_method(
            cfg, method, ids, x, cats, emb.query_vectors, pairs, show_progress=show_progress
        )
        sids = index.sid_of(ids)
        tok.save(Path(model_dir) / method)
        (Path(model_dir) / method / "fit.json").write_text(json.dumps(dataclasses.asdict(report), indent=2))
        index.save(Path(out_dir) / method)
        h = sid_health(
            sids, tok.codebook_sizes, categories=cats, category_ids=tok.category_ids if tok.cfg.forcing else None
        )
        health[method] = h.to_dict()
        sizes[method] = index.cluster_sizes()
        result.methods[method] = MethodSummary(
            len(ids), index.n_sids, list(tok.codebook_sizes), report.items_with_queries, report.seconds
        )

    reports = Path(reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "sid_health.json").write_text(json.dumps(health, indent=2))
    result.health_path = str(reports / "sid_health.json")
    result.plot_path = str(plot_cluster_sizes(sizes, reports / "sid_cluster_sizes.png"))
    return result


def sid_update(
    data_dir: str | Path,
    emb_dir: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    methods: tuple[str, ...] = ("cq_sid", "rq_vae"),
    changed: np.ndarray | None = None,
    reports_dir: str | Path | None = None,
) -> SidUpdateResult:
    """Bring saved indexes up to date with ITEMS: new listed items get SIDs from the frozen tokenizer
    and join existing clusters (``SidIndex.add`` rule), delisted/vanished items leave, and items in
    ``changed`` (e.g. a new title, re-embedded) are re-assigned. Indexes are saved in place."""
    items = listed_items(data_dir)
    ids = items["item_id"].to_numpy(np.int64)
    cats = categories_of(items)
    emb = load_embeddings(emb_dir)
    result = SidUpdateResult()
    health: dict[str, dict] = {}
    for method in methods:
        start = time.perf_counter()
        index = SidIndex.load(Path(out_dir) / method)
        tok = SidTokenizer.load(Path(model_dir) / method)
        indexed = index.item_ids()
        gone = np.setdiff1d(indexed, ids, assume_unique=True)
        todo = ~np.isin(ids, indexed)
        if changed is not None:
            todo |= np.isin(ids, np.asarray(changed, dtype=np.int64))
        index.remove(gone)
        if todo.any():
            codes = tok.assign(emb.items[emb.item_rows(ids[todo])], cats[todo])
            index.add(ids[todo], codes)
        index.save(Path(out_dir) / method)
        result.added[method] = int(todo.sum())
        result.removed[method] = len(gone)
        result.sids[method] = index.n_sids
        result.seconds[method] = time.perf_counter() - start
        if reports_dir is not None:
            all_sids = index.sid_of(ids)
            health[method] = sid_health(
                all_sids,
                tok.codebook_sizes,
                categories=cats,
                category_ids=tok.category_ids if tok.cfg.forcing else None,
            ).to_dict()
    if reports_dir is not None:
        Path(reports_dir).mkdir(parents=True, exist_ok=True)
        (Path(reports_dir) / "sid_health.json").write_text(json.dumps(health, indent=2))
    return result
