"""Incremental fine-tuning of the generator for the daily rebuild: warm start + replay.

Each day, for every SID method kept current (``daily.methods``, default the served one) and its served
stage (or ``cfg.stages``), the stage's final generator is loaded (warm start) and trained a few steps on:

- the *new* examples: I2SID for the items listed since yesterday (so the model learns their SIDs),
  plus Q2SID/UQ2SID examples from the requests that just left the evaluation window (the log's time
  split moves one day per day, so the model never trains on a request it is evaluated on);
- a *replay* sample of older examples (``replay_ratio`` x the new ones, drawn from the earlier
  training log and catalog), which keeps the model from forgetting what it knew.

Stages and methods not fine-tuned (I2SID, Q2SID, the RQ-VAE baseline by default) are carried over
unchanged: neither the bundle nor the daily gate uses them, and a full rebuild retrains them all. On
a full-rebuild day (tokenizer refit) the whole progressive SFT runs instead (``pipeline.train.train``).
When production serves an EG-GRPO model, ``daily/lineage.py`` decides where the served stage starts.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrecall.config import from_dict
from genrecall.data.schema import CATEGORIES, ITEMS, REQUESTS, USERS, read_table
from genrecall.data.split import time_split
from genrecall.gen.examples import ExamplesConfig, SidDataset, item_examples, query_examples, user_query_examples
from genrecall.gen.model import load_generator
from genrecall.gen.semantic import SentenceEncoder
from genrecall.gen.sft import SFTConfig, train_sft
from genrecall.gen.tokenizer import TokenizerConfig
from genrecall.pipeline.daily.lineage import LINEAGE, retrain_rl, warm_start
from genrecall.pipeline.daily.state import daily_methods, day_mode, fresh
from genrecall.pipeline.train import TrainConfig, method_contexts, train, train_config
from genrecall.sid.encoder import EncoderConfig
from genrecall.sid.index import SidIndex


@dataclass(frozen=True)
class FinetuneConfig:
    """Daily warm-start fine-tune (params.yaml ``daily.finetune``)."""

    stages: tuple[str, ...] = ()  # () = each method's served (last) stage, the only one the bundle and the
    #                                daily gate use; others are carried over and retrained on full rebuilds
    max_steps: int = 100  # a day's delta is ~1-3% of the catalog: a few epochs over it, not a retrain
    batch_size: int = 64  # as in SFT
    lr: float = 3e-4  # a third of the from-scratch SFT peak: adapt, do not overwrite
    warmup_steps: int = 10  # short warm-up: the optimizer state is fresh, the weights are not
    replay_ratio: float = 1.0  # replayed old examples per new one (continual-learning rule of thumb: 1:1)
    new_items_i2sid: bool = True  # add I2SID rows of today's new items to every fine-tuned stage
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default
    seed: int = 0  # replay sampling and data order (mixed with the day number)

    def sft(self, stage: str, day: int) -> SFTConfig:
        return SFTConfig(
            stage=stage,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            seed=self.seed + day,
            checkpoint_every=0,
            num_threads=self.num_threads,
        )


@dataclass
class FinetuneRun:
    examples: int
    replay: int
    steps: int
    final_loss: float | None
    seconds: float


def new_and_old_requests(
    before: pd.DataFrame, after: pd.DataFrame, test_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(requests that entered the training period today, requests already in it before).

    Each frame needs only ``request_id`` and ``ts``; the rows returned are ``after``'s.
    """
    old_ids = time_split(before, test_days).train["request_id"]
    new_train = time_split(after, test_days).train
    was_in = new_train["request_id"].isin(old_ids)
    return new_train[~was_in].reset_index(drop=True), new_train[was_in].reset_index(drop=True)


