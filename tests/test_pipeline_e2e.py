"""The whole pipeline, stage function by stage function, on the tiny marketplace."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from genrecall.eval.report import check_metrics
from tests.pipeline_fixtures import TinyRun, run_tiny_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    return run_tiny_pipeline(tmp_path_factory.mktemp("pipeline"))


def test_metrics_json_follows_the_contract(tiny: TinyRun) -> None:
    m = json.loads((tiny.reports / "metrics.json").read_text())
    check_metrics(m)  # fractions in [0, 1]
    assert set(m["semantic"]) == {"cq_sid", "rq_vae", "bm25", "dense", "tokenizer_beam", "centroid_beam", "sid_hybrid"}
    assert set(m["personalized"]) >= {"cq_sid", "cq_sid_q2sid", "bm25", "dense"}
    for method in ("cq_sid", "rq_vae"):
        block = m["semantic"][method]
        assert {"hitrate@1", "hitrate@10", "items@100", "items@1000", "beams_to_target"} <= set(block)
        assert block["hitrate@1"] <= block["hitrate@10"]  # more beams never lose a hit
    for key in ("clk@1", "clk@10", "exp@1", "exp@10", "pvr@10"):
        assert 0.0 <= m["personalized"]["cq_sid"][key] <= 1.0
    assert m["personalized"]["cq_sid"]["clk@1"] <= m["personalized"]["cq_sid"]["clk@10"]
    assert set(m["sid_health"]) == {"cq_sid", "rq_vae"}
    assert m["data"]["preset"] == "tiny" and m["data"]["test_pairs"] > 0


def test_training_logged_a_falling_loss_for_every_stage(tiny: TinyRun) -> None:
    report = json.loads((tiny.reports / "train.json").read_text())["stages"]
    assert set(report["cq_sid"]) == {"i2sid", "q2sid", "uq2sid"} and set(report["rq_vae"]) == {"i2sid", "q2sid"}
    for method, stages in report.items():
        for stage, s in stages.items():
            loss = pd.read_csv(tiny.root / "models" / "generator" / method / stage / "loss.csv")["loss"]
            assert s["steps"] == 15 and len(loss) > 0
    first = pd.read_csv(tiny.root / "models" / "generator" / "cq_sid" / "i2sid" / "loss.csv")["loss"]
    assert first.iloc[-3:].mean() < first.iloc[:3].mean()


def test_curves_and_plots_are_written(tiny: TinyRun) -> None:
    curves = pd.read_csv(tiny.reports / "curves.csv")
    assert set(curves["test_set"]) == {"semantic", "personalized"}
    assert (tiny.reports / "hitrate_vs_beams.png").stat().st_size > 0


def test_report_html_from_the_pipeline_outputs(tiny: TinyRun) -> None:
    from genrecall.eval.report_html import write_report

    res = write_report(
        tiny.reports, tiny.reports / "report.html", sid_dir=tiny.root / "data/sid", daily_dir=tiny.root / "daily"
    )
    assert res.sections == ["recall", "items", "sid-health", "rl", "validation"]  # no train_rl, no daily run here
    assert {
        "hitrate-semantic",
        "hitrate-personalized",
        "items-at-1000",
        "cluster-sizes",
        "sid-levels",
        "validation",
    } == set(res.charts)
    html = res.path.read_text()
    chart = html[html.index('data-chart="items-at-1000"') : html.index('data-chart="cluster-sizes"')]
    assert all(f">{m}<" in chart for m in ("cq_sid", "rq_vae", "bm25", "dense"))
    assert "No EG-GRPO variant in metrics.json" in html
