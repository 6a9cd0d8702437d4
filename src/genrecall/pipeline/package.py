"""The package stage: pipeline outputs -> a verified bundle in the BentoML model store -> the gate.

Reads the final generator, the frozen SID tokenizer and its index, titles and the search log (for
item quality = smoothed CTR, the same formula as the Feast ``item_features`` view) and
``reports/metrics.json``; writes one bundle to the store and lets the gate decide whether it becomes
production. A rejected bundle stays in the store (``bentoml models list``) and the old one keeps
serving. ``report`` (optional) gets the result as JSON, for DVC.

Which generator: with ``rl_dir`` given, the personalized candidates in ``select_candidates`` (the SFT
model ``cq_sid`` and the train_rl variants) compete on ``select_metric`` in metrics.json; a candidate
whose ``select_guard`` metric falls more than ``select_guard_rel_drop`` (relative) below the
baseline's is out (RL must not buy top-1 gains with deep recall). The choice and every candidate's
numbers are recorded in the manifest's metrics under ``served``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrecall.config import load_params, params_hash
from genrecall.data.schema import CATEGORIES, ITEMS, REQUESTS, read_table
from genrecall.features.sources import log_ctr, log_exposure_stats, quality_score
from genrecall.serving.bundle import BUNDLE_NAME, data_version, save_to_store, write_bundle
from genrecall.serving.gate import GateConfig, ProductionPointer, gate
from genrecall.serving.showcase import showcase


@dataclass(frozen=True)
class PackageConfig:
    """The package stage (params.yaml ``package``); the gate has its own namespace ``gate``."""

    name: str = BUNDLE_NAME  # BentoML model name of the bundles
    quality_prior_strength: float = 20.0  # same as features.quality_prior_strength, so serving and Feast agree
    quality_prior_ctr: float | None = None  # None = the log's CTR (as the features stage does)
    run_gate: bool = True  # False: only save the bundle; promote later with `genrecall promote TAG`
    select_candidates: tuple[str, ...] = ("cq_sid",)  # personalized methods that may be served; cq_sid = SFT
    select_metric: str = "personalized/{method}/clk@10"  # higher wins (paper Table 4 headline)
    select_guard: str = "personalized/{method}/hitrate@100"  # deep recall must hold ...
    select_guard_rel_drop: float = 0.01  # ... within 1% relative of the baseline (issue 5)
    select_baseline: str = "cq_sid"  # what the guard compares against, and the fallback


@dataclass
class PackageResult:
    tag: str
    version: str
    promoted: bool
    production: str | None  # production after the gate
    previous: str | None  # production before it
    reasons: list[str] = field(default_factory=list)
    items: int = 0
    sids: int = 0
    seconds: float = 0.0
    served: str = ""  # the personalized method the bundle's generator is (select_generator)


@dataclass
class Selection:
    method: str
    generator_dir: str
    rule: str
    candidates: dict[str, dict[str, float | None]]  # method -> {"metric", "guard", "eligible"}


def _metric(metrics: dict[str, Any], template: str, method: str) -> float | None:
    node: Any = metrics
    for key in template.format(method=method).split("/"):
        node = node.get(key) if isinstance(node, dict) else None
    return float(node) if isinstance(node, (int, float)) else None


def select_generator(cfg: PackageConfig, metrics: dict[str, Any], dirs: dict[str, Path]) -> Selection:
    """The candidate with the best ``select_metric`` among those present whose guard holds (else the baseline)."""
    base_guard = _metric(metrics, cfg.select_guard, cfg.select_baseline)
    table: dict[str, dict[str, float | None]] = {}
    best, best_value = cfg.select_baseline, float("-inf")
    for m in cfg.select_candidates:
        value, guard = _metric(metrics, cfg.select_metric, m), _metric(metrics, cfg.select_guard, m)
        ok = (
            m in dirs
            and dirs[m].exists()
            and value is not None
            and (base_guard is None or (guard is not None and guard >= base_guard * (1 - cfg.select_guard_rel_drop)))
        )
        table[m] = {"metric": value, "guard": guard, "eligible": float(ok)}
        if ok and value is not None and value > best_value:  # ties keep the earlier candidate (list the baseline first)
            best, best_value = m, value
    rule = (
        f"max {cfg.select_metric} over {list(cfg.select_candidates)} with {cfg.select_guard} >= "
        f"(1 - {cfg.select_guard_rel_drop}) x {cfg.select_baseline}'s"
    )
    return Selection(best, str(dirs[best]), rule, table)


def item_quality(data_dir: str | Path, *, strength: float = 20.0, prior_ctr: float | None = None) -> pd.DataFrame:
    """item_id, title, category_id, quality for every item in ITEMS (quality from REQUESTS)."""
    items = read_table(ITEMS, data_dir)
    requests_path = Path(data_dir) / REQUESTS.filename()
    stats = (
        log_exposure_stats(data_dir)
        if requests_path.exists()
        else pd.DataFrame({"item_id": pd.Series(dtype=np.int64), "exposures": 0, "clicks": 0})
    )
    prior = prior_ctr if prior_ctr is not None else log_ctr(stats) if len(stats) else 0.05
    df = items[["item_id", "title", "category_id"]].merge(stats, on="item_id", how="left")
    clicks, exposures = df["clicks"].fillna(0).to_numpy(), df["exposures"].fillna(0).to_numpy()
    return df.assign(quality=quality_score(clicks, exposures, prior_ctr=prior, strength=strength))


def package(
    cfg: PackageConfig | None = None,
    gate_cfg: GateConfig | None = None,
    *,
    generator_dir: str | Path = "models/generator/cq_sid/uq2sid/final",
    sid_model_dir: str | Path = "models/sid/cq_sid",
    index_dir: str | Path = "data/sid/cq_sid",
    data_dir: str | Path = "data/validated",
    metrics_path: str | Path | None = "reports/metrics.json",
    params: dict[str, Any] | None = None,
    dvc_lock: str | Path = "dvc.lock",
    report: str | Path | None = None,
    rl_dir: str | Path | None = None,
    force: bool = False,
) -> PackageResult:
    """Build, store and gate one bundle; returns what happened.

    ``rl_dir`` (the train_rl output) lets ``select_candidates`` other than the baseline compete;
    None ships ``generator_dir``.
    """
    cfg = cfg or PackageConfig()
    gate_cfg = gate_cfg or GateConfig(name=cfg.name)
    start = time.perf_counter()
    metrics = json.loads(Path(metrics_path).read_text()) if metrics_path and Path(metrics_path).exists() else {}
    dirs = {cfg.select_baseline: Path(generator_dir)}
    if rl_dir is not None:
        dirs.update(
            {m: Path(rl_dir) / "cq_sid" / m / "final" for m in cfg.select_candidates if m != cfg.select_baseline}
        )
    choice = select_generator(cfg, metrics, dirs)
    generator_dir = choice.generator_dir
    metrics = {**metrics, "served": asdict(choice)}
    if choice.method in metrics.get("personalized", {}):  # the gate reads personalized/served/*: the bundle's own model
        metrics["personalized"] = {**metrics["personalized"], "served": metrics["personalized"][choice.method]}
    items = item_quality(data_dir, strength=cfg.quality_prior_strength, prior_ctr=cfg.quality_prior_ctr)
    cats_path = Path(data_dir) / CATEGORIES.filename()
    categories = read_table(CATEGORIES, data_dir) if cats_path.exists() else None
    pointer = ProductionPointer(gate_cfg.name)
    previous = pointer.current()
    with tempfile.TemporaryDirectory(prefix="genrecall-bundle-") as tmp:
        manifest = write_bundle(
            Path(tmp) / "bundle",
            generator_dir=generator_dir,
            sid_model_dir=sid_model_dir,
            index_dir=index_dir,
            items=items,
            categories=categories,
            metrics=metrics,
            data_version=data_version(data_dir, dvc_lock=dvc_lock),
            params_hash=params_hash(load_params() if params is None else params),
            parent=previous,
            examples=showcase(data_dir).to_dict(),
        )
        tag = save_to_store(Path(tmp) / "bundle", name=cfg.name)
    if cfg.run_gate:
        decision = gate(tag, gate_cfg, pointer=pointer, force=force)
        promoted, reasons = decision.promoted, decision.reasons
    else:
        promoted, reasons = False, ["gate skipped (package.run_gate = false)"]
    result = PackageResult(
        tag,
        manifest.version,
        promoted,
        pointer.current(),
        previous,
        reasons,
        manifest.items,
        manifest.sids,
        time.perf_counter() - start,
        choice.method,
    )
    if report is not None:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(asdict(result), indent=2))
    return result
