"""The daily rebuild's last steps: swap the staged day into the live workspace, gate and publish the
bundle, version the day's record with DVC, and write the day's markdown report.

``commit`` is the only step that touches live outputs (journaled renames: a rerun rolls forward);
``publish`` moves the production pointer only when the candidate is no worse than production *on the
same sample of today's requests* (``gate.py``); ``version`` commits ``daily/day-d`` with DVC.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from genrecall.atomic import write_json_atomic
from genrecall.faults import crashpoint
from genrecall.pipeline.daily import state as D

log = logging.getLogger(__name__)  # a child of "genrecall.pipeline.daily": one level for the whole rebuild

LIVE = ("raw", "validated", "embeddings", "sid", "feast", "generator", "models_sid")


def commit(ws: D.Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
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
        crashpoint("commit:after-live-moved")  # drill: live moved aside, stage not moved in (no live dir!)
        os.replace(src, dst)
        swapped.append(name)
    crashpoint("commit:before-cleanup")  # drill: every swap done, the .old copies still there
    for name in LIVE:
        dst = ws.path(name)
        shutil.rmtree(dst.with_name(f"{dst.name}.old-day{day:04d}"), ignore_errors=True)
    staged_reports = ws.stage(day, ws.reports)
    for f in sorted(staged_reports.glob("*")) if staged_reports.exists() else []:
        if f.is_file():
            ws.path("reports").mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, ws.path("reports") / f.name)
            shutil.copy2(f, ws.record(day, "reports") / f.name)
    crashpoint("commit:before-apply")  # drill: data swapped and reports copied, Feast registry not re-pointed
    apply(ws.path("repo"), ws.path("feast"))  # the registry names source paths: point them at the live dir
    return {"swapped": swapped}


def publish(ws: D.Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """The gate: the day's bundle becomes production only if no worse than production, both measured on
    the same sample of today's requests (``evaluate`` step). Falls back to ``serving/gate.py``'s manifest
    comparison when there was no production to measure, or production moved since."""
    from genrecall.serving.gate import GateConfig, gate

    name = D.config_of(D.DailyConfig, params, "daily").bundle_name
    cfg = dataclasses.replace(D.config_of(GateConfig, params, "gate"), name=name)
    tag = D.load_state(ws, day)["steps"]["package"]["result"]["tag"]
    paired_path = ws.record(day, "reports/daily_gate.json")
    paired = json.loads(paired_path.read_text()) if paired_path.exists() else {}
    measured = (paired["candidate"], paired["production"]) if paired.get("production") is not None else None
    sample = paired.get("sample") or {}
    # gate() reads production, compares and moves the pointer under one lock; the paired numbers are used
    # only if production is still the bundle they measured, else the manifests are compared.
    decision = gate(
        tag,
        cfg,
        measured=measured,
        expected_production=paired.get("production_tag"),
        basis=f"same sample of today's requests ({sample.get('semantic_requests')} semantic, "
        f"{sample.get('personalized_requests')} personalized; {sample.get('request_ids_sha')})",
    )
    basis = decision.basis
    crashpoint("publish:after-gate")  # drill: the pointer moved (or not), publish.json and summary.md not written
    result = {
        "tag": tag,
        "promoted": decision.promoted,
        "production": decision.production if not decision.promoted else tag,
        "reasons": decision.reasons,
        "basis": basis,
    }
    write_json_atomic(ws.record(day, "reports/publish.json"), result)
    ws.record(day, "reports/summary.md").write_text(summary_markdown(D.load_state(ws, day), result))
    return result


def _git(ws: D.Workspace, *args: str) -> str:
    import subprocess

    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "genrecall daily"),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "daily@genrecall.invalid"),
    }
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    done = subprocess.run(args, check=False, cwd=ws.root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def version(ws: D.Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """``dvc add daily/day-d`` + git commit of its pointer + ``dvc push``; a warning without DVC/git."""
    cfg = D.config_of(D.DailyConfig, params, "daily")
    root = Path(ws.root)
    if not cfg.dvc or not (root / ".dvc").is_dir() or not (root / ".git").exists():
        log.warning("daily: %s is not a DVC + git repo (or daily.dvc is off): day %d is not versioned", root, day)
        return {"versioned": False}
    target = ws.record(day).relative_to(root).as_posix()
    dvc = str(Path(sys.executable).with_name("dvc"))  # the venv's dvc, not whatever is on PATH
    _git(ws, dvc, "add", "--quiet", target)
    crashpoint("version:after-dvc-add")  # drill: the day is in the DVC cache, not committed to git
    pointer, ignore = f"{target}.dvc", (Path(target).parent / ".gitignore").as_posix()
    _git(ws, "git", "add", pointer, ignore)
    staged = _git(ws, "git", "diff", "--cached", "--name-only", "--", pointer, ignore)
    if staged:
        _git(ws, "git", "commit", "--quiet", "-m", f"daily rebuild: day {day}", "--", pointer, ignore)
    sha = _git(ws, "git", "rev-parse", "HEAD")
    crashpoint("version:after-git-commit")  # drill: committed, not pushed
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


def _prune_stages(ws: D.Workspace, day: int, keep: int) -> None:
    for d in sorted(ws.path("scratch").glob("day-*")):
        if int(d.name.split("-")[1]) <= day - keep:
            shutil.rmtree(d / "stage", ignore_errors=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def summary_markdown(state: dict[str, Any], published: dict[str, Any]) -> str:
    """The run's report: what changed, the drift decision, fine-tune losses, metrics, the gate."""
    steps = {k: v["result"] for k, v in state["steps"].items()}
    ing, dr, sids = steps.get("ingest", {}), steps.get("drift", {}), steps.get("sids", {})
    lines = [
        f"# Daily rebuild, day {state['day']}",
        "",
        f"- items added **{ing.get('new_items')}**, delisted **{ing.get('delisted')}**, price changes "
        f"{ing.get('price_changes')}, new users {ing.get('new_users')}, requests {ing.get('requests')}",
        f"- mode **{dr.get('mode')}** ({'; '.join(dr.get('reasons') or []) or 'no drift'}); new-item share "
        f"{dr.get('new_share')}, quantization error ratio {dr.get('qerr_ratio')}",
        f"- SIDs: added {sids.get('added', '-')}, removed {sids.get('removed', '-')}, total {sids.get('sids')}",
    ]
    unseen = dr.get("unseen_categories") or {}
    if unseen:  # below the rebuild threshold they are served from another category's level-1 code: say so
        listed = ", ".join(f"{c} ({n} items)" for c, n in sorted(unseen.items(), key=lambda x: -x[1]))
        lines.append(
            f"- **categories the tokenizer never saw**: {listed}; share of listed items "
            f"{dr.get('unseen_category_share')} (full rebuild above daily.max_unseen_category_share)"
        )
    warm = steps.get("finetune", {}).get("warm_start") or {}
    for key, ft in (steps.get("finetune", {}).get("runs") or {}).items():
        lines.append(
            f"- fine-tune `{key}`: {ft['examples']} examples ({ft['replay']} replayed), {ft['steps']} steps, "
            f"final loss {ft['final_loss']}" + (f", warm start: {warm[key]}" if key in warm else "")
        )
    rl = steps.get("finetune", {}).get("rl") or {}
    if rl:
        lines.append(
            f"- RL `{rl['variant']}`: "
            + (rl.get("skipped") or f"retrained on the new codes from {rl['requests']} requests")
        )
    metrics = steps.get("evaluate") or {}
    lines += [
        "",
        f"Metrics ({published.get('basis', '')}):",
        "",
        "| metric | candidate | production |",
        "|---|---|---|",
    ]
    lines += [
        f"| {k} | {v:.4f} | {_fmt(metrics.get('production/' + k))} |"
        for k, v in metrics.items()
        if not k.startswith("production/")
    ]
    verdict = "**promoted**" if published["promoted"] else "**rejected** (production unchanged)"
    lines += ["", f"Gate: `{published['tag']}` {verdict}; production `{published['production']}`."]
    lines += [f"- {r}" for r in published["reasons"]]
    return "\n".join(lines) + "\n"
