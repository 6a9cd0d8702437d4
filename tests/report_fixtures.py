"""Report inputs in the pipeline's own file formats, small and complete, for the report's tests.

Not a test module. ``write_report_inputs(root)`` lays out what ``dvc repro`` and three daily runs
leave behind (``reports/``, ``data/sid/<method>/sid_assignments.parquet``, ``daily/day-<d>/reports/``)
with made-up numbers, every section's input present: RL variants, fusion, a rejected day. The real
pipeline's outputs are covered in test_pipeline_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from genrecall.data.schema import SID_ASSIGNMENTS, write_table
from genrecall.eval.report import build_metrics

BEAMS = (1, 2, 5, 10, 20, 50)


def _gen(h1: float, h10: float, h100: float) -> dict:
    return {
        "hitrate@1": h1,
        "hitrate@10": h10,
        "hitrate@100": h100,
        "items@100": h10,
        "items@1000": h100 * 0.9,
        "beams_to_target": 20,
    }


def _per(clk: float) -> dict:
    return {
        **_gen(0.1, 0.4, 0.7),
        "clk@1": clk,
        "clk@10": clk * 3,
        "exp@1": clk / 2,
        "exp@10": clk * 1.5,
        "pvr@10": 0.3,
    }


METRICS = build_metrics(
    semantic={
        "cq_sid": _gen(0.08, 0.35, 0.62),
        "rq_vae": _gen(0.06, 0.30, 0.52),
        "bm25": {"items@100": 0.30, "items@1000": 0.55},
        "dense": {"items@100": 0.28, "items@1000": 0.50},
        "fusion": {"union_bm25@1000": 0.66, "union_dense@1000": 0.64, "rrf@1000": 0.61, "generator_only@1000": 0.12},
    },
    personalized={
        "cq_sid": _per(0.15),
        "cq_sid_q2sid": _gen(0.07, 0.3, 0.6),
        "grpo": _per(0.13),
        "eg_grpo_k2": _per(0.17),
        "bm25": {"items@100": 0.3, "items@1000": 0.5},
        "dense": {"items@100": 0.2, "items@1000": 0.4},
    },
    sid_health={
        m: {
            "items": 600,
            "sids": s,
            "clusters": s - 10,
            "codebook_sizes": [24, 8, 8],
            "utilisation": [1.0, u, u],
            "entropy": [0.9, u - 0.1, u - 0.2],
            "dead_codes": [0, 1, 2],
            "collision_rate": 0.6,
            "items_per_sid": {"mean": 600 / s, "p50": 1.0, "p99": 9.0, "max": 14.0},
            "category_match": 1.0,
        }
        for m, s, u in (("cq_sid", 450, 0.9), ("rq_vae", 600, 0.7))
    },
    data={"preset": "tiny", "items": 600, "requests": 5000, "test_pairs": 120},
)


def _curves() -> pd.DataFrame:
    rows = []
    for test_set, methods in (("semantic", ("cq_sid", "rq_vae")), ("personalized", ("cq_sid", "grpo", "eg_grpo_k2"))):
        for j, method in enumerate(methods):
            for b in BEAMS:
                h = min(1.0, 0.1 * np.log2(2 * b) - 0.02 * j)
                rows.append(
                    {
                        "test_set": test_set,
                        "method": method,
                        "beams": b,
                        "hitrate": h,
                        "truncated_hitrate": h * 0.9,
                        "mean_items": 2.0 * b,
                    }
                )
    return pd.DataFrame(rows)


def _day(root: Path, day: int, mode: str, promoted: bool, h10: float) -> None:
    rec = root / f"daily/day-{day:04d}/reports"
    rec.mkdir(parents=True)
    block = {
        "semantic": {"cq_sid": {"hitrate@10": h10}, "served": {"hitrate@10": h10}},
        "personalized": {
            "cq_sid": {"hitrate@10": h10 + 0.05, "items@1000": 0.6},
            "served": {"hitrate@10": h10 + 0.05, "items@1000": 0.6},
        },
    }
    prod = json.loads(json.dumps(block).replace(str(h10), str(round(h10 - 0.01, 4))))
    (rec / "daily_metrics.json").write_text(
        json.dumps(
            {
                **block,
                "data": {"day": day, "mode": mode, "new_items": 10 + day, "delisted": day - 3, "generator": "served"},
            }
        )
    )
    (rec / "daily_gate.json").write_text(json.dumps({"candidate": block, "production": prod}))
    (rec / "publish.json").write_text(
        json.dumps(
            {
                "tag": f"b:day{day}",
                "promoted": promoted,
                "basis": "same sample",
                "reasons": [] if promoted else ["semantic/cq_sid/hitrate@10: worse"],
            }
        )
    )


def write_report_inputs(root: Path) -> Path:
    """Write a complete set of report inputs under ``root`` (a workspace); returns ``root``."""
    reports = root / "reports"
    reports.mkdir(parents=True)
    (reports / "metrics.json").write_text(json.dumps(METRICS))
    (reports / "sid_health.json").write_text(json.dumps(METRICS["sid_health"]))
    _curves().to_csv(reports / "curves.csv", index=False)
    (reports / "validation.json").write_text(
        json.dumps(
            {
                "passed": True,
                "tables": {
                    name: {
                        "table": name,
                        "rows_in": n,
                        "good": n - q,
                        "quarantined": q,
                        "bad_share": q / n,
                        "max_bad_share": 0.05,
                        "passed": True,
                        "reasons": {"title_not_null": q} if q else {},
                        "skipped": [],
                    }
                    for name, n, q in (("items", 620, 11), ("users", 200, 0), ("requests", 5000, 80))
                },
            }
        )
    )
    (reports / "train_rl.json").write_text(
        json.dumps(
            {
                "requests": 300,
                "variants": {
                    v: {
                        "summary": {
                            "steps": 40,
                            "reward_mean": r,
                            "zero_variance_share": z,
                            "unique_sids": 6.5,
                            "seconds": 30.0,
                        }
                    }
                    for v, r, z in (("grpo", 0.2, 0.6), ("eg_grpo_k2", 0.5, 0.0))
                },
            }
        )
    )
    (reports / "package.json").write_text(
        json.dumps(
            {
                "tag": "genrecall-bundle:v1",
                "promoted": True,
                "served": "eg_grpo_k2",
                "production": "genrecall-bundle:v1",
                "items": 600,
                "sids": 450,
                "reasons": ["first bundle: promoted without comparison"],
            }
        )
    )
    rng = np.random.default_rng(0)
    for method, n_sids in (("cq_sid", 450), ("rq_vae", 600)):
        sid = rng.integers(0, n_sids, size=600) if method == "cq_sid" else np.arange(600)
        write_table(
            pd.DataFrame(
                {
                    "item_id": np.arange(600, dtype=np.int64),
                    "sid": [f"{s}-0" for s in sid],
                    "codes": [[int(s), 0] for s in sid],
                }
            ),
            SID_ASSIGNMENTS,
            root / "data/sid" / method,
        )
    for day, mode, promoted, h10 in (
        (5, "incremental", True, 0.30),
        (6, "incremental", False, 0.25),
        (7, "full", True, 0.33),
    ):
        _day(root, day, mode, promoted, h10)
    return root
