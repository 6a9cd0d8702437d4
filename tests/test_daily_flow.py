"""The daily rebuild flow under Prefect's test server over three simulated days of the tiny
marketplace: new items are served by the production bundle the day they arrive, delisted items
are gone, metrics and a report are recorded per day, each day is versioned with DVC, a drift day
rebuilds the tokenizer with codes aligned to the old ones, and a rerun of a finished day is a no-op.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrecall.data.schema import ITEMS, REQUESTS, read_table
from tests.prefect_fixtures import LAYOUT, daily_params, day0_workspace, prefect_harness  # noqa: F401

pytestmark = pytest.mark.slow
BUNDLE = "daily-flow-bundle"


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict:  # noqa: F811
    """Day 0, then two incremental days through ``backfill`` and one forced full rebuild."""
    from flows.daily_rebuild import backfill, daily_rebuild

    root = day0_workspace(tmp_path_factory.mktemp("daily-flow") / "ws", BUNDLE)
    before = read_table(ITEMS, root / "data/validated")
    reports0 = {f: json.loads((root / "reports" / f).read_text()) for f in ("metrics.json", "sid_health.json")}
    results = backfill(2, workspace=str(root), params=daily_params(BUNDLE), layout=LAYOUT)
    incremental = {f: json.loads((root / "reports" / f).read_text()) for f in reports0}
    results.append(daily_rebuild(workspace=str(root), params=daily_params(BUNDLE, force_full=True), layout=LAYOUT))
    return {"root": root, "results": results, "items0": before, "reports0": reports0, "incremental": incremental}


def _day_items(root: Path, day: int) -> pd.DataFrame:
    return read_table(ITEMS, root / f"daily/day-{day:04d}/validated")


def test_each_day_publishes_a_bundle_that_serves_its_new_items(days: dict) -> None:
    from genrecall.serving.bundle import Bundle

    root, results = days["root"], days["results"]
    assert [r["day"] for r in results] == [5, 6, 7]
    assert [r["mode"] for r in results] == ["incremental", "incremental", "full"]
    known = set(days["items0"]["item_id"])
    for r in results:
        assert r["promoted"] and r["production"] == r["tag"]
        bundle = Bundle.load(r["tag"])
        delta = _day_items(root, r["day"])
        new = delta[~delta["item_id"].isin(known) & delta["delisted_at"].isna()]["item_id"].to_numpy(np.int64)
        gone = delta[delta["delisted_at"].notna()]["item_id"].to_numpy(np.int64)
        assert len(new) > 0 and len(gone) > 0, "the tiny marketplace adds and delists items every day"
        sids = bundle.index.sid_of(new)
        assert (sids >= 0).all(), "every new item has a SID in the served index"
        for item, sid in zip(new.tolist(), sids.tolist()):
            assert tuple(sid) in bundle.trie and item in bundle.index.items(sid)
        assert not np.isin(gone, bundle.index.item_ids()).any(), "delisted items left the served index"
        known |= set(delta["item_id"])


def test_new_items_are_retrievable_with_the_in_process_retriever(days: dict) -> None:
    """A tiny model fine-tuned for 8 steps is weak, so: a query built from a new item's title finds it
    for at least one of the day's new items within beam 50 (all items of the beams' clusters)."""
    from genrecall.serving import Retriever, ServeConfig

    root, last = days["root"], days["results"][1]
    retriever = Retriever.load(last["tag"], ServeConfig(max_k=1000))
    delta = _day_items(root, last["day"])
    prev = set(_day_items(root, 5)["item_id"]) | set(days["items0"]["item_id"])
    new = delta[~delta["item_id"].isin(prev) & delta["delisted_at"].isna()]
    found = [
        int(i) in {h.item_id for h in retriever.search(t, k=1000, beam_size=50).items}
        for i, t in zip(new["item_id"], new["title"])
    ]
    assert any(found), f"none of {len(found)} new items found by its own title"


def test_metrics_report_and_dvc_version_per_day(days: dict) -> None:
    root = days["root"]
    for r in days["results"]:
        rec = root / f"daily/day-{r['day']:04d}"
        metrics = json.loads((rec / "reports/daily_metrics.json").read_text())
        assert "cq_sid" in metrics["semantic"] and r["metrics"]["semantic/cq_sid/hitrate@10"] >= 0
        assert metrics["data"]["day"] == r["day"] and metrics["data"]["mode"] == r["mode"]
        assert metrics["data"]["new_items"] == r["ingest"]["new_items"]
        summary = (rec / "reports/summary.md").read_text()
        assert f"items added **{r['ingest']['new_items']}**" in summary and "promoted" in summary
        assert r["versioned"]["versioned"] and r["versioned"]["pushed"]
        assert (root / f"daily/day-{r['day']:04d}.dvc").exists()
    log = subprocess.run(["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True, check=True)
    assert log.stdout.split("\n")[:3] == ["daily rebuild: day 7", "daily rebuild: day 6", "daily rebuild: day 5"]
    assert any((root.parent / "dvc-remote").rglob("*")), "dvc push filled the local remote"
    assert (root / "reports/metrics.json").read_text() == (root / "daily/day-0007/reports/metrics.json").read_text()
    assert not (root / "daily/day-0005/reports/metrics.json").exists(), "an incremental day runs no full evaluation"
    full_day = json.loads((root / "daily/day-0007/reports/metrics.json").read_text())["semantic"]
    # the day's fresh tokenizers scored the references
    assert {"tokenizer_beam", "centroid_beam", "sid_hybrid"} <= set(full_day)


def test_incremental_days_keep_the_pipelines_full_metrics(days: dict) -> None:
    """An incremental day's gate numbers go to daily_metrics.json: metrics.json keeps every method (BM25,
    dense, the RQ-VAE baseline) and sid_health keeps the baseline's entry, for `dvc metrics show`."""
    before, after = days["reports0"], days["incremental"]
    assert after["metrics.json"] == before["metrics.json"]
    assert {"bm25", "dense", "rq_vae"} <= set(after["metrics.json"]["semantic"]) and "sid_health" in after[
        "metrics.json"
    ]
    assert set(after["sid_health.json"]) == set(before["sid_health.json"]) == {"cq_sid", "rq_vae"}
    assert after["sid_health.json"]["rq_vae"] == before["sid_health.json"]["rq_vae"]
    assert after["sid_health.json"]["cq_sid"]["items"] != before["sid_health.json"]["cq_sid"]["items"]


