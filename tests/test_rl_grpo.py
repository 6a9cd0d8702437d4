from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genrecall.gen.beam import beam_search
from genrecall.gen.examples import encode_user_query, sid_lookup
from genrecall.gen.model import GeneratorConfig, build_model, load_generator
from genrecall.gen.sft import SFTConfig, make_optimizer
from genrecall.pipeline.package import PackageConfig, select_generator
from genrecall.rl.group import build_groups
from genrecall.rl.grpo import GRPOConfig, RLDataset, grpo_loss, member_log_probs, train_grpo
from genrecall.rl.reward import requests_sids, rewards
from genrecall.sid.trie import SidTrie
from tests.test_gen_examples import tiny_tables, tiny_tokenizer

torch.set_num_threads(1)
TINY = GeneratorConfig(
    hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, max_positions=96
)


@pytest.fixture(scope="module")
def toy():
    """Queries "<color> <noun>" whose clicks and exposures are the matching items: learnable from the prompt."""
    t = tiny_tables(n_requests=120)
    tok = tiny_tokenizer(t)
    trie = SidTrie.from_sids(np.array(t.sids["codes"].tolist()))
    rows = t.requests[t.requests["clicked"].map(len) > 0].reset_index(drop=True)
    data = RLDataset(
        [encode_user_query(tok, q, None) for q in rows["query"]],
        requests_sids(rows, sid_lookup(t.sids)),
        rows["request_id"].to_numpy(np.int64),
    )
    return tok, trie, data


def _top1_reward(model, tok, trie, data: RLDataset) -> float:
    res = beam_search(model, tok, trie, data.prompts, 1)
    return float(np.mean([rewards(r.sids, req)[0] for r, req in zip(res, data.requests)]))


def test_tiny_run_moves_every_parameter_and_raises_reward(toy, tmp_path) -> None:
    tok, trie, data = toy
    model = build_model(TINY, len(tok), tokenizer=tok)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    start = _top1_reward(model, tok, trie, data)
    cfg = GRPOConfig(steps=40, prompts_per_step=8, group_size=6, experts=2, lr=3e-3, warmup_steps=2, seed=1)
    res = train_grpo(model, tok, trie, data, cfg, tmp_path / "eg", show_progress=False)
    for name, p in model.named_parameters():  # weight decay is off: every change comes from the gradient
        assert not torch.equal(p.detach(), before[name]), f"{name} did not change"
    assert _top1_reward(model, tok, trie, data) > start + 0.2
    s = res.summary()
    assert s["policy_reward_mean_last"] > s["policy_reward_mean_first"]
    assert (
        res.logs[0]["kl"] == pytest.approx(0.0, abs=1e-6) and s["kl_last"] > s["kl_first"] > 0
    )  # drifts from the start
    rows = list(csv.DictReader((tmp_path / "eg" / "log.csv").open()))
    assert len(rows) == 40 and float(rows[-1]["reward_mean"]) == pytest.approx(res.logs[-1]["reward_mean"], rel=1e-4)
    loaded = load_generator(res.final_dir)
    for (name, p), (_, q) in zip(model.named_parameters(), loaded.model.named_parameters()):
        assert torch.equal(p.detach(), q.detach()), name
    assert json.loads((res.final_dir / "trainer_state.json").read_text())["config"]["experts"] == 2


