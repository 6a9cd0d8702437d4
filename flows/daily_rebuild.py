"""The daily rebuild as a Prefect 3 flow: one task per step of ``genrecall.pipeline.daily.STEPS``.

    from flows.daily_rebuild import daily_rebuild, backfill
    daily_rebuild(workspace=".")          # the next simulated day (or resume an unfinished one)
    backfill(days=3, workspace=".")       # the next three days, one flow run each

The flow is thin on purpose: every task calls ``run_step``, which runs the step's plain function
(the same code the CLI and tests call) unless the day's state says it already finished with the
same inputs. That on-disk record, not Prefect's result cache, is what makes a rerun resume: it
survives a wiped Prefect database and notices a wiped staging dir. Retries go on the steps that
touch the outside world (source read, DVC push) and timeouts on the long ones; an injected failure
(``fail_at`` / $GENRECALL_DAILY_FAIL_AT) is never retried. Each run leaves a markdown artifact
``daily-rebuild-day-<d>`` with what changed, the metrics table and the gate decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrecall.env import apply_defaults

apply_defaults()  # telemetry off, Prefect/BentoML state in the workspace, before Prefect is imported

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from genrecall.config import load_params  # noqa: E402
from genrecall.pipeline.daily import (  # noqa: E402
    STEP_FUNCTIONS,
    STEPS,
    InjectedFailure,
    Workspace,
    load_state,
    next_day_number,
    run_step,
)

HOUR = 3600


def _retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry real errors, never a drill."""
    try:
        state.result()
    except InjectedFailure:
        return False
    except Exception:
        return True
    return True


# step -> Prefect task options: retries where a transient outside error is plausible, timeouts on long steps
OPTIONS: dict[str, dict[str, Any]] = {
    "ingest": {"retries": 2, "retry_delay_seconds": 30},  # the source (a log export) may be late or flaky
    "validate": {"timeout_seconds": HOUR},
    "embed": {"timeout_seconds": 2 * HOUR},
    "drift": {},
    "sids": {"timeout_seconds": 2 * HOUR},  # a full refit on drift days
    "features": {"retries": 1, "retry_delay_seconds": 30, "timeout_seconds": HOUR},  # SQLite/Redis locks
    "finetune": {"timeout_seconds": 6 * HOUR},  # a full retrain on drift days
    "evaluate": {"timeout_seconds": 2 * HOUR},
    "package": {"retries": 1, "retry_delay_seconds": 10},
    "commit": {},
    "publish": {"retries": 1, "retry_delay_seconds": 10},
    "version": {"retries": 2, "retry_delay_seconds": 30},  # dvc push to a remote
}


def _run(step: str, workspace: dict[str, str], day: int, params: dict[str, Any], fail_at: str | None) -> dict[str, Any]:
    ws = Workspace(**workspace)  # type: ignore[arg-type]
    return run_step(ws, day, step, STEP_FUNCTIONS[step], params, fail_at=fail_at)


TASKS = {
    step: task(
        name=f"daily-{step}",
        task_run_name=f"{step}-day{{day}}",
        cache_policy=NO_CACHE,
        retry_condition_fn=_retryable,
        **OPTIONS[step],
    )(_run)
    for step in STEPS
}


@flow(name="daily-rebuild")
def daily_rebuild(
    workspace: str = ".",
    params: dict[str, Any] | None = None,
    params_path: str | None = None,
    day: int | None = None,
    layout: dict[str, str] | None = None,
    fail_at: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) one day in ``workspace``; ``params`` (or ``params_path``, default
    ``<workspace>/params.yaml``); ``layout`` overrides ``Workspace`` paths; ``fail_at`` drills a crash."""
    logger = get_run_logger()
    root = Path(workspace).resolve()
    p = (
        params
        if params is not None
        else (load_params(params_path) if params_path else load_params(root / "params.yaml", missing_ok=True))
    )
    ws = Workspace(root, **(layout or {}))
    d = next_day_number(ws) if day is None else day
    logger.info("daily rebuild of day %d in %s", d, root)
    ws_args = {k: str(v) for k, v in ws.__dict__.items()}
    for step in STEPS:
        TASKS[step](step, ws_args, d, p, fail_at)
    state = load_state(ws, d)
    summary = ws.record(d, "reports/summary.md")
    create_markdown_artifact(
        markdown=summary.read_text(), key=f"daily-rebuild-day-{d}", description=f"genrecall daily rebuild, day {d}"
    )
    steps = {k: v["result"] for k, v in state["steps"].items()}
    return {
        "day": d,
        "mode": steps["drift"]["mode"],
        "tag": steps["package"]["tag"],
        "promoted": steps["publish"]["promoted"],
        "production": steps["publish"]["production"],
        "metrics": steps["evaluate"],
        "ingest": steps["ingest"],
        "versioned": steps["version"],
    }


def backfill(days: int, workspace: str = ".", **kwargs: Any) -> list[dict[str, Any]]:
    """Run the flow for the next ``days`` simulated days, one flow run per day, in order."""
    return [daily_rebuild(workspace=workspace, **kwargs) for _ in range(days)]


if __name__ == "__main__":
    import sys

    print(daily_rebuild(workspace=sys.argv[1] if len(sys.argv) > 1 else "."))
