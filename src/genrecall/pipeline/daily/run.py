"""One day of the daily rebuild without Prefect: ``STEP_FUNCTIONS`` maps each name in ``STEPS`` to its
function, ``run_day`` runs (or resumes) them in order. The Prefect flow (``flows/daily_rebuild.py``)
wraps the same functions in tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genrecall.pipeline.daily.commit import commit, publish, version
from genrecall.pipeline.daily.drift import drift
from genrecall.pipeline.daily.state import STEPS, Workspace, load_state, next_day_number, run_step
from genrecall.pipeline.daily.steps import (
    embed_day,
    evaluate_day,
    features_day,
    ingest,
    package_day,
    sids_day,
    validate_day,
)


def finetune(ws: Workspace, day: int, params: dict[str, Any]) -> dict[str, Any]:
    """Warm start + replay of the served generator, or the full progressive SFT on a rebuild day
    (``pipeline/finetune.py``). Imported when the step runs: ``finetune`` imports this package's
    ``state`` and ``lineage`` (and torch), so importing it here would be a cycle."""
    from genrecall.pipeline.finetune import finetune_day

    return finetune_day(ws, day, params)


STEP_FUNCTIONS: dict[str, Callable[[Workspace, int, dict[str, Any]], dict[str, Any]]] = {
    "ingest": ingest,
    "validate": validate_day,
    "embed": embed_day,
    "drift": drift,
    "sids": sids_day,
    "features": features_day,
    "finetune": finetune,
    "evaluate": evaluate_day,
    "package": package_day,
    "commit": commit,
    "publish": publish,
    "version": version,
}


def run_day(
    ws: Workspace,
    params: dict[str, Any],
    *,
    day: int | None = None,
    fail_at: str | None = None,
    steps: dict[str, Callable[..., dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one day without Prefect: every step in order; returns the day's state."""
    day = next_day_number(ws) if day is None else day
    for name in STEPS:
        run_step(ws, day, name, (steps or STEP_FUNCTIONS)[name], params, fail_at=fail_at)
    return load_state(ws, day)
