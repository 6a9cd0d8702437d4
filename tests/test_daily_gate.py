"""The daily gate measures the candidate and production on the *same* sample of today's requests:
the same model on the same sample gives the same numbers, the sample is seeded and capped, and a
different model on that sample gives a paired, comparable row."""

from __future__ import annotations

from pathlib import Path

import pytest

from genrecall.config import from_dict
from genrecall.gen.model import load_generator
from genrecall.pipeline.daily_gate import DailyGateConfig, compare_on_sample, gate_sample
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

    return compare_on_sample(cfg, from_dict(EvaluateConfig, TINY_PARAMS["evaluate"]), data_dir=root / "data/validated",
                             candidate=load_generator(root / f"models/generator/cq_sid/{gen_stage}/final"),
                             candidate_index=SidIndex.load(root / "data/sid/cq_sid"),
                             production=Bundle.load(production_tag(BUNDLE)), feast_repo=root / "feature_repo",
                             feast_data_dir=root / "data/feast")  # fmt: skip


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
