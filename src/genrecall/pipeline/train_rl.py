"""The train_rl stage: EG-GRPO (and plain GRPO) on top of the final UQ2SID checkpoint.

For each variant in ``train_rl.variants`` (default ``grpo`` = K 0, ``eg_grpo_k2``, ``eg_grpo_k4``):
start from ``<gen_dir>/<method>/uq2sid/final``, run `genrecall.rl.train_grpo` on logged requests of the
*training* period (same time split as train_sft), and save the generator to
``<out_dir>/<method>/<variant>/final`` (same layout as SFT, so evaluate and package load it as is).

The stage writes to its own directory (``models/rl``) rather than under ``models/generator``: DVC
refuses one stage's output nested inside another's. Prompts are the UQ2SID prompts of the requests,
with the user's point-in-time context (Feast, as in training), so nothing sees its own future.

Reports: ``<reports_dir>/train_rl.json`` (per variant: config, means and first/last-tenth means of
reward, zero-variance share, unique SIDs per group, KL, loss) and ``<reports_dir>/train_rl/<variant>.csv``
(step logs, for ``dvc plots``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genrecall.config import from_dict
from genrecall.data.schema import CATEGORIES, ITEMS, REQUESTS, USERS, read_table
from genrecall.data.split import time_split
from genrecall.data.text import normalize_query
from genrecall.gen.examples import ExamplesConfig, UserContext, encode_user_query, sid_lookup
from genrecall.gen.model import load_generator
from genrecall.gen.semantic import is_semantic, vectors_for
from genrecall.gen.tokenizer import GenTokenizer
from genrecall.pipeline.train import TrainConfig, method_contexts
from genrecall.rl.grpo import GRPOConfig, RLDataset, train_grpo, write_log_csv
from genrecall.rl.reward import QualityRanker, RewardConfig, requests_sids
from genrecall.sid.index import SidIndex


def _default_variants() -> dict[str, dict[str, Any]]:
    return {"grpo": {"experts": 0}, "eg_grpo_k2": {"experts": 2}, "eg_grpo_k4": {"experts": 4}}


@dataclass(frozen=True)
class TrainRLConfig:
    """The train_rl stage (params.yaml ``train_rl``); split, context source and prompt sizes come from ``train``."""

    method: str = "cq_sid"  # the SID space whose personalized generator is aligned
    init_stage: str = "uq2sid"  # paper: EG-GRPO starts from the last SFT stage
    variants: dict[str, dict[str, Any]] = field(default_factory=_default_variants)  # name -> GRPOConfig overrides
    grpo: dict[str, Any] = field(default_factory=dict)  # GRPOConfig shared by every variant
    reward: dict[str, Any] = field(default_factory=dict)  # RewardConfig (paper tiers by default)
    ranker: str = "none"  # "none" (the paper's reward) | "quality" (built-in ranker score, needs reward.ranker_weight)
    known_users_only: bool = True  # the personalized test set has known users only: train on the same kind
    max_requests: int | None = 8000  # requests sampled for prompts (contexts are looked up for these only)
    seed: int = 0  # request sampling
    quality_prior_strength: float = 20.0  # smoothed CTR of the "quality" ranker, as evaluate computes it


@dataclass
class TrainRLResult:
    out_dir: str
    requests: int
    variants: dict[str, dict[str, Any]]  # name -> {"final_dir", "config", "summary"}


def rl_requests(train_log: pd.DataFrame, cfg: TrainRLConfig) -> pd.DataFrame:
    """Training-period requests with a click and a query (and a known user), sampled to ``max_requests``."""
    keep = train_log["clicked"].map(lambda c: c is not None and len(c) > 0)
    keep &= train_log["query"].map(lambda q: bool(normalize_query(q)))
    if cfg.known_users_only:
        keep &= train_log["user_id"].notna()
    rows = train_log[keep]
    if cfg.max_requests is not None and len(rows) > cfg.max_requests:
        rows = rows.sample(n=cfg.max_requests, random_state=cfg.seed)
    return rows.sort_values("request_id").reset_index(drop=True)


def rl_dataset(
    rows: pd.DataFrame,
    tokenizer: GenTokenizer,
    lookup: dict[int, tuple[int, ...]],
    contexts: dict[int, UserContext],
    ex_cfg: ExamplesConfig,
) -> RLDataset:
    """UQ2SID prompts (context clipped as in training) + the SIDs of each request's lists."""
    prompts = []
    for q, rid in zip(rows["query"], rows["request_id"]):
        ctx = contexts.get(int(rid))
        if ctx is not None:
            ctx = UserContext(
                ctx.gender,
                ctx.age_band,
                ctx.price_tier,
                tuple(ctx.recent_sids)[-ex_cfg.max_history :],
                tuple(ctx.recent_categories)[-ex_cfg.max_categories :],
            )
        prompts.append(encode_user_query(tokenizer, normalize_query(q), ctx))
    return RLDataset(prompts, requests_sids(rows, lookup), rows["request_id"].to_numpy(np.int64))


