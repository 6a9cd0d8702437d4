"""The daily rebuild's logic: one simulated (or real) day of catalog and log changes, applied to a
pipeline workspace without ever touching what serves until the day is complete.

A *workspace* is the directory the DVC pipeline ran in (``data/``, ``models/``, ``reports/``,
``feature_repo/``). Day ``d`` runs these steps (``STEPS``), each a plain function of
``(workspace, day, params)`` that the Prefect flow (``flows/daily_rebuild.py``) wraps in a task:

    ingest   the source's next day -> ``daily/day-d/delta`` (new/changed items, new users, the log)
    validate delta vs yesterday's validated tables (GX; quarantine; fails above threshold), merged
    embed    the merged tables; the cache encodes only new/changed texts
    drift    share of items new since the last full fit, quantization error of today's new items
    sids     frozen tokenizer: new items join clusters, delisted leave (or, on drift, a full refit
             whose level codes are aligned to the old ones by Hungarian matching on item overlap)
    features Feast: append the day's rows, push them to the online store (full build on drift)
    finetune warm start + replay of the served generator (``pipeline/finetune.py``), or full SFT on drift
    evaluate candidate and production bundle on the same sample of today's requests (``gate.py``);
             on drift also the pipeline's full evaluate
    package  the bundle, saved to the BentoML store (not promoted yet)
    commit   swap every staged output into the live workspace (journaled: a rerun rolls forward)
    publish  the gate: the bundle becomes production only if no worse than production
    version  ``dvc add`` the day's record, git commit, ``dvc push`` (skipped with a warning without DVC)

The package: ``state`` (workspace, config, per-day state), ``steps`` (ingest ... evaluate, package),
``drift``, ``gate`` (the evaluate step's paired sample), ``commit`` (commit, publish, version, the day's
report), ``lineage`` (where the served generator's fine-tune starts) and ``run`` (``STEP_FUNCTIONS``,
``run_day``); the names below are the rebuild's API. Cost follows the delta: an
incremental day updates only the served method's index and generator (``daily.methods``) and gates
on a capped sample (``daily.gate_eval``); the baseline method is refreshed by full rebuilds.

Everything before ``commit`` writes only under ``data/daily/day-d/stage`` and ``daily/day-d``, so
a crash leaves production serving and the live data as it was. Each finished step is recorded in
``data/daily/day-d/state.json`` with a hash of its inputs; a rerun skips finished steps and redoes
an interrupted one from scratch, so the day completes exactly once.
"""

from genrecall.pipeline.daily.run import STEP_FUNCTIONS, run_day
from genrecall.pipeline.daily.state import (
    FAIL_ENV,
    STEPS,
    DailyConfig,
    InjectedFailure,
    Workspace,
    load_state,
    next_day_number,
    run_step,
)

__all__ = [
    "FAIL_ENV",
    "STEPS",
    "STEP_FUNCTIONS",
    "DailyConfig",
    "InjectedFailure",
    "Workspace",
    "load_state",
    "next_day_number",
    "run_day",
    "run_step",
]
