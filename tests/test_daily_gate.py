"""The daily gate measures the candidate and production on the *same* sample of today's requests:
the same model on the same sample gives the same numbers, the sample is seeded and capped, and a
different model on that sample gives a paired, comparable row."""

from __future__ import annotations

from pathlib import Path

import pytest

from genrecall.config import from_dict
from genrecall.gen.model import load_generator
from genrecall.pipeline.daily.gate import DailyGateConfig, compare_on_sample, gate_sample
from genrecall.pipeline.evaluate import EvaluateConfig
from genrecall.sid.index import SidIndex
from tests.pipeline_fixtures import TINY_PARAMS
from tests.prefect_fixtures import day0_workspace

BUNDLE = "daily-gate-bundle"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from genrecall.env import apply_defaults

    root = tmp_path_factory.mktemp("daily-gate") / "ws"
    apply_defaults(root.parent)  # a BentoML store of this module's own
    return day0_workspace(root, BUNDLE, dvc=False)


def _run(root: Path, gen_stage: str, cfg: DailyGateConfig) -> dict:
    from genrecall.serving.bundle import Bundle
    from genrecall.serving.gate import production_tag

    return compare_on_sample(
        cfg,
        from_dict(EvaluateConfig, TINY_PARAMS["evaluate"]),
        data_dir=root / "data/validated",
        candidate=load_generator(root / f"models/generator/cq_sid/{gen_stage}/final"),
        candidate_index=SidIndex.load(root / "data/sid/cq_sid"),
        production=Bundle.load(production_tag(BUNDLE)),
        feast_repo=root / "feature_repo",
        feast_data_dir=root / "data/feast",
    )


def test_same_model_on_the_same_sample_scores_the_same(ws: Path) -> None:
    """The production bundle was packaged from the live UQ2SID generator: as a candidate it must tie."""
    out = _run(ws, "uq2sid", DailyGateConfig(max_requests=40, beams=(1, 5, 10), num_threads=1))
    assert out["production"] == out["candidate"]
    assert out["generator"] == "served" and out["production_tag"].startswith(BUNDLE)
    assert set(out["candidate"]) == {"semantic", "personalized"}
    per = out["candidate"]["personalized"]["cq_sid"]
    assert {"hitrate@1", "hitrate@10", "items@1000", "clk@10", "pvr@10"} <= set(per)
    assert 0 < out["sample"]["semantic_requests"] <= 40 and 0 < out["sample"]["personalized_requests"] <= 40


def test_a_different_candidate_is_scored_on_the_identical_sample(ws: Path) -> None:
    cfg = DailyGateConfig(max_requests=40, beams=(1, 5, 10), num_threads=1)
    tied, other = _run(ws, "uq2sid", cfg), _run(ws, "q2sid", cfg)
    assert other["sample"] == tied["sample"], "same rows, same beams for every candidate"
    assert other["production"] == tied["production"], "production's numbers do not depend on the candidate"
    assert other["candidate"] != other["production"]


def test_the_sample_is_seeded_and_capped(ws: Path) -> None:
    ecfg = from_dict(EvaluateConfig, TINY_PARAMS["evaluate"])
    ids = SidIndex.load(ws / "data/sid/cq_sid").item_ids()
    args = (ws / "data/validated", ids, ws / "feature_repo", ws / "data/feast")
    a = gate_sample(DailyGateConfig(max_requests=15, seed=3), ecfg, *args)
    b = gate_sample(DailyGateConfig(max_requests=15, seed=3), ecfg, *args)
    c = gate_sample(DailyGateConfig(max_requests=15, seed=4), ecfg, *args)
    assert len(a.semantic) == 15 and a.describe() == b.describe() != c.describe()
    assert a.eval_cfg.beams == DailyGateConfig().beams and max(a.eval_cfg.report_beams) <= max(a.eval_cfg.beams)


