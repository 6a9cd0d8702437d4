"""The train_sft stage: progressive SFT of the generator for each SID method.

For every method in ``cfg.methods`` (CQ-SID and the RQ-VAE baseline, same generator, same data):
train a text BPE + SID tokenizer, build the generator, then run the paper's progressive stages,
each warm-started from the previous one:

1. I2SID  item title -> SID           (every listed item, plus ``pseudo`` query-like texts per item)
2. Q2SID  query -> clicked SIDs       (training period of the log only)
3. UQ2SID user + query -> SID         (``personalized_methods`` only; user context from Feast,
                                       point-in-time, so no example sees its own future)

Outputs ``<out_dir>/<method>/<stage>/final`` (generator dirs), ``loss.csv`` per stage and
``<reports_dir>/train.json`` (steps, final loss, examples/s per stage).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from genrecall.config import from_dict
from genrecall.data.schema import CATEGORIES, ITEMS, REQUESTS, USERS, read_table
from genrecall.data.split import time_split
from genrecall.gen.examples import (
    ExamplesConfig,
    SidDataset,
    UserContext,
    context_from_features,
    item_examples,
    query_examples,
    user_contexts_from_log,
    user_query_examples,
)
from genrecall.gen.model import GeneratorConfig, make_generator
from genrecall.gen.pseudo import PseudoQueryConfig, pseudo_query_examples
from genrecall.gen.semantic import SentenceEncoder
from genrecall.gen.sft import STAGES, SFTConfig, train_progressive
from genrecall.gen.teacher import TeacherConfig, relabel_with_teacher
from genrecall.gen.tokenizer import PROFILE_FIELDS, GenTokenizer, TokenizerConfig
from genrecall.sid.encoder import EncoderConfig
from genrecall.sid.index import SidIndex


@dataclass(frozen=True)
class TrainConfig:
    """The train_sft stage (params.yaml ``train``). Nested blocks map onto the gen configs."""

    methods: tuple[str, ...] = ("cq_sid", "rq_vae")  # every claim is made against the baseline
    personalized_methods: tuple[str, ...] = ("cq_sid",)  # UQ2SID only where the personalized set needs it
    test_days: int = 2  # the last days of the log are held out for evaluation (time split)
    context_source: str = "feast"  # "feast" (point-in-time historical features) | "log" (no Feast)
    tokenizer: dict[str, Any] = field(default_factory=dict)  # TokenizerConfig
    model: dict[str, Any] = field(default_factory=dict)  # GeneratorConfig
    examples: dict[str, Any] = field(default_factory=dict)  # ExamplesConfig
    embed: dict[str, Any] = field(default_factory=dict)  # EncoderConfig of a semantic prompt (= the embed stage's)
    pseudo: dict[str, Any] = field(default_factory=dict)  # PseudoQueryConfig: extra I2SID rows per item (DSI-QG)
    teacher: dict[str, Any] = field(default_factory=dict)  # TeacherConfig: pseudo-queries -> dense-teacher clusters
    i2sid: dict[str, Any] = field(default_factory=dict)  # SFTConfig of each stage
    q2sid: dict[str, Any] = field(default_factory=dict)
    uq2sid: dict[str, Any] = field(default_factory=dict)

    def stage_config(self, stage: str) -> SFTConfig:
        return from_dict(SFTConfig, {"stage": stage, **getattr(self, stage)})


def train_config(params: dict[str, Any]) -> TrainConfig:
    """params.yaml ``train``, its semantic prompt's encoder taken from ``embed`` (one encoder for both)."""
    block = dict(params.get("train") or {})
    block.setdefault("embed", params.get("embed") or {})
    return from_dict(TrainConfig, block)


@dataclass
class TrainResult:
    out_dir: str
    stages: dict[str, dict[str, dict[str, Any]]]  # method -> stage -> summary


def train_texts(items: pd.DataFrame, requests: pd.DataFrame) -> list[str]:
    """What the text BPE learns from: item titles and training-period queries."""
    return [*items["title"].dropna().astype(str), *requests["query"].dropna().astype(str)]


