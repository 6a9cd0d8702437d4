"""The daily rebuild's data and model steps, each a plain function of ``(workspace, day, params)``:
ingest, validate, embed, sids, features, evaluate and package (``drift`` is in ``drift.py``; ``commit``,
``publish`` and ``version`` in ``commit.py``; the order and the runner in ``run.py``). Everything here
writes only under the day's stage and record; heavy modules are imported inside the step that needs them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrecall.atomic import write_json_atomic
from genrecall.config import from_dict
from genrecall.data import schema as S
from genrecall.faults import crashpoint
from genrecall.pipeline.daily.state import (
    DailyConfig,
    Workspace,
    as_result,
    config_of,
    daily_methods,
    day_mode,
    fresh,
    load_state,
    main_method,
)

DAY_METRICS = "daily_metrics.json"  # the day's gate-sample numbers (reports/ and daily/day-d/reports/)


# -- ingest + validate -----------------------------------------------------------------------------
def ingest(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Simulate the marketplace's next day; stage the new source state, record the day's delta."""
    from genrecall.data.marketplace import Marketplace, next_day
    from genrecall.data.sources import ingest_day, source_config

    source = source_config(params)
    if source.kind != "marketplace":  # a shop's exports or database (data/sources): the next day's partition
        res = ingest_day(source, ws.path("raw"), day, fresh(ws.stage(day, ws.raw)), fresh(ws.record(day, "delta")))
        return dataclasses.asdict(res)

    market = Marketplace.load(ws.path("raw"))
    if market.days != day:
        raise ValueError(f"live data is at day {market.days}; cannot ingest day {day}")
    delta = next_day(market)
    after = market.apply(delta)
    after.save(fresh(ws.stage(day, ws.raw)))
    (ws.stage(day, ws.raw) / "generate.json").write_text(
        json.dumps(
            {
                "config": dataclasses.asdict(after.cfg),
                "days": after.days,
                "rows": {k: len(v) for k, v in after.tables().items()},
            },
            indent=2,
            sort_keys=True,
            default=list,
        )
    )
    crashpoint("ingest:mid")  # drill: the new source state is staged, the day's delta is not written
    touched = np.union1d(
        np.union1d(delta.new_items["item_id"], delta.delisted["item_id"]), delta.price_events["item_id"]
    )
    out = fresh(ws.record(day, "delta"))
    tables = {
        S.ITEMS: after.items[after.items["item_id"].isin(touched)],
        S.PRICE_EVENTS: delta.price_events,
        S.USERS: delta.new_users,
        S.REQUESTS: delta.requests,
        S.GROUND_TRUTH: delta.ground_truth,
    }
    for spec, df in tables.items():
        S.write_table(df.reset_index(drop=True), spec, out)
    return {
        "day": day,
        "new_items": len(delta.new_items),
        "delisted": len(delta.delisted),
        "price_changes": int(delta.price_events["item_id"].nunique()) - len(delta.new_items),
        "new_users": len(delta.new_users),
        "requests": len(delta.requests),
    }