def test_repeated_updates_on_one_batch_lower_the_clipped_loss(toy) -> None:
    tok, trie, data = toy
    model = build_model(TINY, len(tok), tokenizer=tok)
    prompts = data.prompts[:8]
    groups = build_groups(
        model.eval(),
        tok,
        trie,
        prompts,
        data.requests[:8],
        group_size=6,
        experts=2,
        generator=torch.Generator().manual_seed(0),
    )
    b, m = np.nonzero(groups.active)
    adv = torch.from_numpy(groups.advantages[b, m]).float()
    opt = make_optimizer(model, SFTConfig(lr=3e-3, weight_decay=0.0))
    old, losses = None, []
    for _ in range(6):
        logp = member_log_probs(model.train(), tok, prompts, groups.sids[b, m], b)
        old = logp.detach() if old is None else old
        loss, _ = grpo_loss(logp, old, adv, clip_eps=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx(-float(adv.mean()), abs=1e-5)  # ratio 1 at the first update
    assert losses[-1] < losses[0] - 0.05


def test_clipping_stops_the_gradient_past_the_trust_region() -> None:
    logp = torch.log(torch.tensor([[0.5], [0.5]])).requires_grad_(True)
    old = torch.log(torch.tensor([[0.3], [0.3]]))  # ratio 1.67 > 1 + 0.2
    loss, _ = grpo_loss(logp, old, torch.tensor([1.0, -1.0]), clip_eps=0.2)
    loss.backward()
    # positive advantage: already past 1 + eps, no push further; negative advantage: still pulled down
    assert logp.grad[0, 0] == 0.0 and logp.grad[1, 0] > 0


def test_k3_kl_is_zero_at_the_reference_and_positive_away_from_it() -> None:
    ref = torch.log(torch.tensor([[0.2, 0.5]]))
    _, kl = grpo_loss(ref.clone(), ref, torch.zeros(1), ref_logp=ref, beta_kl=0.1)
    assert float(kl) == pytest.approx(0.0, abs=1e-7)
    _, kl = grpo_loss(torch.log(torch.tensor([[0.4, 0.1]])), ref, torch.zeros(1), ref_logp=ref, beta_kl=0.1)
    assert float(kl) > 0


def test_injection_cuts_the_zero_variance_share(toy) -> None:
    tok, trie, data = toy
    shares = {}
    for k in (0, 2):
        model = build_model(TINY, len(tok), tokenizer=tok)
        cfg = GRPOConfig(
            steps=4, prompts_per_step=16, group_size=4, experts=k, group_mode="beams", lr=1e-3, track_kl=False
        )
        shares[k] = train_grpo(model, tok, trie, data, cfg, show_progress=False).summary()["zero_variance_share"]
    assert shares[0] > 0.3 and shares[2] == 0.0


def test_select_generator_takes_the_best_candidate_whose_deep_recall_holds(tmp_path) -> None:
    dirs = {m: tmp_path / m for m in ("cq_sid", "grpo", "eg_grpo_k2", "eg_grpo_k4")}
    for d in list(dirs.values())[:3]:
        d.mkdir()  # eg_grpo_k4 was never trained
    per = {
        "cq_sid": {"clk@10": 0.60, "hitrate@100": 0.90},
        "grpo": {"clk@10": 0.70, "hitrate@100": 0.85},
        "eg_grpo_k2": {"clk@10": 0.62, "hitrate@100": 0.895},
        "eg_grpo_k4": {"clk@10": 0.9, "hitrate@100": 0.95},
    }
    cfg = PackageConfig(select_candidates=("cq_sid", "eg_grpo_k2", "eg_grpo_k4", "grpo"))
    sel = select_generator(cfg, {"personalized": per}, dirs)
    # grpo loses > 1% of hitrate@100, eg_grpo_k4 has no model: eg_grpo_k2 wins
    assert sel.method == "eg_grpo_k2" and Path(sel.generator_dir) == dirs["eg_grpo_k2"]
    assert sel.candidates["grpo"]["eligible"] == 0.0 and sel.candidates["eg_grpo_k4"]["eligible"] == 0.0
    assert select_generator(PackageConfig(), {"personalized": per}, dirs).method == "cq_sid"  # default: SFT only
    assert select_generator(cfg, {}, dirs).method == "cq_sid"  # no metrics: the baseline


@pytest.mark.slow  # the whole train_rl stage on the tiny pipeline (~6 s)
def test_train_rl_stage_on_the_tiny_pipeline(tmp_path) -> None:
    from genrecall.config import from_dict
    from genrecall.pipeline.evaluate import EvaluateConfig, evaluate
    from genrecall.pipeline.train import TrainConfig
    from genrecall.pipeline.train_rl import TrainRLConfig, train_rl
    from tests.pipeline_fixtures import run_tiny_pipeline

    run = run_tiny_pipeline(tmp_path)
    p, d, root = run.params, tmp_path / "data", tmp_path
    cfg = TrainRLConfig(
        variants={"grpo": {"experts": 0}, "eg_grpo_k2": {"experts": 2}},
        max_requests=64,
        grpo={"steps": 3, "prompts_per_step": 4, "group_size": 4, "num_threads": 1},
    )
    res = train_rl(
        cfg,
        run.data,
        d / "sid",
        root / "models" / "generator",
        root / "models" / "rl",
        run.reports,
        train_cfg=from_dict(TrainConfig, p["train"]),
        feast_repo=root / "feature_repo",
        feast_data_dir=d / "feast",
        show_progress=False,
    )
    assert set(res.variants) == {"grpo", "eg_grpo_k2"} and 0 < res.requests <= 64
    report = json.loads((run.reports / "train_rl.json").read_text())
    assert report["variants"]["eg_grpo_k2"]["summary"]["steps"] == 3
    assert "zero_variance_share" in report["variants"]["grpo"]["summary"]
    assert (run.reports / "train_rl" / "grpo.csv").exists()
    evaluate(
        from_dict(EvaluateConfig, p["evaluate"]),
        run.data,
        d / "sid",
        d / "embeddings",
        root / "models" / "generator",
        run.reports,
        feast_repo=root / "feature_repo",
        feast_data_dir=d / "feast",
        rl_dir=root / "models" / "rl",
    )
    per = json.loads((run.reports / "metrics.json").read_text())["personalized"]
    for m in ("cq_sid", "grpo", "eg_grpo_k2"):
        assert {"clk@1", "clk@10", "exp@1", "exp@10", "pvr@10", "hitrate@10", "items@100"} <= set(per[m]), m
    assert "eg_grpo_k4" not in per  # not trained: skipped, not an error
