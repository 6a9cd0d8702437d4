"""Categories the SID tokenizer never saw: counted every day; past daily.max_unseen_category_share they
trigger the full rebuild, below it the day's report lists them (they were silently mapped to the
nearest level-1 code, i.e. into another category's clusters)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from genrecall.pipeline.daily.commit import summary_markdown
from genrecall.pipeline.daily.drift import drift_reasons, unseen_categories
from genrecall.pipeline.daily.state import DailyConfig

TOK = SimpleNamespace(cfg=SimpleNamespace(forcing=True), category_ids=np.array([3, 5, 8]))


def test_unseen_categories_are_counted_per_category() -> None:
    cats = np.array([3, 5, np.nan, 9, 9, 12, 8, 9], dtype=np.float64)  # NaN = unknown: not "unseen"
    assert unseen_categories(TOK, cats) == {9: 3, 12: 1}
    assert unseen_categories(TOK, np.array([3.0, 5.0])) == {}
    baseline = SimpleNamespace(cfg=SimpleNamespace(forcing=False), category_ids=np.empty(0, np.int64))
    assert unseen_categories(baseline, cats) == {}, "no category forcing (RQ-VAE): nothing is mis-forced"


def test_past_the_threshold_they_trigger_the_full_rebuild() -> None:
    cfg = DailyConfig(max_unseen_category_share=0.01)
    quiet = {"share": 0.0, "ratio": 1.0, "n_err": 0}
    assert drift_reasons(cfg, **quiet, unseen_share=0.005, unseen={9: 5}) == []
    reasons = drift_reasons(cfg, **quiet, unseen_share=0.02, unseen={9: 15, 12: 5})
    assert len(reasons) == 1 and "never saw" in reasons[0] and "2 categories" in reasons[0]


def test_below_it_the_days_report_lists_them() -> None:
    state = {
        "day": 4,
        "steps": {
            "drift": {
                "result": {
                    "mode": "incremental",
                    "reasons": [],
                    "new_share": 0.01,
                    "qerr_ratio": 1.0,
                    "unseen_categories": {"9": 4, "12": 1},
                    "unseen_category_share": 0.005,
                }
            }
        },
    }
    md = summary_markdown(state, {"tag": "b:1", "promoted": True, "production": "b:1", "reasons": []})
    assert "categories the tokenizer never saw**: 9 (4 items), 12 (1 items)" in md
    quiet = {**state, "steps": {"drift": {"result": {"mode": "incremental", "unseen_categories": {}}}}}
    assert "never saw" not in summary_markdown(
        quiet, {"tag": "b:1", "promoted": True, "production": "b:1", "reasons": []}
    )