def validate_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the delta against the live validated tables, then merge good rows into a staged copy."""
    from genrecall.data.validate import ValidateConfig
    from genrecall.pipeline.validate import validate

    good, quarantine = fresh(ws.record(day, "validated")), ws.record(day, "quarantine")
    cfg = config_of(ValidateConfig, params, "validate")
    ingested = load_state(ws, day)["steps"]["ingest"]["result"]  # a files/sql day: log rows outside it are late
    cfg = dataclasses.replace(cfg, day_start=ingested.get("day_start"), day_end=ingested.get("day_end"))
    report = validate(
        cfg,
        ws.record(day, "delta"),
        good,
        quarantine,
        ws.record(day, "reports/validation.json"),
        reference_dir=ws.path("validated"),
    )
    crashpoint("validate:mid")  # drill: the delta is validated and quarantined, not merged
    out = fresh(ws.stage(day, ws.validated))
    for name, spec in S.ALL_TABLES.items():
        if (ws.path("validated") / spec.filename()).exists():  # Arrow merge: no pandas round trip
            S.upsert_table(spec, ws.path("validated"), good, out, sort_by_key=name == "items")
    return {name: {"good": t.good, "quarantined": t.quarantined} for name, t in report.tables.items()}


def embed_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    from genrecall.pipeline.embed import EmbedConfig, embed

    res = embed(
        config_of(EmbedConfig, params, "embed"),
        ws.stage(day, ws.validated),
        ws.path("cache"),
        fresh(ws.stage(day, ws.embeddings)),
        show_progress=False,
    )
    return as_result(res)


# -- SIDs --------------------------------------------------------------------------------------------


def sids_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Frozen tokenizer (new items join clusters) or, on drift, a full refit aligned to the old codes."""
    from genrecall.pipeline.daily.drift import FIT_RECORD, align_codes, fit_record
    from genrecall.pipeline.sid import SidConfig, sid, sid_update
    from genrecall.sid.index import SidIndex
    from genrecall.sid.tokenizer import SidTokenizer

    cfg = config_of(SidConfig, params, "sid")
    data, emb, reports = ws.stage(day, ws.validated), ws.stage(day, ws.embeddings), ws.stage(day, ws.reports)
    reports.mkdir(parents=True, exist_ok=True)
    if day_mode(ws, day) == "incremental":
        fresh(ws.stage(day, ws.models_sid))  # stays empty: the live tokenizers are kept
        out = fresh(ws.stage(day, ws.sid), ws.path("sid"))
        delta = S.read_table(S.ITEMS, ws.record(day, "validated"))
        res = sid_update(
            data,
            emb,
            ws.path("models_sid"),
            out,
            methods=daily_methods(params),
            reports_dir=reports,
            changed=np.asarray(_changed_texts(ws.path("validated"), delta), dtype=np.int64),
        )
        crashpoint("sids:mid")  # drill: the staged index is written, its health report is not
        _keep_other_health(ws.path("reports") / "sid_health.json", reports / "sid_health.json")
        return {"mode": "incremental", **as_result(res)}
    models, out = fresh(ws.stage(day, ws.models_sid)), fresh(ws.stage(day, ws.sid))
    fit = sid(cfg, data, emb, models, out, reports, show_progress=False)
    alignment = {}
    for method in cfg.methods:
        tok = SidTokenizer.load(models / method)
        index, alignment[method] = align_codes(SidIndex.load(ws.path("sid") / method), tok, SidIndex.load(out / method))
        tok.save(models / method)
        index.save(out / method)
    main = main_method(params)
    write_json_atomic(models / FIT_RECORD, fit_record(out / main, models / main, data, emb))
    write_json_atomic(reports / "sid_alignment.json", alignment)
    return {"mode": "full", "sids": {m: s.sids for m, s in fit.methods.items()}, "alignment": alignment}


def _keep_other_health(live: Path, staged: Path) -> None:
    """An incremental day measures only the methods it updated: the others (the RQ-VAE baseline, whose
    index is refreshed by full rebuilds) keep their entries, which still describe their live index."""
    if live.exists() and staged.exists():
        write_json_atomic(staged, {**json.loads(live.read_text()), **json.loads(staged.read_text())})


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

    cfg, sid_dir = config_of(FeaturesConfig, params, "features"), ws.stage(day, ws.sid) / main_method(params)
    if day_mode(ws, day) == "incremental":
        out = fresh(ws.stage(day, ws.feast), ws.path("feast"))
        res = update_features(cfg, ws.record(day, "validated"), sid_dir, ws.path("repo"), out)
    else:
        res = features(cfg, ws.stage(day, ws.validated), sid_dir, ws.path("repo"), fresh(ws.stage(day, ws.feast)))
    return {
        "item_rows": res.item_rows,
        "profile_rows": res.profile_rows,
        "recent_rows": res.recent_rows,
        "as_of": str(res.as_of),
    }