def test_drift_day_rebuilds_and_aligns_codes(days: dict) -> None:
    root = days["root"]
    state = json.loads((root / "data/daily/day-0007/state.json").read_text())
    sids = state["steps"]["sids"]["result"]
    assert sids["mode"] == "full"
    for rep in sids["alignment"].values():
        for level in rep["levels"]:
            if level["rule"] == "hungarian":
                assert level["agreement"] >= level["agreement_before"]
    assert json.loads((root / "reports/sid_alignment.json").read_text()) == sids["alignment"]
    assert state["steps"]["finetune"]["result"]["mode"] == "full"


def test_rerunning_a_finished_day_changes_nothing(days: dict) -> None:
    from flows.daily_rebuild import daily_rebuild

    root = days["root"]
    n_requests = len(read_table(REQUESTS, root / "data/validated"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False).stdout
    again = daily_rebuild(workspace=str(root), params=daily_params(BUNDLE, force_full=True), layout=LAYOUT, day=7)
    assert again["tag"] == days["results"][2]["tag"]
    assert len(read_table(REQUESTS, root / "data/validated")) == n_requests
    assert (
        subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False).stdout
        == head
    )


def test_incremental_days_tune_the_served_model_and_gate_on_a_paired_sample(days: dict) -> None:
    """Cost follows the delta: only the served generator is fine-tuned and only its index updated; the
    gate compares candidate and production measured on the same sample of that day's requests."""
    root = days["root"]
    state = json.loads((root / "data/daily/day-0005/state.json").read_text())
    assert set(state["steps"]["finetune"]["result"]["runs"]) == {"cq_sid/uq2sid"}
    assert set(state["steps"]["sids"]["result"]["added"]) == {"cq_sid"}
    paired = json.loads((root / "daily/day-0005/reports/daily_gate.json").read_text())
    assert paired["production"] is not None and paired["sample"]["semantic_requests"] > 0
    published = json.loads((root / "daily/day-0005/reports/publish.json").read_text())
    assert published["basis"].startswith("same sample")
    assert "production/semantic/cq_sid/hitrate@10" in days["results"][0]["metrics"]
