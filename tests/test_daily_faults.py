"""Failure semantics of the daily rebuild: a crash at any step leaves production serving and the
live data untouched (or, past ``commit``, committed exactly once), and a clean rerun finishes the
day exactly once. Also: code alignment after a refit, and versioning outside a DVC repo.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest

from genrecall.data.schema import ITEMS, REQUESTS, read_table
from genrecall.pipeline.daily import STEPS, InjectedFailure, Workspace, load_state
from genrecall.pipeline.daily.commit import version
from genrecall.pipeline.daily.drift import align_codes
from tests.prefect_fixtures import LAYOUT, _tiny_root, daily_params, day0_workspace, prefect_harness  # noqa: F401

BUNDLE = "daily-fault-bundle"
LIVE = ("data/raw", "data/validated", "data/embeddings", "data/sid", "models/sid", "models/generator")


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under the live outputs (Feast's SQLite files change on reads: left out)."""
    out = {}
    for d in LIVE:
        for p in sorted((root / d).rglob("*")):
            if p.is_file():
                out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.slow  # fits two SID tokenizers (~5 s)
def test_align_codes_undoes_a_relabelling_of_the_codebooks() -> None:
    """Permute a fitted tokenizer's level-2/3 codebooks (what a refit does to code labels): alignment
    must find the inverse, so the index gets its old SIDs back and ``assign`` agrees with it."""
    import torch

    from genrecall.pipeline.embed import load_embeddings
    from genrecall.pipeline.sid import categories_of, listed_items
    from genrecall.sid.index import SidIndex
    from genrecall.sid.tokenizer import SidTokenizer

    root = _tiny_root()
    old = SidIndex.load(root / "data/sid/cq_sid")
    tok = SidTokenizer.load(root / "models/sid/cq_sid")
    rng = np.random.default_rng(0)
    perms = {lvl: rng.permutation(size) for lvl, size in enumerate(tok.codebook_sizes) if lvl > 0}
    state = tok.model.state_dict()
    for lvl, perm in perms.items():  # code i moves to row perm[i]
        for key in [k for k in state if k.startswith(f"levels.{lvl}.") and state[k].shape[0] == len(perm)]:
            state[key] = state[key][torch.from_numpy(np.argsort(perm))]
    tok.model.load_state_dict(state)
    ids = old.item_ids()
    sids = old.sid_of(ids)
    for lvl, perm in perms.items():
        sids[:, lvl] = perm[sids[:, lvl]]
    relabelled = SidIndex.build(ids, sids, codebook_sizes=old.codebook_sizes, suffix_mode=old.suffix_mode)
    assert (relabelled.sid_of(ids) != old.sid_of(ids)).any()

    aligned, report = align_codes(old, tok, relabelled)
    assert np.array_equal(aligned.sid_of(ids), old.sid_of(ids))
    assert report["level_codes_unchanged"] == 1.0 and report["levels"][0]["rule"] == "category-forced"
    items = listed_items(root / "data/validated").set_index("item_id").loc[ids].reset_index()
    emb = load_embeddings(root / "data/embeddings")
    codes = tok.assign(emb.items[emb.item_rows(ids)], categories_of(items))
    assert np.array_equal(codes, aligned.sid_of(ids)[:, :-1]), "the aligned tokenizer assigns the aligned codes"


def test_version_without_dvc_warns_and_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="genrecall.pipeline.daily"):
        assert version(Workspace(tmp_path), 3, {}) == {"versioned": False}
    assert "not a DVC + git repo" in caplog.text


@pytest.mark.slow
def test_a_crash_at_each_step_loses_nothing_and_the_rerun_finishes_once(tmp_path: Path, prefect_harness: None) -> None:  # noqa: F811
    from flows.daily_rebuild import daily_rebuild
    from genrecall.serving.gate import production_tag

    root = day0_workspace(tmp_path / "ws", BUNDLE)
    params = daily_params(BUNDLE)
    prod0, live0 = production_tag(BUNDLE), snapshot(root)
    requests0 = read_table(REQUESTS, root / "data/validated")
    commits0 = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    ).stdout
    ws = Workspace(root, **LAYOUT)

    for i, step in enumerate(STEPS):
        with pytest.raises(InjectedFailure):
            daily_rebuild(workspace=str(root), params=params, layout=LAYOUT, fail_at=step)
        done = set(load_state(ws, 5)["steps"])
        assert done == set(STEPS[:i]), f"crash at {step}: the earlier steps stay done, nothing later ran"
        committed = i > STEPS.index("commit")
        assert (snapshot(root) == live0) != committed, (
            f"crash at {step}: live data {'not ' if committed else ''}committed"
        )
        published = i > STEPS.index("publish")
        assert (production_tag(BUNDLE) == prod0) != published, f"crash at {step}: production changed too early"

    result = daily_rebuild(workspace=str(root), params=params, layout=LAYOUT)
    assert result["day"] == 5 and result["promoted"] and production_tag(BUNDLE) == result["tag"]
    requests = read_table(REQUESTS, root / "data/validated")
    assert requests["request_id"].is_unique and len(requests) == len(requests0) + result["ingest"]["requests"]
    assert read_table(ITEMS, root / "data/validated")["item_id"].is_unique
    commits = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    ).stdout
    assert int(commits) == int(commits0) + 1, "the day is versioned exactly once"
    assert not list(root.glob("data/*.old-day*")) and not list(root.glob("models/*.old-day*"))
    state = json.loads((root / "data/daily/day-0005/state.json").read_text())
    assert state["done"] and set(state["steps"]) == set(STEPS)

    again = daily_rebuild(workspace=str(root), params=params, layout=LAYOUT, day=5)
    assert again["tag"] == result["tag"] and len(read_table(REQUESTS, root / "data/validated")) == len(requests)


def test_each_step_records_its_own_peak_memory(tmp_path: Path) -> None:
    """``state.json`` carries each step's own resident-memory peak (the high-water mark is restarted
    per step), so a heavy step does not hide behind, or inflate, the steps after it."""
    from genrecall.pipeline.daily.state import reset_peak_rss, run_step

    if not reset_peak_rss():
        pytest.skip("this kernel does not let a process restart its RSS high-water mark")
    ws = Workspace(tmp_path)

    def heavy(ws: Workspace, day: int, params: dict) -> dict:
        block = np.ones(40_000_000)  # 320 MB, touched
        return {"sum": float(block.sum())}

    run_step(ws, 1, "ingest", heavy, {})
    run_step(ws, 1, "validate", lambda ws, day, params: {}, {})
    steps = load_state(ws, 1)["steps"]
    assert steps["ingest"]["peak_rss_mb"] - steps["validate"]["peak_rss_mb"] > 250
