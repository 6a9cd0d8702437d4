"""When production serves a model trained past SFT (an EG-GRPO variant picked by ``package``), the
daily fine-tune starts from production's weights, not from the SFT stage: otherwise every day would
throw the RL gains away. A tokenizer that changed since (a full rebuild) falls back to the live stage,
and a full-rebuild day on that lineage reruns the variant's EG-GRPO on the new codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from genrecall.gen.model import load_generator, save_generator
from genrecall.pipeline.daily import Workspace, load_state, run_day
from genrecall.pipeline.daily.lineage import warm_start
from genrecall.pipeline.package import PackageConfig, package
from genrecall.serving.gate import ProductionPointer
from tests.prefect_fixtures import LAYOUT, daily_params, day0_workspace

BUNDLE = "warm-start-bundle"
SFT = "models/generator/cq_sid/uq2sid/final"
TINY_RL = {
    "variants": {"eg_grpo_k2": {"experts": 2}},
    "max_requests": 100,
    "grpo": {"group_size": 4, "steps": 3, "prompts_per_step": 4, "lr": 1e-3, "num_threads": 1},
}


def _shifted_copy(src: Path, dst: Path, shift: float) -> torch.Tensor:
    """A stand-in for an RL model: the SFT weights with the token embeddings moved by ``shift``."""
    model, tok = load_generator(src)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb += shift
    save_generator(model, tok, dst)
    return emb.detach().clone()


def _serve_rl_variant(root: Path, variant: str) -> str:
    """Package a bundle whose selection rule picks ``variant`` (its clk@10 is higher) and promote it."""
    metrics = json.loads((root / "reports/metrics.json").read_text())
    per = metrics["personalized"]
    per[variant] = {**per["cq_sid"], "clk@10": per["cq_sid"]["clk@10"] + 0.1}
    (root / "reports/metrics_rl.json").write_text(json.dumps(metrics))
    cfg = PackageConfig(name=BUNDLE, run_gate=False, select_candidates=("cq_sid", variant))
    res = package(
        cfg,
        generator_dir=root / SFT,
        sid_model_dir=root / "models/sid/cq_sid",
        index_dir=root / "data/sid/cq_sid",
        data_dir=root / "data/validated",
        metrics_path=root / "reports/metrics_rl.json",
        params={"day": 0},
        dvc_lock=root / "no-dvc.lock",
        rl_dir=root / "models/rl",
    )
    assert res.served == variant
    ProductionPointer(BUNDLE).set(res.tag, reason="test: an EG-GRPO bundle in production")
    return res.tag


@pytest.mark.slow  # trains SFT, RL and a daily fine-tune (~8 s)
def test_daily_fine_tune_starts_from_the_served_rl_model(tmp_path: Path) -> None:
    from genrecall.env import apply_defaults

    apply_defaults(tmp_path)  # a BentoML store of this test's own
    root = day0_workspace(tmp_path / "ws", BUNDLE, dvc=False)
    params = daily_params(BUNDLE, dvc=False)
    ws = Workspace(root, **LAYOUT)
    sft = load_generator(root / SFT).model.get_input_embeddings().weight.detach().clone()

    assert warm_start(ws, params, "cq_sid", "uq2sid").path == root / SFT, "an SFT bundle: the live stage"
    rl = _shifted_copy(root / SFT, root / "models/rl/cq_sid/eg_grpo_k2/final", shift=0.5)
    tag = _serve_rl_variant(root, "eg_grpo_k2")
    start = warm_start(ws, params, "cq_sid", "uq2sid")
    assert start.lineage == "eg_grpo_k2" and tag in start.why
    assert torch.equal(load_generator(start.path).model.get_input_embeddings().weight, rl)

    # a tokenizer that is not the one production was built on: back to the live stage
    changed = Workspace(root, models_sid="models/sid-refit", **LAYOUT)
    shutil.copytree(root / "models/sid", root / "models/sid-refit")
    victim = next(p for p in sorted((root / "models/sid-refit/cq_sid").iterdir()) if p.suffix == ".json")
    victim.write_text(victim.read_text() + " ")
    refit = warm_start(changed, params, "cq_sid", "uq2sid")
    assert refit.path == root / SFT and refit.why == f"live stage (production {tag} was built on another tokenizer)"

    state = run_day(ws, params)
    ft = state["steps"]["finetune"]["result"]
    assert ft["mode"] == "incremental" and "eg_grpo_k2" in ft["warm_start"]["cq_sid/uq2sid"]
    tuned = load_generator(root / SFT).model.get_input_embeddings().weight.detach()  # committed: the live stage now
    assert not torch.equal(tuned, rl), "the fine-tune trained"
    assert (tuned - rl).norm() < (tuned - sft).norm(), "it started from the RL model, not from SFT"
    summary = (ws.record(state["day"], "reports") / "summary.md").read_text()
    assert "warm start: production" in summary
    assert load_state(ws, state["day"])["done"]
    # the committed stage now carries the RL lineage: the next day continues from it, not from production
    nxt = warm_start(ws, params, "cq_sid", "uq2sid")
    assert nxt.path == root / SFT and nxt.lineage == "eg_grpo_k2"

    # a full rebuild: SFT from scratch on the new codes, then the lineage's EG-GRPO on top, served
    full = {**daily_params(BUNDLE, dvc=False, force_full=True), "train_rl": TINY_RL}
    state = run_day(ws, full)
    rl = state["steps"]["finetune"]["result"]["rl"]
    assert rl["variant"] == "eg_grpo_k2" and rl["requests"] > 0 and "skipped" not in rl
    stage = root / "models/generator/cq_sid/uq2sid"
    assert json.loads((stage / "lineage.json").read_text())["lineage"] == "eg_grpo_k2"
    served = load_generator(stage / "final").model.get_input_embeddings().weight
    assert not torch.equal(served, load_generator(stage / "sft_final").model.get_input_embeddings().weight)
    assert "RL `eg_grpo_k2`: retrained" in (ws.record(state["day"], "reports") / "summary.md").read_text()