def profile_values(users: pd.DataFrame) -> dict[str, list[str]]:
    return {f: sorted(users[f].dropna().astype(str).unique()) for f in PROFILE_FIELDS if f in users}


def feast_contexts(
    requests: pd.DataFrame, categories: pd.DataFrame, repo_path: str | Path, feast_data_dir: str | Path
) -> dict[int, UserContext]:
    """User context of every logged-in request, point-in-time, from Feast's historical features."""
    from genrecall.features.store import training_frame

    known = requests[requests["user_id"].notna()]
    entity = pd.DataFrame(
        {
            "request_id": known["request_id"].to_numpy(),
            "user_id": known["user_id"].astype(str).to_numpy(),
            "event_timestamp": pd.to_datetime(known["ts"], utc=True),
        }
    )
    frame = training_frame(repo_path, entity, data_dir=feast_data_dir)
    return contexts_from_features(frame, categories)


def contexts_from_features(frame: pd.DataFrame, categories: pd.DataFrame) -> dict[int, UserContext]:
    """Feast rows -> UserContext per request, with the same conversion the retriever uses."""
    names = dict(zip(categories["category_id"].astype(int), categories["name"].astype(str)))
    return {
        int(row.request_id): context_from_features(
            row, names, max_history=len(row.recent_sids) or 1, max_categories=len(row.recent_categories) or 1
        )
        for row in frame.itertuples(index=False)
    }