def evaluate_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """The gate's evidence: candidate and production bundle on the same sample (``gate.py``); a
    full-rebuild day also runs the pipeline's evaluate for metrics.json, as ``dvc repro`` would."""
    from genrecall.gen.model import load_generator
    from genrecall.pipeline.daily.gate import DailyGateConfig, compare_on_sample
    from genrecall.pipeline.evaluate import EvaluateConfig, evaluate
    from genrecall.serving.bundle import Bundle
    from genrecall.serving.gate import production_tag
    from genrecall.sid.index import SidIndex

    cfg = config_of(DailyConfig, params, "daily")
    gcfg, ecfg = from_dict(DailyGateConfig, cfg.gate_eval), config_of(EvaluateConfig, params, "evaluate")
    reports, method = ws.stage(day, ws.reports), main_method(params)
    reports.mkdir(parents=True, exist_ok=True)
    full = day_mode(ws, day) == "full" and gcfg.full_eval_on_rebuild
    if full:
        tokenizers = ws.stage(day, ws.models_sid)  # a full day's fresh fits: the reference rows' tokenizer
        evaluate(
            ecfg,
            ws.stage(day, ws.validated),
            ws.stage(day, ws.sid),
            ws.stage(day, ws.embeddings),
            ws.stage(day, ws.generator),
            reports,
            feast_repo=ws.path("repo"),
            feast_data_dir=ws.stage(day, ws.feast),
            preset=(params.get("generate") or {}).get("preset"),
            source=(params.get("source") or {}).get("kind") or "marketplace",
            sid_model_dir=tokenizers if (tokenizers / "cq_sid").is_dir() else None,
        )
    if gcfg.num_threads:
        import torch

        torch.set_num_threads(gcfg.num_threads)
    prod = production_tag(cfg.bundle_name)
    own = _production_feast(ws, day, params, prod) if prod and day_mode(ws, day) == "full" else None
    paired = compare_on_sample(
        gcfg,
        ecfg,
        data_dir=ws.stage(day, ws.validated),
        candidate=load_generator(_served_generator(ws.stage(day, ws.generator), method)),
        candidate_index=SidIndex.load(ws.stage(day, ws.sid) / method),
        production=Bundle.load(prod) if prod else None,
        feast_repo=ws.path("repo"),
        feast_data_dir=ws.stage(day, ws.feast),
        method=method,
        production_feast_data_dir=own,
    )
    write_json_atomic(reports / "daily_gate.json", paired)
    crashpoint("evaluate:mid")  # drill: the paired numbers are written, the day's metrics are not
    # The day's numbers get their own file: metrics.json keeps the pipeline's full block (every method, the
    # RL variants, sid_health), which only a full evaluation rewrites. An incremental day's bundle manifest
    # carries these gate-sample numbers (package_day); the report's daily history reads them.
    steps = load_state(ws, day)["steps"]
    ingest = steps["ingest"]["result"]
    write_json_atomic(
        reports / DAY_METRICS,
        {
            **paired["candidate"],
            "data": {
                "daily_gate": paired["sample"],
                "generator": "served",
                "day": day,
                "mode": day_mode(ws, day),
                "new_items": ingest.get("new_items"),
                "delisted": ingest.get("delisted"),
                "warm_start": steps["finetune"]["result"].get("warm_start") or {},
            },
        },
    )
    head = headline_metrics(paired["candidate"])
    return {**head, **{f"production/{k}": v for k, v in headline_metrics(paired["production"] or {}).items()}}


def _production_feast(ws: Workspace, day: int, params: dict[str, Any], tag: str) -> Path:
    """After a refit: a Feast build of today's data with *production's* SID assignments (scratch), so
    production is prompted with recent SIDs in its own code space (``gate.py``)."""
    from genrecall.features.sources import FeaturesConfig
    from genrecall.pipeline.features import features
    from genrecall.serving.bundle import resolve

    out = fresh(ws.stage(day, "gate/production-feast"))  # pruned with the day's stage
    features(
        config_of(FeaturesConfig, params, "features"),
        ws.stage(day, ws.validated),
        resolve(tag)[0] / "index",
        ws.path("repo"),
        out,
    )
    return out


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``set/method/metric`` -> value for the numbers a daily report shows."""
    keep = ("hitrate@1", "hitrate@10", "items@1000", "clk@10", "pvr@10")
    return {
        f"{s}/{m}/{k}": round(float(v), 4)
        for s in ("semantic", "personalized")
        for m, block in (metrics.get(s) or {}).items()
        for k, v in block.items()
        if k in keep
    }


def _served_generator(gen_dir: Path, method: str) -> Path:
    """The generator a bundle serves: the method's last progressive stage."""
    from genrecall.gen.sft import STAGES

    return next(gen_dir / method / s / "final" for s in reversed(STAGES) if (gen_dir / method / s / "final").exists())


def package_day(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Save the day's bundle to the BentoML store; promotion waits for ``publish``."""
    from genrecall.pipeline.package import PackageConfig, package

    cfg = dataclasses.replace(
        config_of(PackageConfig, params, "package"),
        run_gate=False,
        name=config_of(DailyConfig, params, "daily").bundle_name,
    )
    method = main_method(params)
    models = ws.stage(day, ws.models_sid) if day_mode(ws, day) == "full" else ws.path("models_sid")
    reports = ws.stage(day, ws.reports)  # a full evaluation's metrics.json when the day ran one, else the day's
    metrics = reports / "metrics.json" if (reports / "metrics.json").exists() else reports / DAY_METRICS
    res = package(
        cfg,
        generator_dir=_served_generator(ws.stage(day, ws.generator), method),
        sid_model_dir=models / method,
        index_dir=ws.stage(day, ws.sid) / method,
        data_dir=ws.stage(day, ws.validated),
        metrics_path=metrics,
        params=params,
        dvc_lock=ws.root / "dvc.lock",
    )
    return {"tag": res.tag, "version": res.version, "items": res.items, "sids": res.sids}
