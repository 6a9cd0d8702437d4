"""The daily rebuild's logic: one simulated (or real) day of catalog and log changes, applied to a
pipeline workspace without ever touching what serves until the day is complete.

A *workspace* is the directory the DVC pipeline ran in (``data/``, ``models/``, ``reports/``,
``feature_repo/``). Day ``d`` runs these steps (``STEPS``), each a plain function of
``(workspace, day, params)`` that the Prefect flow (``flows/daily_rebuild.py``) wraps in a task:

    ingest   the source's next day -> ``daily/day-d/delta`` (new/changed items, new users, the log)
    validate delta vs yesterday's validated tables (GX; quarantine; fails above threshold), merged
    embed    the merged tables; the cache encodes only new/changed texts
    drift    share of items new since the last full fit, quantization error of today's new items
    sids     frozen tokenizer: new items join clusters, delisted leave (or, on drift, a full refit
             whose level codes are aligned to the old ones by Hungarian matching on item overlap)
    features Feast: append the day's rows, push them to the online store (full build on drift)
    finetune warm start + replay (``finetune.py``), or full progressive SFT on drift
    evaluate metrics.json on the held-out end of the log
    package  the bundle, saved to the BentoML store (not promoted yet)
    commit   swap every staged output into the live workspace (journaled: a rerun rolls forward)
    publish  the gate: the bundle becomes production only if no worse than production
    version  ``dvc add`` the day's record, git commit, ``dvc push`` (skipped with a warning without DVC)

Everything before ``commit`` writes only under ``data/daily/day-d/stage`` and ``daily/day-d``, so
a crash leaves production serving and the live data as it was. Each finished step is recorded in
``data/daily/day-d/state.json`` with a hash of its inputs; a rerun skips finished steps and redoes
an interrupted one from scratch, so the day completes exactly once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from genrecall.config import from_dict
from genrecall.data import schema as S

log = logging.getLogger(__name__)
STEPS: tuple[str, ...] = ("ingest", "validate", "embed", "drift", "sids", "features", "finetune", "evaluate",
                          "package", "commit", "publish", "version")  # fmt: skip
FAIL_ENV = "GENRECALL_DAILY_FAIL_AT"  # fault injection for tests and drills: a step name


@dataclass(frozen=True)
class DailyConfig:
    """The daily rebuild (params.yaml ``daily``)."""

    max_new_share: float = 0.20  # items new since the last full fit / items at that fit; above -> full rebuild
    max_qerr_ratio: float = 1.5  # today's new items' mean quantization error / the fit's; above -> full rebuild
    min_new_items: int = 20  # fewer new items than this: the error ratio is noise, not drift
    force_full: bool = False  # rebuild the tokenizer and retrain every day (a reference for benchmarks)
    bundle_name: str = "genrecall-bundle"  # BentoML model name (must match package.name and gate.name)
    dvc: bool = True  # version each day's record with DVC when the workspace is a DVC + git repo
    dvc_push: bool = True  # push it to the default DVC remote (when one is configured)
    keep_stages: int = 2  # staging dirs of finished days kept for inspection; older ones are deleted
    finetune: dict[str, Any] = field(default_factory=dict)  # FinetuneConfig (finetune.py)


@dataclass(frozen=True)
class Workspace:
    """Where the pipeline's outputs live, relative to ``root`` (the dvc.yaml layout by default)."""

    root: Path
    raw: str = "data/raw"
    validated: str = "data/validated"
    embeddings: str = "data/embeddings"
    sid: str = "data/sid"
    feast: str = "data/feast"
    models_sid: str = "models/sid"
    generator: str = "models/generator"
    reports: str = "reports"
    repo: str = "feature_repo"
    cache: str = ".state/embed-cache"  # the embedding cache (content-addressed, append-only: shared)
    scratch: str = "data/daily"  # per-day state + staging (git-ignored, like data/)
    records: str = "daily"  # per-day records that DVC versions (daily/day-0014.dvc in git)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def path(self, name: str) -> Path:
        return Path(self.root) / getattr(self, name)

    def day_dir(self, day: int) -> Path:
        return self.path("scratch") / f"day-{day:04d}"

    def stage(self, day: int, name: str = "") -> Path:
        """Staging copy of output ``name`` for ``day`` (same relative name as the live one)."""
        return self.day_dir(day) / "stage" / name

    def record(self, day: int, name: str = "") -> Path:
        return self.path("records") / f"day-{day:04d}" / name