def test_after_a_refit_each_side_is_prompted_in_its_own_sid_space(ws: Path, tmp_path: Path) -> None:
    """A candidate whose Feast store speaks another code space (a refit relabels codes) must not change
    production's numbers: production gets contexts from a store built with its own SID assignments."""
    import numpy as np

    from genrecall.data.schema import SID_ASSIGNMENTS, read_table, write_table
    from genrecall.features.sources import FeaturesConfig
    from genrecall.pipeline.features import features
    from genrecall.serving.bundle import Bundle
    from genrecall.serving.gate import production_tag

    sids = read_table(SID_ASSIGNMENTS, ws / "data/sid/cq_sid")
    perm = np.random.default_rng(0).permutation(max(int(c[1]) for c in sids["codes"]) + 1)
    codes = [[int(c[0]), int(perm[int(c[1])]), *map(int, c[2:])] for c in sids["codes"]]
    relabelled = sids.assign(codes=codes, sid=["-".join(map(str, c)) for c in codes])
    write_table(relabelled, SID_ASSIGNMENTS, tmp_path / "sid")
    features(FeaturesConfig(), ws / "data/validated", tmp_path / "sid", ws / "feature_repo", tmp_path / "feast-new")

    cfg = DailyGateConfig(max_requests=40, beams=(1, 5, 10), num_threads=1)
    shared = _run(ws, "uq2sid", cfg)  # production prompted with its own store: the reference
    prod = Bundle.load(production_tag(BUNDLE))
    args = {
        "data_dir": ws / "data/validated",
        "candidate": load_generator(ws / "models/generator/cq_sid/uq2sid/final"),
        "candidate_index": SidIndex.load(ws / "data/sid/cq_sid"),
        "production": prod,
        "feast_repo": ws / "feature_repo",
        "feast_data_dir": tmp_path / "feast-new",
    }
    ecfg = from_dict(EvaluateConfig, TINY_PARAMS["evaluate"])
    own = compare_on_sample(cfg, ecfg, **args, production_feast_data_dir=ws / "data/feast")
    assert own["sample"]["contexts"] == "each side's own SID space"
    assert own["production"] == shared["production"], "production's numbers do not depend on the candidate's codes"
    biased = compare_on_sample(cfg, ecfg, **args)  # the old behaviour: production fed the new codes
    assert biased["sample"]["contexts"] == "shared SID space"
    assert biased["production"]["personalized"] != shared["production"]["personalized"], (
        "sanity: foreign codes in the prompt do change production's personalized numbers"
    )

    sample = gate_sample(
        cfg,
        ecfg,
        ws / "data/validated",
        prod.index.item_ids(),
        ws / "feature_repo",
        tmp_path / "feast-new",
        ws / "data/feast",
    )
    live = {tuple(c) for c in prod.index.sid_of(prod.index.item_ids())[:, :-1].tolist()}
    own_sids = {s[:3] for c in sample.production_contexts.values() for s in c.recent_sids}
    assert own_sids and own_sids <= live, "production's contexts hold only production's own SIDs"


@pytest.mark.slow
def test_the_daily_gate_rejects_a_worse_candidate_and_production_keeps_serving(tmp_path: Path) -> None:
    """A day whose fine-tune wrecks the generator (a learning rate 10,000x too high), gated with no
    tolerance: rejected on the paired sample, production unchanged and still answering queries."""
    import json

    from genrecall.pipeline.daily import Workspace, run_day
    from genrecall.serving.gate import ProductionPointer, production_tag
    from genrecall.serving.retriever import Retriever
    from tests.prefect_fixtures import LAYOUT, daily_params

    name = "daily-reject-bundle"
    root = day0_workspace(tmp_path / "ws", name, dvc=False)
    prod0 = production_tag(name)
    params = daily_params(name)
    params["daily"]["finetune"].update(lr=3.0, max_steps=20, warmup_steps=1)
    params["gate"] = {"abs_tolerance": 0.0, "rel_tolerance": 0.0}
    state = run_day(Workspace(root, **LAYOUT), params)
    pub = state["steps"]["publish"]["result"]
    paired = json.loads((root / f"daily/day-{state['day']:04d}/reports/daily_gate.json").read_text())
    assert paired["production"] is not None and paired["production_tag"] == prod0
    assert not pub["promoted"], pub
    assert pub["production"] == prod0 == production_tag(name) and pub["tag"] != prod0
    assert pub["basis"].startswith("same sample of today's requests") and pub["reasons"]
    decision = json.loads((ProductionPointer(name).root / "decisions" / f"{pub['tag'].split(':')[1]}.json").read_text())
    assert decision["promoted"] is False and any(not c["passed"] for c in decision["checks"])
    assert (
        "**rejected** (production unchanged)" in (root / f"daily/day-{state['day']:04d}/reports/summary.md").read_text()
    )
    answer = Retriever.load(production_tag(name)).search("kettle", k=5, beam_size=5)
    assert answer.items and answer.bundle == prod0, "production keeps serving"