def _sample(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    if n <= 0 or df.empty:
        return df.iloc[:0]
    return df.iloc[np.sort(rng.choice(len(df), size=min(n, len(df)), replace=False))]


def stage_dataset(
    stage: str,
    tok: Any,
    assignments: pd.DataFrame,
    *,
    new_requests: pd.DataFrame,
    new_items: pd.DataFrame,
    replay_requests: pd.DataFrame,
    replay_items: pd.DataFrame,
    contexts: Any,
    cfg: FinetuneConfig,
    ex_cfg: ExamplesConfig,
) -> tuple[SidDataset, int]:
    """The day's examples for one stage: new + replay; returns (dataset, replayed rows)."""

    def build(requests: pd.DataFrame, items: pd.DataFrame) -> SidDataset:
        parts = [item_examples(items, assignments, tok)] if cfg.new_items_i2sid and len(items) else []
        if len(requests):
            parts.append(
                query_examples(requests, assignments, tok, ex_cfg)
                if stage == "q2sid"
                else user_query_examples(requests, assignments, tok, contexts, ex_cfg)
            )
        return SidDataset.concat(*parts, kind=stage) if parts else SidDataset([], np.empty((0, tok.sid_depth)))

    new, replay = build(new_requests, new_items), build(replay_requests, replay_items)
    return SidDataset.concat(new, replay, kind=stage), len(replay)


def _stage_order(stage_dir: Any) -> int:
    from genrecall.gen.sft import STAGES

    return STAGES.index(stage_dir.name) if stage_dir.name in STAGES else len(STAGES)


@dataclass
class _Day:
    """One incremental day: where things are, the settings, and the day's new and replayed examples."""

    ws: Any  # the daily workspace
    day: int
    params: dict[str, Any]
    train_cfg: TrainConfig
    cfg: FinetuneConfig
    ex_cfg: ExamplesConfig
    out: Path  # the day's generator stage
    new_requests: pd.DataFrame
    replay_requests: pd.DataFrame
    new_items: pd.DataFrame
    replay_items: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    categories: pd.DataFrame


def finetune_day(ws: Any, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune into ``ws.stage(day, generator)`` (warm start from the live generator), or retrain on a
    full-rebuild day. Returns ``{"mode", "runs": {"<method>/<stage>": FinetuneRun}}``."""
    train_cfg = train_config(params)
    data, out = ws.stage(day, ws.validated), fresh(ws.stage(day, ws.generator))
    if day_mode(ws, day) == "full":
        return _full_rebuild(ws, day, params, train_cfg, data, out)
    today = _day_examples(ws, day, params, train_cfg, data, out)
    runs: dict[str, dict[str, Any]] = {}
    warm_starts: dict[str, str] = {}
    methods = daily_methods(params)
    for method_dir in sorted(p for p in ws.path("generator").iterdir() if p.is_dir()):
        if method_dir.name in methods:
            _finetune_method(today, method_dir, runs, warm_starts)
        else:  # not kept current daily (daily.methods): carried over as it is
            shutil.copytree(method_dir, out / method_dir.name)
    return {
        "mode": "incremental",
        "new_requests": len(today.new_requests),
        "new_items": len(today.new_items),
        "runs": runs,
        "warm_start": warm_starts,
    }


def _full_rebuild(
    ws: Any, day: int, params: dict[str, Any], train_cfg: TrainConfig, data: Path, out: Path
) -> dict[str, Any]:
    """A full-rebuild day: train every method from scratch on the day's data (and retrain RL)."""
    encoder = None
    if from_dict(TokenizerConfig, train_cfg.tokenizer).semantic_tokens:
        encoder = SentenceEncoder(from_dict(EncoderConfig, train_cfg.embed), ws.path("cache"))
    res = train(
        train_cfg,
        data,
        ws.stage(day, ws.sid),
        out,
        ws.stage(day, ws.reports),
        feast_repo=ws.path("repo"),
        feast_data_dir=ws.stage(day, ws.feast),
        encoder=encoder,
        show_progress=False,
    )
    runs = {
        f"{m}/{s}": {
            "examples": v["examples"],
            "replay": 0,
            "steps": v["steps"],
            "final_loss": v["final_loss"],
            "seconds": v["seconds"],
        }
        for m, st in res.stages.items()
        for s, v in st.items()
    }
    return {"mode": "full", "runs": runs, "rl": retrain_rl(ws, day, params, out, train_cfg)}


def _day_examples(ws: Any, day: int, params: dict[str, Any], train_cfg: TrainConfig, data: Path, out: Path) -> _Day:
    """Today's new requests and items (entered training since the live data) and the replay sample of old ones."""
    cfg = from_dict(FinetuneConfig, (params.get("daily") or {}).get("finetune"))
    live = ws.path("validated")
    keys = ["request_id", "ts"]  # split and sample on these; whole rows (list columns) for the chosen ones only
    new_keys, old_keys = new_and_old_requests(
        read_table(REQUESTS, live, columns=keys), read_table(REQUESTS, data, columns=keys), train_cfg.test_days
    )
    items, users, categories = read_table(ITEMS, data), read_table(USERS, data), read_table(CATEGORIES, data)
    listed = items[items["delisted_at"].isna()]
    known = read_table(ITEMS, live, columns=["item_id"])["item_id"]
    new_items, old_items = listed[~listed["item_id"].isin(known)], listed[listed["item_id"].isin(known)]
    rng = np.random.default_rng([cfg.seed, day])
    replay_keys = _sample(old_keys, round(cfg.replay_ratio * len(new_keys)), rng)
    wanted = np.concatenate([new_keys["request_id"].to_numpy(), replay_keys["request_id"].to_numpy()])
    rows = read_table(REQUESTS, data, filters=[("request_id", "in", wanted)]).set_index("request_id", drop=False)
    return _Day(
        ws,
        day,
        params,
        train_cfg,
        cfg,
        from_dict(ExamplesConfig, train_cfg.examples),
        out,
        new_requests=rows.loc[new_keys["request_id"]].reset_index(drop=True),
        replay_requests=rows.loc[replay_keys["request_id"]].reset_index(drop=True),
        new_items=new_items,
        replay_items=_sample(old_items, round(cfg.replay_ratio * len(new_items)), rng),
        items=items,
        users=users,
        categories=categories,
    )


def _finetune_method(
    today: _Day, method_dir: Path, runs: dict[str, dict[str, Any]], warm_starts: dict[str, str]
) -> None:
    """Fine-tune the tuned stages of one method (the others are copied); record runs and warm starts."""
    ws, method = today.ws, method_dir.name
    stage_dirs = sorted((p for p in method_dir.iterdir() if (p / "final").is_dir()), key=_stage_order)
    tuned = set(today.cfg.stages) if today.cfg.stages else {stage_dirs[-1].name}
    assignments = SidIndex.load(ws.stage(today.day, ws.sid) / method).to_frame()
    contexts = None
    for stage_dir in stage_dirs:
        stage, target = stage_dir.name, today.out / method / stage_dir.name
        if stage not in tuned:
            shutil.copytree(stage_dir / "final", target / "final")
            continue
        if stage == "uq2sid" and contexts is None:  # point-in-time user context (Feast by default)
            contexts = _user_contexts(today, method, assignments)
        warm = stage_dir / "final"  # the warm start: the live generator's weights ...
        if stage == stage_dirs[-1].name:  # ... or, for the served stage, maybe what production serves
            warm = _served_stage_warm_start(today, method, stage, target, warm_starts)
        run = _finetune_stage(today, stage, warm, target, assignments, contexts or {})
        if run is not None:
            runs[f"{method}/{stage}"] = run


def _user_contexts(today: _Day, method: str, assignments: pd.DataFrame) -> dict[int, Any]:
    """Point-in-time user contexts for the day's new and replayed requests in ``method``'s SID space."""
    ws = today.ws
    return method_contexts(
        today.train_cfg,
        method,
        pd.concat([today.new_requests, today.replay_requests], ignore_index=True),
        today.users,
        today.items,
        today.categories,
        assignments,
        ws.path("repo"),
        ws.stage(today.day, ws.feast),
        today.ex_cfg,
    )


def _served_stage_warm_start(today: _Day, method: str, stage: str, target: Path, warm_starts: dict[str, str]) -> Path:
    """The served stage's warm start (the live weights or what production serves, see ``warm_start``);
    records why in ``warm_starts`` and writes its lineage next to the target."""
    start = warm_start(today.ws, today.params, method, stage)
    warm_starts[f"{method}/{stage}"] = start.why
    if start.lineage:
        target.mkdir(parents=True, exist_ok=True)
        (target / LINEAGE).write_text(json.dumps({"lineage": start.lineage}) + "\n")
    return start.path


def _finetune_stage(
    today: _Day, stage: str, warm: Path, target: Path, assignments: pd.DataFrame, contexts: Any
) -> dict[str, Any] | None:
    """Warm-start from ``warm`` and train on the stage's new + replayed examples into ``target``; the run as
    a dict, or None when the day has no examples for it (``warm`` is copied as the final)."""
    model, tok = load_generator(warm)
    dataset, replay = stage_dataset(
        stage,
        tok,
        assignments,
        new_requests=today.new_requests,
        new_items=today.new_items,
        replay_requests=today.replay_requests,
        replay_items=today.replay_items,
        contexts=contexts,
        cfg=today.cfg,
        ex_cfg=today.ex_cfg,
    )
    if len(dataset) == 0:
        shutil.copytree(warm, target / "final")
        return None
    encoder = SentenceEncoder.for_model(model, cache_dir=today.ws.path("cache"))  # the day's embed cache
    if encoder is not None:
        dataset = dataset.with_vectors(encoder)
    res = train_sft(model, tok, dataset, today.cfg.sft(stage, today.day), target, show_progress=False)
    shutil.rmtree(target / "checkpoints", ignore_errors=True)  # the day's final is what matters
    final_loss = round(res.losses[-1], 4) if res.losses else None
    return dataclasses.asdict(FinetuneRun(len(dataset), replay, res.steps, final_loss, round(res.seconds, 2)))