def with_query_vectors(data: RLDataset, rows: pd.DataFrame, model: torch.nn.Module) -> RLDataset:
    """``data`` with the sentence vectors of its queries when ``model`` reads them (gen/semantic.py)."""
    vectors = vectors_for(model, [normalize_query(q) for q in rows["query"]])
    return dataclasses.replace(data, vectors=vectors)


def train_rl(
    cfg: TrainRLConfig,
    data_dir: str | Path,
    sid_dir: str | Path,
    gen_dir: str | Path,
    out_dir: str | Path,
    reports_dir: str | Path,
    *,
    train_cfg: TrainConfig | None = None,
    feast_repo: str | Path = "feature_repo",
    feast_data_dir: str | Path = "data/feast",
    show_progress: bool = True,
) -> TrainRLResult:
    """Train every RL variant from the SFT checkpoint; write generators and reports."""
    from genrecall.pipeline.evaluate import item_quality

    train_cfg = train_cfg or TrainConfig()
    ex_cfg = from_dict(ExamplesConfig, train_cfg.examples)
    reward_cfg = from_dict(RewardConfig, cfg.reward)
    if cfg.ranker not in ("none", "quality"):
        raise ValueError(f"train_rl.ranker must be 'none' or 'quality', not {cfg.ranker!r}")
    index = SidIndex.load(Path(sid_dir) / cfg.method)
    init = Path(gen_dir) / cfg.method / cfg.init_stage / "final"
    if not init.exists():
        raise FileNotFoundError(f"{init} does not exist: run train_sft first")
    split = time_split(read_table(REQUESTS, data_dir), train_cfg.test_days)
    rows = rl_requests(split.train, cfg)
    if rows.empty:
        raise ValueError("no training-period request with a click to learn from")
    items = read_table(ITEMS, data_dir)
    contexts = method_contexts(
        train_cfg,
        cfg.method,
        rows,
        read_table(USERS, data_dir),
        items,
        read_table(CATEGORIES, data_dir),
        index.to_frame(),
        feast_repo,
        feast_data_dir,
        ex_cfg,
    )
    tok = load_generator(init).tokenizer
    data = rl_dataset(rows, tok, sid_lookup(index.to_frame()), contexts, ex_cfg)
    ranker = None
    if cfg.ranker == "quality":
        ids = index.item_ids()
        ranker = QualityRanker(index.items, item_quality(split.train, ids, cfg.quality_prior_strength))

    reports = Path(reports_dir)
    variants: dict[str, dict[str, Any]] = {}
    for name, overrides in cfg.variants.items():
        gcfg = from_dict(GRPOConfig, {**cfg.grpo, **(overrides or {})})
        gen = load_generator(init, device=gcfg.device)
        if is_semantic(gen.model) and data.vectors is None:
            data = with_query_vectors(data, rows, gen.model)
        res = train_grpo(
            gen.model,
            gen.tokenizer,
            index.trie,
            data,
            gcfg,
            Path(out_dir) / cfg.method / name,
            reward_cfg=reward_cfg,
            ranker=ranker,
            show_progress=show_progress,
        )
        write_log_csv(reports / "train_rl" / f"{name}.csv", res.logs)
        variants[name] = {"final_dir": str(res.final_dir), "config": asdict(gcfg), "summary": res.summary()}
    result = TrainRLResult(str(out_dir), len(data), variants)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "train_rl.json").write_text(json.dumps(asdict(result), indent=2, sort_keys=True, default=str))
    return result