class InjectedFailure(RuntimeError):
    """Raised on purpose at a step (``fail_at`` / $GENRECALL_DAILY_FAIL_AT) to drill crash recovery."""


# -- day state: which steps are done, with what result ---------------------------------------------
def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)  # readers see the old state or the new one


def load_state(ws: Workspace, day: int) -> dict[str, Any]:
    path = ws.day_dir(day) / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"day": day, "steps": {}}


def inputs_hash(params: dict[str, Any], day: int) -> str:
    blob = json.dumps({"params": params, "day": day}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_step(ws: Workspace, day: int, name: str, fn: Callable[..., dict[str, Any]], params: dict[str, Any],
             *, fail_at: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Run step ``name`` unless recorded as done for the same inputs; record its result."""
    state = load_state(ws, day)
    key = inputs_hash(params, day)
    done = state["steps"].get(name)
    if done is not None and done["inputs"] == key:
        return done["result"]
    if name in {fail_at, os.environ.get(FAIL_ENV)}:
        raise InjectedFailure(f"injected failure at step {name!r} of day {day}")
    start = time.perf_counter()
    result = fn(ws, day, params)
    state = load_state(ws, day)  # re-read: the step may not keep the dict
    state["steps"][name] = {"inputs": key, "result": result, "seconds": round(time.perf_counter() - start, 2),
                            "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    state["done"] = all(s in state["steps"] for s in STEPS)
    _write_json(ws.day_dir(day) / "state.json", state)
    return result


def next_day_number(ws: Workspace) -> int:
    """The unfinished day if there is one (resume it), else the day after the live data."""
    from genrecall.data.marketplace import Marketplace

    for d in sorted(ws.path("scratch").glob("day-*")):
        state = load_state(ws, int(d.name.split("-")[1]))
        if state["steps"] and not state.get("done"):
            return int(state["day"])
    return Marketplace.load(ws.path("raw")).days


def _fresh(path: Path, copy_from: Path | None = None) -> Path:
    """An empty ``path`` (or a copy of ``copy_from``): a redone step never sees a half-written try."""
    shutil.rmtree(path, ignore_errors=True)
    if copy_from is not None:
        shutil.copytree(copy_from, path)
    else:
        path.mkdir(parents=True)
    return path


def _cfg(cls: type, params: dict[str, Any], name: str) -> Any:
    return from_dict(cls, params.get(name))


def _result(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj, default=str))


# -- ingest + validate -----------------------------------------------------------------------------
def ingest(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Simulate the marketplace's next day; stage the new source state, record the day's delta."""
    from genrecall.data.marketplace import Marketplace, _plain, next_day

    market = Marketplace.load(ws.path("raw"))
    if market.days != day:
        raise ValueError(f"live data is at day {market.days}; cannot ingest day {day}")
    delta = next_day(market)
    after = market.apply(delta)
    after.save(_fresh(ws.stage(day, ws.raw)))
    (ws.stage(day, ws.raw) / "generate.json").write_text(json.dumps(
        {"config": dataclasses.asdict(after.cfg), "days": after.days,
         "rows": {k: len(v) for k, v in after.tables().items()}}, indent=2, sort_keys=True, default=list))  # fmt: skip
    touched = np.union1d(np.union1d(delta.new_items["item_id"], delta.delisted["item_id"]),
                         delta.price_events["item_id"])  # fmt: skip
    out = _fresh(ws.record(day, "delta"))
    tables = {S.ITEMS: after.items[after.items["item_id"].isin(touched)], S.PRICE_EVENTS: delta.price_events,
              S.USERS: delta.new_users, S.REQUESTS: delta.requests, S.GROUND_TRUTH: delta.ground_truth}
    for spec, df in tables.items():
        S.write_table(_plain(df.reset_index(drop=True)), spec, out)
    return {"day": day, "new_items": len(delta.new_items), "delisted": len(delta.delisted),
            "price_changes": int(delta.price_events["item_id"].nunique()) - len(delta.new_items),
            "new_users": len(delta.new_users), "requests": len(delta.requests)}


def validate_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the delta against the live validated tables, then merge good rows into a staged copy."""
    from genrecall.data.validate import ValidateConfig
    from genrecall.pipeline.validate import validate

    good, quarantine = _fresh(ws.record(day, "validated")), ws.record(day, "quarantine")
    report = validate(_cfg(ValidateConfig, params, "validate"), ws.record(day, "delta"), good, quarantine,
                      ws.record(day, "reports/validation.json"), reference_dir=ws.path("validated"))  # fmt: skip
    out = _fresh(ws.stage(day, ws.validated))
    for name, spec in S.ALL_TABLES.items():
        if not (ws.path("validated") / spec.filename()).exists():
            continue
        live = S.read_table(spec, ws.path("validated"))
        if (good / spec.filename()).exists():
            live = pd.concat([live, S.read_table(spec, good)], ignore_index=True)
            live = live.drop_duplicates(list(spec.key), keep="last")
            if name == "items":
                live = live.sort_values("item_id", kind="stable")
        S.write_table(live.reset_index(drop=True), spec, out)
    return {name: {"good": t.good, "quarantined": t.quarantined} for name, t in report.tables.items()}


def embed_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    from genrecall.pipeline.embed import EmbedConfig, embed

    res = embed(_cfg(EmbedConfig, params, "embed"), ws.stage(day, ws.validated), ws.path("cache"),
                _fresh(ws.stage(day, ws.embeddings)), show_progress=False)  # fmt: skip
    return _result(res)


# -- drift + SIDs ------------------------------------------------------------------------------------
FIT_RECORD = "daily_fit.json"  # beside the tokenizers: what the last full fit saw (drift baseline)


def quantization_error(tok: Any, x: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Squared distance between each item's latent and its quantized latent (frozen tokenizer)."""
    import torch

    if len(x) == 0:
        return np.empty(0)
    z = torch.from_numpy(tok.latents(x))
    forced = torch.from_numpy(tok.category_code(categories, len(x))) if tok.cfg.forcing else None
    with torch.no_grad():
        z_q = tok.model.quantize(z, forced)[0]
    return (z - z_q).pow(2).sum(1).numpy()


def fit_record(index_dir: Path, tok_dir: Path, data_dir: Path, emb_dir: Path) -> dict[str, Any]:
    """The drift baseline of a fit: its items and their mean quantization error."""
    from genrecall.pipeline.embed import load_embeddings
    from genrecall.pipeline.sid import categories_of, listed_items
    from genrecall.sid.index import SidIndex
    from genrecall.sid.tokenizer import SidTokenizer

    ids = SidIndex.load(index_dir).item_ids()
    items = listed_items(data_dir).set_index("item_id").reindex(ids).reset_index()
    emb = load_embeddings(emb_dir)
    keep = np.isin(ids, emb.item_ids)
    err = quantization_error(SidTokenizer.load(tok_dir), emb.items[emb.item_rows(ids[keep])], categories_of(items[keep]))
    return {"items": int(len(ids)), "max_item_id": int(ids.max()) if len(ids) else 0,
            "qerr": float(err.mean()) if len(err) else 0.0}


def drift(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Incremental or full rebuild today? (DESIGN.md: rebuild the tokenizer only past a threshold.)"""
    from genrecall.pipeline.embed import load_embeddings
    from genrecall.pipeline.sid import categories_of, listed_items
    from genrecall.sid.index import SidIndex
    from genrecall.sid.tokenizer import SidTokenizer

    cfg = _cfg(DailyConfig, params, "daily")
    method, record_path = _main_method(params), ws.path("models_sid") / FIT_RECORD
    fit = json.loads(record_path.read_text()) if record_path.exists() else fit_record(
        ws.path("sid") / method, ws.path("models_sid") / method, ws.path("validated"), ws.path("embeddings"))
    items = listed_items(ws.stage(day, ws.validated))
    ids = items["item_id"].to_numpy(np.int64)
    new_since_fit = int((ids > fit["max_item_id"]).sum())  # item ids only grow (marketplace contract)
    today = ~np.isin(ids, SidIndex.load(ws.path("sid") / method).item_ids())
    emb = load_embeddings(ws.stage(day, ws.embeddings))
    tok = SidTokenizer.load(ws.path("models_sid") / method)
    err = quantization_error(tok, emb.items[emb.item_rows(ids[today])], categories_of(items[today]))
    share = new_since_fit / max(fit["items"], 1)
    ratio = float(err.mean()) / fit["qerr"] if len(err) and fit["qerr"] > 0 else 0.0
    reasons = (["forced (daily.force_full)"] if cfg.force_full else []) + \
        ([f"new-item share {share:.3f} > {cfg.max_new_share}"] if share > cfg.max_new_share else []) + \
        ([f"quantization error ratio {ratio:.2f} > {cfg.max_qerr_ratio}"]
         if len(err) >= cfg.min_new_items and ratio > cfg.max_qerr_ratio else [])  # fmt: skip
    return {"mode": "full" if reasons else "incremental", "reasons": reasons, "new_share": round(share, 4),
            "new_today": int(today.sum()), "qerr_new": float(err.mean()) if len(err) else None,
            "qerr_fit": fit["qerr"], "qerr_ratio": round(ratio, 3), "fit": fit}


def _main_method(params: dict[str, Any]) -> str:
    from genrecall.pipeline.sid import SidConfig

    methods = _cfg(SidConfig, params, "sid").methods
    return "cq_sid" if "cq_sid" in methods else methods[0]


def _mode(ws: Workspace, day: int) -> str:
    return load_state(ws, day)["steps"]["drift"]["result"]["mode"]


def align_codes(old: Any, tok: Any, new: Any) -> tuple[Any, dict[str, Any]]:
    """Relabel a refit tokenizer's level codes so items keep their old codes where possible.

    Per level (one shared codebook per level in an RQ-VAE), a Hungarian matching on the item-overlap
    table new code x old code; the tokenizer's codebook rows are permuted to match, so future
    ``assign`` calls agree with the relabelled index. A category-forced level 1 is already aligned.
    """
    import torch
    from scipy.optimize import linear_sum_assignment

    from genrecall.sid.index import SidIndex

    common = np.intersect1d(old.item_ids(), new.item_ids())
    o, n = old.sid_of(common), new.sid_of(common)
    ids = new.item_ids()
    sids = new.sid_of(ids)
    report: list[dict[str, Any]] = []
    state = tok.model.state_dict()
    for level, size in enumerate(tok.codebook_sizes):
        before = float((o[:, level] == n[:, level]).mean()) if len(common) else 0.0
        if level == 0 and tok.cfg.forcing:
            report.append({"level": 1, "rule": "category-forced", "agreement": before})
            continue
        k_old = int(max(old.codebook_sizes[level] if old.codebook_sizes else 0, o[:, level].max(initial=0) + 1))
        table = np.zeros((size, k_old), dtype=np.int64)
        np.add.at(table, (n[:, level], o[:, level]), 1)
        rows, cols = linear_sum_assignment(-table)
        perm = np.full(size, -1, dtype=np.int64)
        keep = cols < size
        perm[rows[keep]] = cols[keep]
        free = iter(np.setdiff1d(np.arange(size), perm[perm >= 0]))
        perm[perm < 0] = [next(free) for _ in range(int((perm < 0).sum()))]
        inv = np.argsort(perm)  # new row perm[i] holds old row i
        for key, value in state.items():
            if key.startswith(f"levels.{level}.") and value.ndim >= 1 and value.shape[0] == size:
                state[key] = value[torch.from_numpy(inv)]
        sids[:, level] = perm[sids[:, level]]
        after = float((o[:, level] == perm[n[:, level]]).mean()) if len(common) else 0.0
        report.append({"level": level + 1, "rule": "hungarian", "agreement_before": before, "agreement": after})
    tok.model.load_state_dict(state)
    aligned = SidIndex.build(ids, sids, codebook_sizes=new.codebook_sizes, suffix_mode=new.suffix_mode,
                             t_max=new.t_max, g_max=new.g_max)  # fmt: skip
    same = aligned.sid_of(common)[:, :-1] == o[:, :-1]
    return aligned, {"common_items": int(len(common)), "levels": report,
                     "level_codes_unchanged": float(same.all(axis=1).mean()) if len(common) else 0.0}


def sids_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Frozen tokenizer (new items join clusters) or, on drift, a full refit aligned to the old codes."""
    from genrecall.pipeline.sid import SidConfig, sid, sid_update
    from genrecall.sid.index import SidIndex
    from genrecall.sid.tokenizer import SidTokenizer

    cfg = _cfg(SidConfig, params, "sid")
    data, emb, reports = ws.stage(day, ws.validated), ws.stage(day, ws.embeddings), ws.stage(day, ws.reports)
    reports.mkdir(parents=True, exist_ok=True)
    if _mode(ws, day) == "incremental":
        _fresh(ws.stage(day, ws.models_sid))  # stays empty: the live tokenizers are kept
        out = _fresh(ws.stage(day, ws.sid), ws.path("sid"))
        delta = S.read_table(S.ITEMS, ws.record(day, "validated"))
        res = sid_update(data, emb, ws.path("models_sid"), out, methods=cfg.methods, reports_dir=reports,
                         changed=_changed_texts(ws.path("validated"), delta))  # fmt: skip
        return {"mode": "incremental", **_result(res)}
    models, out = _fresh(ws.stage(day, ws.models_sid)), _fresh(ws.stage(day, ws.sid))
    res = sid(cfg, data, emb, models, out, reports, show_progress=False)
    alignment = {}
    for method in cfg.methods:
        tok = SidTokenizer.load(models / method)
        index, alignment[method] = align_codes(SidIndex.load(ws.path("sid") / method), tok, SidIndex.load(out / method))
        tok.save(models / method)
        index.save(out / method)
    main = _main_method(params)
    _write_json(models / FIT_RECORD, fit_record(out / main, models / main, data, emb))
    _write_json(reports / "sid_alignment.json", alignment)
    return {"mode": "full", "sids": {m: s.sids for m, s in res.methods.items()}, "alignment": alignment}


def _changed_texts(live_dir: Path, delta_items: pd.DataFrame) -> list[int]:
    """Delta items already known whose embedding text changed (they get re-assigned)."""
    from genrecall.sid.encoder import item_texts

    live = S.read_table(S.ITEMS, live_dir)
    old = live[live["item_id"].isin(delta_items["item_id"])].sort_values("item_id")
    new = delta_items[delta_items["item_id"].isin(old["item_id"])].sort_values("item_id")
    return [int(i) for i, a, b in zip(new["item_id"], item_texts(old), item_texts(new)) if a != b]


# -- Feast, evaluation, bundle ------------------------------------------------------------------------
def features_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Feast: append the day's rows and push them online (a full build after a tokenizer refit)."""
    from genrecall.features.sources import FeaturesConfig
    from genrecall.pipeline.features import features, update_features

    cfg, sid_dir = _cfg(FeaturesConfig, params, "features"), ws.stage(day, ws.sid) / _main_method(params)
    if _mode(ws, day) == "incremental":
        out = _fresh(ws.stage(day, ws.feast), ws.path("feast"))
        res = update_features(cfg, ws.record(day, "validated"), sid_dir, ws.path("repo"), out)
    else:
        res = features(cfg, ws.stage(day, ws.validated), sid_dir, ws.path("repo"), _fresh(ws.stage(day, ws.feast)))
    return {"item_rows": res.item_rows, "profile_rows": res.profile_rows, "recent_rows": res.recent_rows,
            "as_of": str(res.as_of)}


def evaluate_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    from genrecall.pipeline.evaluate import EvaluateConfig, evaluate

    evaluate(_cfg(EvaluateConfig, params, "evaluate"), ws.stage(day, ws.validated), ws.stage(day, ws.sid),
             ws.stage(day, ws.embeddings), ws.stage(day, ws.generator), ws.stage(day, ws.reports),
             feast_repo=ws.path("repo"), feast_data_dir=ws.stage(day, ws.feast),
             preset=(params.get("generate") or {}).get("preset"))  # fmt: skip
    return headline_metrics(json.loads((ws.stage(day, ws.reports) / "metrics.json").read_text()))


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``set/method/metric`` -> value for the numbers a daily report shows."""
    keep = ("hitrate@1", "hitrate@10", "items@1000", "clk@10", "pvr@10")
    return {f"{s}/{m}/{k}": round(float(v), 4) for s in ("semantic", "personalized")
            for m, block in (metrics.get(s) or {}).items() for k, v in block.items() if k in keep}  # fmt: skip


def _served_generator(gen_dir: Path, method: str) -> Path:
    """The generator a bundle serves: the method's last progressive stage."""
    from genrecall.gen.sft import STAGES

    return next(gen_dir / method / s / "final" for s in reversed(STAGES) if (gen_dir / method / s / "final").exists())


def package_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Save the day's bundle to the BentoML store; promotion waits for ``publish``."""
    from genrecall.pipeline.package import PackageConfig, package

    cfg = dataclasses.replace(_cfg(PackageConfig, params, "package"), run_gate=False,
                              name=_cfg(DailyConfig, params, "daily").bundle_name)  # fmt: skip
    method = _main_method(params)
    models = ws.stage(day, ws.models_sid) if _mode(ws, day) == "full" else ws.path("models_sid")
    res = package(cfg, generator_dir=_served_generator(ws.stage(day, ws.generator), method),
                  sid_model_dir=models / method, index_dir=ws.stage(day, ws.sid) / method,
                  data_dir=ws.stage(day, ws.validated), metrics_path=ws.stage(day, ws.reports) / "metrics.json",
                  params=params, dvc_lock=ws.root / "dvc.lock")  # fmt: skip
    return {"tag": res.tag, "version": res.version, "items": res.items, "sids": res.sids}


# -- commit, publish, version ---------------------------------------------------------------------------
LIVE = ("raw", "validated", "embeddings", "sid", "feast", "generator", "models_sid")


def commit(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Swap every staged output into place. Each swap is two renames (live -> .old, stage -> live),
    journaled by what exists, so a rerun after a crash in here rolls forward; then .old is removed."""
    from genrecall.features.store import apply

    swapped = []
    for name in LIVE:
        src, dst = ws.stage(day, getattr(ws, name)), ws.path(name)
        old = dst.with_name(f"{dst.name}.old-day{day:04d}")
        if not src.exists() or (name == "models_sid" and not any(src.iterdir())):
            continue  # nothing staged (e.g. tokenizers on an incremental day), or already swapped
        if dst.exists() and not old.exists():
            os.replace(dst, old)
        os.replace(src, dst)
        swapped.append(name)
    for name in LIVE:
        dst = ws.path(name)
        shutil.rmtree(dst.with_name(f"{dst.name}.old-day{day:04d}"), ignore_errors=True)
    staged_reports = ws.stage(day, ws.reports)
    for f in sorted(staged_reports.glob("*")) if staged_reports.exists() else []:
        if f.is_file():
            ws.path("reports").mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, ws.path("reports") / f.name)
            shutil.copy2(f, ws.record(day, "reports") / f.name)
    apply(ws.path("repo"), ws.path("feast"))  # the registry names source paths: point them at the live dir
    return {"swapped": swapped}


def publish(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """The gate: the day's bundle becomes production only if it is no worse (gate.py)."""
    from genrecall.serving.gate import GateConfig, gate

    name = _cfg(DailyConfig, params, "daily").bundle_name
    tag = load_state(ws, day)["steps"]["package"]["result"]["tag"]
    decision = gate(tag, dataclasses.replace(_cfg(GateConfig, params, "gate"), name=name))
    result = {"tag": tag, "promoted": decision.promoted, "production": decision.production if not decision.promoted
              else tag, "reasons": decision.reasons}  # fmt: skip
    _write_json(ws.record(day, "reports/publish.json"), result)
    ws.record(day, "reports/summary.md").write_text(summary_markdown(load_state(ws, day), result))
    return result


def _git(ws: Workspace, *args: str) -> str:
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "genrecall daily"),
           "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "daily@genrecall.invalid")}
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    done = subprocess.run(args, cwd=ws.root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def version(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """``dvc add daily/day-d`` + git commit of its pointer + ``dvc push``; a warning without DVC/git."""
    cfg = _cfg(DailyConfig, params, "daily")
    root = Path(ws.root)
    if not cfg.dvc or not (root / ".dvc").is_dir() or not (root / ".git").exists():
        log.warning("daily: %s is not a DVC + git repo (or daily.dvc is off): day %d is not versioned", root, day)
        return {"versioned": False}
    target = ws.record(day).relative_to(root).as_posix()
    dvc = str(Path(sys.executable).with_name("dvc"))  # the venv's dvc, not whatever is on PATH
    _git(ws, dvc, "add", "--quiet", target)
    pointer, ignore = f"{target}.dvc", (Path(target).parent / ".gitignore").as_posix()
    _git(ws, "git", "add", pointer, ignore)
    staged = _git(ws, "git", "diff", "--cached", "--name-only", "--", pointer, ignore)
    if staged:
        _git(ws, "git", "commit", "--quiet", "-m", f"daily rebuild: day {day}", "--", pointer, ignore)
    sha = _git(ws, "git", "rev-parse", "HEAD")
    pushed = False
    if cfg.dvc_push:
        try:
            _git(ws, dvc, "remote", "default")
        except RuntimeError:
            log.warning("daily: no default DVC remote: day %d stays in the local cache only", day)
        else:
            _git(ws, dvc, "push", "--quiet", pointer)
            pushed = True
    _prune_stages(ws, day, cfg.keep_stages)
    return {"versioned": True, "commit": sha, "pushed": pushed, "path": target}


def _prune_stages(ws: Workspace, day: int, keep: int) -> None:
    for d in sorted(ws.path("scratch").glob("day-*")):
        if int(d.name.split("-")[1]) <= day - keep:
            shutil.rmtree(d / "stage", ignore_errors=True)


def summary_markdown(state: dict[str, Any], published: dict[str, Any]) -> str:
    """The run's report: what changed, the drift decision, fine-tune losses, metrics, the gate."""
    steps = {k: v["result"] for k, v in state["steps"].items()}
    ing, dr, sids = steps.get("ingest", {}), steps.get("drift", {}), steps.get("sids", {})
    lines = [f"# Daily rebuild, day {state['day']}", "",
             f"- items added **{ing.get('new_items')}**, delisted **{ing.get('delisted')}**, price changes "
             f"{ing.get('price_changes')}, new users {ing.get('new_users')}, requests {ing.get('requests')}",
             f"- mode **{dr.get('mode')}** ({'; '.join(dr.get('reasons') or []) or 'no drift'}); new-item share "
             f"{dr.get('new_share')}, quantization error ratio {dr.get('qerr_ratio')}",
             f"- SIDs: added {sids.get('added', '-')}, removed {sids.get('removed', '-')}, total {sids.get('sids')}"]
    for key, ft in (steps.get("finetune", {}).get("runs") or {}).items():
        lines.append(f"- fine-tune `{key}`: {ft['examples']} examples ({ft['replay']} replayed), {ft['steps']} steps, "
                     f"final loss {ft['final_loss']}")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in (steps.get("evaluate") or {}).items()]
    verdict = "**promoted**" if published["promoted"] else "**rejected** (production unchanged)"
    lines += ["", f"Gate: `{published['tag']}` {verdict}; production `{published['production']}`."]
    lines += [f"- {r}" for r in published["reasons"]]
    return "\n".join(lines) + "\n"


def run_day(ws: Workspace, params: dict[str, Any], *, day: int | None = None, fail_at: str | None = None,
            steps: dict[str, Callable[..., dict[str, Any]]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run (or resume) one day without Prefect: every step in order; returns the day's state."""
    day = next_day_number(ws) if day is None else day
    for name in STEPS:
        run_step(ws, day, name, (steps or STEP_FUNCTIONS)[name], params, fail_at=fail_at)
    return load_state(ws, day)


def _finetune(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    from genrecall.pipeline.finetune import finetune_day

    return finetune_day(ws, day, params)


STEP_FUNCTIONS: dict[str, Callable[[Workspace, int, dict[str, Any]], dict[str, Any]]] = {
    "ingest": ingest, "validate": validate_day, "embed": embed_day, "drift": drift, "sids": sids_day,
    "features": features_day, "finetune": _finetune, "evaluate": evaluate_day, "package": package_day,
    "commit": commit, "publish": publish, "version": version,
}