def train(
    cfg: TrainConfig,
    data_dir: str | Path,
    sid_dir: str | Path,
    out_dir: str | Path,
    reports_dir: str | Path,
    *,
    feast_repo: str | Path = "feature_repo",
    feast_data_dir: str | Path = "data/feast",
    encoder: SentenceEncoder | None = None,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train the generator of every method on the training period of the log.

    ``encoder``: the pipeline's sentence encoder, for a semantic-prompt generator; by default the
    ``embed`` stage's encoder through its cache ``cache_dir`` when ``cfg.tokenizer`` asks."""
    if encoder is None and from_dict(TokenizerConfig, cfg.tokenizer).semantic_tokens:
        encoder = SentenceEncoder(from_dict(EncoderConfig, cfg.embed), cache_dir)
    items = read_table(ITEMS, data_dir)
    listed = items[items["delisted_at"].isna()]
    users = read_table(USERS, data_dir)
    categories = read_table(CATEGORIES, data_dir)
    split = time_split(read_table(REQUESTS, data_dir), cfg.test_days)
    train_log = split.train
    ex_cfg = from_dict(ExamplesConfig, cfg.examples)
    texts = train_texts(listed, train_log)

    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method in cfg.methods:
        index = SidIndex.load(Path(sid_dir) / method)
        contexts = None
        if method in cfg.personalized_methods:
            contexts = method_contexts(
                cfg, method, train_log, users, items, categories, index.to_frame(), feast_repo, feast_data_dir, ex_cfg
            )
        summary[method] = train_method(
            cfg,
            index,
            listed,
            train_log,
            Path(out_dir) / method,
            texts=texts,
            profiles=profile_values(users),
            contexts=contexts,
            encoder=encoder,
            show_progress=show_progress,
        )
    result = TrainResult(str(out_dir), summary)
    Path(reports_dir).mkdir(parents=True, exist_ok=True)
    (Path(reports_dir) / "train.json").write_text(json.dumps(asdict(result), indent=2, sort_keys=True))
    return result


def train_method(
    cfg: TrainConfig,
    index: SidIndex,
    items: pd.DataFrame,
    train_log: pd.DataFrame,
    out_dir: Path,
    *,
    texts: list[str],
    profiles: dict[str, list[str]] | None = None,
    contexts: dict[int, UserContext] | None = None,
    encoder: SentenceEncoder | None = None,
    show_progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Tokenizer + generator for one SID space, trained I2SID -> Q2SID (-> UQ2SID when ``contexts``).

    ``encoder`` (the pipeline's cached sentence encoder) feeds a semantic-prompt generator
    (``tokenizer.semantic_tokens`` > 0) and is recorded in its config; required then, unused otherwise.
    """
    ex_cfg = from_dict(ExamplesConfig, cfg.examples)
    assignments = index.to_frame()
    tok = GenTokenizer.train(
        texts, index.sid_vocab_sizes, from_dict(TokenizerConfig, cfg.tokenizer), profile_values=profiles
    )
    titles = item_examples(items, assignments, tok)
    pseudo = pseudo_query_examples(items, assignments, tok, from_dict(PseudoQueryConfig, cfg.pseudo))
    teacher = from_dict(TeacherConfig, cfg.teacher)
    if teacher.enabled:
        pseudo = teach(pseudo, titles, encoder, teacher)
    datasets: dict[str, SidDataset] = {
        "i2sid": SidDataset.concat(titles, pseudo, kind="i2sid"),
        "q2sid": query_examples(train_log, assignments, tok, ex_cfg),
    }
    if contexts is not None:
        datasets["uq2sid"] = user_query_examples(train_log, assignments, tok, contexts, ex_cfg)
    gen_cfg = from_dict(GeneratorConfig, cfg.model)
    if tok.semantic_tokens:
        if encoder is None:
            raise ValueError("train.tokenizer.semantic_tokens > 0 needs the sentence encoder (encoder=...)")
        datasets = {stage: ds.with_vectors(encoder) for stage, ds in datasets.items()}
        gen_cfg = dataclasses.replace(gen_cfg, semantic_dim=encoder.dim, semantic_encoder=encoder.to_dict())
    model = make_generator(gen_cfg, tok)
    configs = {s: cfg.stage_config(s) for s in STAGES if s in datasets}
    results = train_progressive(model, tok, datasets, configs, out_dir, show_progress=show_progress)
    return {
        s: {
            "examples": len(datasets[s]),
            "steps": r.steps,
            "final_loss": r.losses[-1] if r.losses else None,
            "examples_per_s": round(r.examples_per_s, 1),
            "seconds": round(r.seconds, 1),
        }
        for s, r in results.items()
    }


def teach(pseudo: SidDataset, titles: SidDataset, encoder: SentenceEncoder | None, cfg: TeacherConfig) -> SidDataset:
    """``pseudo`` with a ``cfg.share`` of its rows relabelled by the dense teacher (gen/teacher.py) over the
    catalog of ``titles`` (I2SID's item rows: one per item with a SID, its text and SID), in the sentence
    vectors the semantic prompt reads."""
    if encoder is None:
        raise ValueError("train.teacher needs the sentence encoder (encoder=...)")
    labels = relabel_with_teacher(pseudo, encoder(pseudo.texts), encoder(titles.texts), titles.targets, cfg)
    n, kept = labels.relabelled, labels.kept_own
    print(f"teacher: {n:,} of {len(pseudo):,} pseudo-queries relabelled ({kept:,} kept their own SID)")
    return labels.dataset


def method_contexts(
    cfg: TrainConfig,
    method: str,
    requests: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    categories: pd.DataFrame,
    assignments: pd.DataFrame,
    feast_repo: str | Path,
    feast_data_dir: str | Path,
    ex_cfg: ExamplesConfig,
) -> dict[int, UserContext]:
    """Point-in-time user contexts for ``requests``: from Feast (which holds the production CQ-SIDs)
    or, for another SID space or without Feast, recomputed from the log with the same rule."""
    if cfg.context_source == "feast" and method == "cq_sid":
        return feast_contexts(requests, categories, feast_repo, feast_data_dir)
    if cfg.context_source not in ("feast", "log"):
        raise ValueError(f"train.context_source must be 'feast' or 'log', not {cfg.context_source!r}")
    return user_contexts_from_log(
        requests,
        users,
        assignments,
        items=items,
        categories=categories,
        max_history=ex_cfg.max_history,
        max_categories=ex_cfg.max_categories,
    )
