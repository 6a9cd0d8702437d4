"""Daily rebuild benchmark: one incremental day (1-3% churn) vs the same day as a full rebuild.

    python benchmarks/bench_daily.py compare --preset small --out reports/bench_daily.json
    python benchmarks/bench_daily.py compare --preset medium --day0 DIR  # ~100k items: day 0 ~23 min, days ~22 min

Builds day 0 once (the real stage functions, hash encoder, a small generator), copies it twice, and
runs the next simulated day in each copy through ``genrecall.pipeline.daily.run_day`` (no Prefect:
this measures the work, not the orchestration): once incremental (frozen tokenizer, Feast push,
warm-start fine-tune with replay), once with ``daily.force_full`` (tokenizer refit + code alignment,
Feast full build, progressive SFT from scratch). Each day runs in its own subprocess so peak RSS is
that day's alone. Target (DESIGN.md): incremental <= 15% of the full rebuild's wall time.
Full SFT runs ``--sft-epochs`` epochs per stage; the fine-tune ``--ft-steps`` steps (same batch).
``--day0 DIR`` keeps the day-0 workspace in DIR (reused when DIR already holds one: day 0 of
``small`` costs ~15 min); ``--sides incremental`` re-measures one side only. Peak memory is the
day's own high-water mark (``VmHWM``: a fork/exec child's ``ru_maxrss`` inherits the parent's peak),
the largest of its steps' (``state.json`` records each step's, ``step_peak_rss_mb`` here).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_params(preset: str, *, sft_epochs: int, ft_steps: int, threads: int) -> dict:
    from tests.pipeline_fixtures import TINY_PARAMS

    p = copy.deepcopy(TINY_PARAMS)
    p["generate"]["preset"] = preset
    p["sid"] = {"epochs": 5, "hidden_dims": [128], "latent_dim": 16, "kmeans_iters": 10, "batch_size": 128}
    model = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 128}
    stage = {"epochs": sft_epochs, "batch_size": 64, "warmup_steps": 10, "num_threads": threads}
    p["train"] = {
        "test_days": 2,
        "tokenizer": {"vocab_size": 2000},
        "model": model,
        "i2sid": stage,
        "q2sid": stage,
        "uq2sid": stage,
    }
    p["evaluate"] = {**p["evaluate"], "max_requests": 200, "num_threads": threads}
    p["daily"] = {
        "bundle_name": f"bench-daily-{preset}",
        "finetune": {"max_steps": ft_steps, "batch_size": 64, "num_threads": threads},
    }
    p["gate"] = {"abs_tolerance": 1.0}
    p["package"] = {"name": f"bench-daily-{preset}"}
    return p


def build_day0(root: Path, params: dict) -> float:
    from genrecall.pipeline.package import PackageConfig, package
    from tests.pipeline_fixtures import run_tiny_pipeline

    start = time.perf_counter()
    run_tiny_pipeline(root, params)
    package(
        PackageConfig(name=params["package"]["name"]),
        generator_dir=root / "models/generator/cq_sid/uq2sid/final",
        sid_model_dir=root / "models/sid/cq_sid",
        index_dir=root / "data/sid/cq_sid",
        data_dir=root / "data/validated",
        metrics_path=root / "reports/metrics.json",
        params=params,
        dvc_lock=root / "no-dvc.lock",
    )
    return time.perf_counter() - start


def run_one_day(workspace: Path, params: dict) -> dict:
    """One day in this process; wall time, peak RSS, per-step seconds."""
    from genrecall.pipeline.daily import Workspace, run_day
    from genrecall.pipeline.daily.state import peak_rss_mb

    start = time.perf_counter()
    state = run_day(Workspace(workspace, cache="cache"), params)
    steps = {k: v["seconds"] for k, v in state["steps"].items()}
    step_rss = {k: v.get("peak_rss_mb") for k, v in state["steps"].items()}
    # run_step restarts the high-water mark per step (clear_refs): the day's peak is the largest step's
    peak = (
        max([m for m in step_rss.values() if m is not None], default=None)
        or peak_rss_mb()
        or round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    )
    return {
        "day": state["day"],
        "mode": state["steps"]["drift"]["result"]["mode"],
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": peak,
        "steps": steps,
        "step_peak_rss_mb": step_rss,
        "churn": state["steps"]["ingest"]["result"],
    }


def compare(
    preset: str,
    *,
    sft_epochs: int,
    ft_steps: int,
    threads: int,
    out: Path | None,
    day0_dir: Path | None = None,
    sides: tuple[str, ...] = ("incremental", "full"),
) -> dict:
    params = bench_params(preset, sft_epochs=sft_epochs, ft_steps=ft_steps, threads=threads)
    tmp = Path(tempfile.mkdtemp(prefix="genrecall-bench-daily-"))
    day0_dir = day0_dir or tmp / "day0"
    marker = day0_dir / "bench_day0.json"
    os.environ["BENTOML_HOME"] = str(day0_dir / ".state" / "bentoml")  # the store travels with each copy
    if marker.exists():
        day0 = json.loads(marker.read_text())["seconds"]
    else:
        shutil.rmtree(day0_dir, ignore_errors=True)
        day0 = build_day0(day0_dir, params)
        marker.write_text(json.dumps({"seconds": round(day0, 1), "preset": preset}))
    results = {"preset": preset, "day0_pipeline_s": round(day0, 1), "threads": threads}
    for mode in sides:
        ws = tmp / mode
        shutil.copytree(day0_dir, ws, symlinks=True)
        p = copy.deepcopy(params)
        p["daily"]["force_full"] = mode == "full"
        (tmp / f"{mode}.json").write_text(json.dumps(p))
        cmd = [sys.executable, __file__, "day", "--workspace", str(ws), "--params", str(tmp / f"{mode}.json")]
        env = {**os.environ, "BENTOML_HOME": str(ws / ".state" / "bentoml")}  # each side its own store + pointer
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    if "incremental" in results and "full" in results:
        inc, full = results["incremental"], results["full"]
        results["incremental_share_of_full"] = round(inc["seconds"] / full["seconds"], 3)
        results["incremental_share_of_full_memory"] = round(inc["peak_rss_mb"] / full["peak_rss_mb"], 3)
    if sides:
        results["churn"] = results[sides[0]]["churn"]
    print(json.dumps(results, indent=2))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return results


if __name__ == "__main__":
    from genrecall.env import apply_defaults

    ap = argparse.ArgumentParser(description="incremental day vs full rebuild")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--preset", default="small")
    c.add_argument("--sft-epochs", type=int, default=1)
    c.add_argument("--ft-steps", type=int, default=100)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--out", type=Path, default=None)
    c.add_argument("--day0", type=Path, default=None, help="keep (or reuse) the day-0 workspace here")
    c.add_argument(
        "--sides",
        nargs="*",
        choices=("incremental", "full"),
        default=["incremental", "full"],
        help="which days to run; none (just --sides) only builds --day0",
    )
    d = sub.add_parser("day")
    d.add_argument("--workspace", type=Path, required=True)
    d.add_argument("--params", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "compare":
        apply_defaults(tempfile.mkdtemp(prefix="genrecall-bench-state-"))
        compare(
            args.preset,
            sft_epochs=args.sft_epochs,
            ft_steps=args.ft_steps,
            threads=args.threads,
            out=args.out,
            day0_dir=args.day0,
            sides=tuple(args.sides),
        )
    else:
        import logging

        logging.disable(logging.WARNING)
        print(json.dumps(run_one_day(args.workspace, json.loads(args.params.read_text()))))
