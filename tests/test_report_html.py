"""``genrecall report``: one self-contained HTML file from what the pipeline and the daily rebuild wrote.

The inputs are the pipeline's own file formats (tests/report_fixtures.py); whether the charts are
actually drawn is checked in a real browser in test_browser.py, the real pipeline's outputs in
test_pipeline_e2e.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genrecall.eval.report_html import write_report
from genrecall.eval.report_inputs import collect, read_day
from tests.report_fixtures import write_report_inputs


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report_inputs(tmp_path_factory.mktemp("report") / "ws")


@pytest.fixture(scope="module")
def written(workspace: Path):
    return write_report(
        workspace / "reports",
        workspace / "reports/report.html",
        sid_dir=workspace / "data/sid",
        daily_dir=workspace / "daily",
    )


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_every_section_and_chart_is_there(written) -> None:
    assert written.sections == ["recall", "items", "sid-health", "rl", "validation", "daily", "bundle"]
    assert written.charts == [
        "hitrate-semantic",
        "hitrate-personalized",
        "items-at-1000",
        "cluster-sizes",
        "sid-levels",
        "rl-variants",
        "validation",
        "daily",
    ]
    html = written.path.read_text()
    assert html.count("<svg") == len(written.charts) and html.count('<figure class="chart"') == len(written.charts)


def test_the_file_needs_no_network(written) -> None:
    html = written.path.read_text()
    assert "<script" not in html and "<img" not in html and "@import" not in html
    assert not re.search(r'<link[^>]+rel="stylesheet"', html)
    # namespaces (xmlns="http://www.w3.org/...") are names, not fetches; nothing else may point outside
    assert not re.search(r'(src|href)="(https?:)?//', html) and "url(http" not in html


def test_items_at_1000_covers_every_method_bm25_and_dense_included(written) -> None:
    html = written.path.read_text()
    chart = html[html.index('data-chart="items-at-1000"') : html.index('data-chart="cluster-sizes"')]
    for method in ("cq_sid", "rq_vae", "bm25", "dense", "eg_grpo_k2", "grpo"):
        assert f">{method}<" in chart, method  # axis labels are SVG text
    assert "generator_only@1000" in html  # the fusion block


def test_rl_variants_against_sft_show_the_difference(written) -> None:
    text = _text(written.path.read_text())
    assert "EG-GRPO against SFT" in text and "SFT (cq_sid)" in text
    assert "0.510 (+0.060)" in text and "0.390 (-0.060)" in text  # clk@10 of eg_grpo_k2 and grpo against SFT's 0.450
    assert "zero_variance_share" in text


def test_daily_history_has_a_row_per_day(written, workspace: Path) -> None:
    html = written.path.read_text()
    daily = html[html.index('id="daily"') : html.index('id="bundle"')]
    rows = re.findall(r"<tr><td>(\d+)</td><td>([\d,]+)</td><td>([\d,]+)</td><td>(\w+)</td><td>(.*?)</td>", daily)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("5", "15", "2", "incremental"),
        ("6", "16", "3", "incremental"),
        ("7", "17", "4", "full"),
    ]
    assert ["promoted" in r[4] for r in rows] == [True, False, True] and "rejected" in rows[1][4]
    days = collect(workspace / "reports", sid_dir=None, daily_dir=workspace / "daily").days
    assert days[1].production["semantic/cq_sid/hitrate@10"] == pytest.approx(0.24)  # production on the same sample


def test_a_day_recorded_before_daily_metrics_json_reads_its_metrics_json(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(
        json.dumps({"semantic": {"cq_sid": {"hitrate@10": 0.3}}, "data": {"day": 4, "generator": "served"}})
    )
    (tmp_path / "publish.json").write_text(json.dumps({"promoted": True, "tag": "b:4"}))
    row = read_day(tmp_path, 4)
    assert row.served == {"semantic/cq_sid/hitrate@10": 0.3} and row.promoted and row.mode is None


def test_a_partial_run_still_gets_a_report_that_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    res = write_report(
        tmp_path / "reports", tmp_path / "out/report.html", sid_dir=tmp_path / "none", daily_dir=tmp_path / "none"
    )
    text = _text(res.path.read_text())
    assert res.charts == [] and "daily" not in res.sections
    assert "No test-set block in metrics.json" in text and "No validation.json" in text and "Not found" in text


def test_cli_writes_the_report_and_prints_its_path(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genrecall.cli import app

    monkeypatch.chdir(workspace)
    (workspace / "empty-params.yaml").write_text("{}\n")
    monkeypatch.setenv("GENRECALL_PARAMS", str(workspace / "empty-params.yaml"))
    out = workspace / "reports/report.html"
    out.unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code == 0, result.output
    assert out.exists() and out.resolve().as_uri() in result.output and "8 charts" in result.output
