"""Which model the daily rebuild's served generator descends from, and where its training starts.

``package`` may serve a model trained past SFT (an EG-GRPO variant, ``package.select_candidates``).
The daily rebuild must not then fall back to SFT without anyone deciding so:

- an incremental day fine-tunes the served stage from production's generator the first time
  (``warm_start``), and the committed stage records that lineage in ``lineage.json``; later days
  continue from the committed stage as usual (a rejected day's included);
- a full-rebuild day (tokenizer refit) retrains SFT from scratch and then reruns the lineage's RL
  variant on the new codes (``retrain_rl``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, NamedTuple

from genrecall.config import from_dict
from genrecall.pipeline.daily.state import DailyConfig, config_of
from genrecall.pipeline.train import TrainConfig

LINEAGE = "lineage.json"  # beside a fine-tuned stage's final/: the served model its weights descend from


class WarmStart(NamedTuple):
    """Where the served stage's fine-tune starts."""

    path: Path  # a generator directory: the live stage's final/, or the production bundle's generator/
    lineage: str  # the served variant the weights descend from ("" = plain SFT)
    why: str  # for the day's report


class ProductionPick(NamedTuple):
    tag: str
    path: Path  # the bundle directory in the BentoML store
    files: dict[str, str]  # the manifest's file hashes
    served: str  # the variant ``package`` picked ("" = the SFT baseline)


def production_pick(params: dict[str, Any]) -> ProductionPick | None:
    """What the production bundle serves, from its (verified) manifest; None without production."""
    from genrecall.pipeline.package import PackageConfig
    from genrecall.serving.bundle import resolve, verify
    from genrecall.serving.gate import production_tag

    tag = production_tag(config_of(DailyConfig, params, "daily").bundle_name)
    if tag is None:
        return None
    path, _ = resolve(tag)
    manifest = verify(path)
    served = (manifest.metrics.get("served") or {}).get("method") or ""
    return ProductionPick(
        tag,
        path,
        manifest.files,
        "" if served == config_of(PackageConfig, params, "package").select_baseline else served,
    )


def warm_start(ws: Any, params: dict[str, Any], method: str, stage: str) -> WarmStart:
    """The live stage, unless production serves a model trained past SFT (an EG-GRPO variant picked by
    ``package``) on the tokenizer that is still live while the live stage is still plain SFT: then
    production's generator, since fine-tuning SFT would throw the RL gains away every day. Once a day
    has started from production, the committed stage carries that lineage (``LINEAGE``) and later days
    continue from it like from any live stage (a rejected day's generator included)."""
    from genrecall.serving.bundle import sha256_file

    live = ws.path("generator") / method / stage
    if (live / LINEAGE).exists():
        lineage = json.loads((live / LINEAGE).read_text())["lineage"]
        return WarmStart(live / "final", lineage, f"live stage ({lineage} lineage)")
    prod = production_pick(params)
    if prod is None or not prod.served:
        return WarmStart(
            live / "final",
            "",
            "live stage (" + (f"production {prod.tag} serves SFT)" if prod else "no production bundle)"),
        )
    tok = ws.path("models_sid") / method
    bundled = {rel.split("/", 1)[1]: sha for rel, sha in prod.files.items() if rel.startswith("sid_tokenizer/")}
    if not bundled or any(not (tok / f).is_file() or sha256_file(tok / f) != sha for f, sha in bundled.items()):
        return WarmStart(live / "final", "", f"live stage (production {prod.tag} was built on another tokenizer)")
    return WarmStart(prod.path / "generator", prod.served, f"production {prod.tag} ({prod.served})")


def served_lineage(ws: Any, params: dict[str, Any], method: str, stage: str) -> str:
    """The RL variant the served stage descends from: the live stage's record, else production's pick."""
    live = ws.path("generator") / method / stage / LINEAGE
    if live.exists():
        return json.loads(live.read_text())["lineage"]
    prod = production_pick(params)
    return prod.served if prod else ""


def retrain_rl(ws: Any, day: int, params: dict[str, Any], gen_dir: Path, train_cfg: TrainConfig) -> dict[str, Any]:
    """On a full-rebuild day, after SFT from scratch: rerun the RL variant the served stage descends
    from (``served_lineage``) on the new codes, and serve it from the stage's ``final/`` (the day's
    SFT model moves to ``sft_final/``). Without an RL lineage, nothing to do."""
    from genrecall.pipeline.train_rl import TrainRLConfig, train_rl

    rl_cfg = from_dict(TrainRLConfig, params.get("train_rl"))
    lineage = served_lineage(ws, params, rl_cfg.method, rl_cfg.init_stage)
    if not lineage:
        return {}
    if lineage not in rl_cfg.variants:
        return {"variant": lineage, "skipped": f"{lineage!r} is not in train_rl.variants: the day serves SFT"}
    rl_cfg = dataclasses.replace(rl_cfg, variants={lineage: rl_cfg.variants[lineage]})
    res = train_rl(
        rl_cfg,
        ws.stage(day, ws.validated),
        ws.stage(day, ws.sid),
        gen_dir,
        ws.stage(day, "models/rl"),
        ws.stage(day, ws.reports),
        train_cfg=train_cfg,
        feast_repo=ws.path("repo"),
        feast_data_dir=ws.stage(day, ws.feast),
        show_progress=False,
    )
    stage = gen_dir / rl_cfg.method / rl_cfg.init_stage
    (stage / "final").rename(stage / "sft_final")
    shutil.copytree(res.variants[lineage]["final_dir"], stage / "final")
    (stage / LINEAGE).write_text(json.dumps({"lineage": lineage}) + "\n")
    return {"variant": lineage, "requests": res.requests, "summary": res.variants[lineage]["summary"]}
