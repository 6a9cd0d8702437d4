"""The daily rebuild's bookkeeping: the workspace layout, the config, and each day's state (which
steps are done, for which inputs, with what result). The steps themselves are in ``steps.py``,
``drift.py`` and ``commit.py``; all of them build on this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genrecall.atomic import write_json_atomic
from genrecall.config import from_dict
from genrecall.faults import crashpoint

STEPS: tuple[str, ...] = (
    "ingest",
    "validate",
    "embed",
    "drift",
    "sids",
    "features",
    "finetune",
    "evaluate",
    "package",
    "commit",
    "publish",
    "version",
)
FAIL_ENV = "GENRECALL_DAILY_FAIL_AT"  # fault injection for tests and drills: a step name


@dataclass(frozen=True)
class DailyConfig:
    """The daily rebuild (params.yaml ``daily``)."""

    max_new_share: float = 0.20  # items new since the last full fit / items at that fit; above -> full rebuild
    max_qerr_ratio: float = 1.5  # today's new items' mean quantization error / the fit's; above -> full rebuild
    min_new_items: int = 20  # fewer new items than this: the error ratio is noise, not drift
    # listed items whose category the tokenizer never saw (CQ-SID forces level 1 to the category: these fall
    # back to the nearest level-1 code, i.e. into another category's clusters) / listed items; above -> full
    # rebuild (the refit gives each new category its own code); below, the day's report lists them
    max_unseen_category_share: float = 0.01
    force_full: bool = False  # rebuild the tokenizer and retrain every day (a reference for benchmarks)
    bundle_name: str = "genrecall-bundle"  # BentoML model name (must match package.name and gate.name)
    dvc: bool = True  # version each day's record with DVC when the workspace is a DVC + git repo
    dvc_push: bool = True  # push it to the default DVC remote (when one is configured)
    keep_stages: int = 2  # staging dirs of finished days kept for inspection; older ones are deleted
    finetune: dict[str, Any] = field(default_factory=dict)  # FinetuneConfig (pipeline/finetune.py)
    methods: tuple[str, ...] = ()  # SID methods kept current on incremental days; () = the served one only
    #                                (the RQ-VAE baseline is a research comparison: refreshed by full rebuilds)
    gate_eval: dict[str, Any] = field(default_factory=dict)  # DailyGateConfig (daily/gate.py)


@dataclass(frozen=True)
class Workspace:
    """Where the pipeline's outputs live, relative to ``root`` (the dvc.yaml layout by default)."""

    root: Path
    raw: str = "data/raw"
    validated: str = "data/validated"
    embeddings: str = "data/embeddings"
    sid: str = "data/sid"
    feast: str = "data/feast"
    models_sid: str = "models/sid"
    generator: str = "models/generator"
    reports: str = "reports"
    repo: str = "feature_repo"
    cache: str = ".state/embed-cache"  # the embedding cache (content-addressed, append-only: shared)
    scratch: str = "data/daily"  # per-day state + staging (git-ignored, like data/)
    records: str = "daily"  # per-day records that DVC versions (daily/day-0014.dvc in git)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def path(self, name: str) -> Path:
        return Path(self.root) / getattr(self, name)

    def day_dir(self, day: int) -> Path:
        return self.path("scratch") / f"day-{day:04d}"

    def stage(self, day: int, name: str = "") -> Path:
        """Staging copy of output ``name`` for ``day`` (same relative name as the live one)."""
        return self.day_dir(day) / "stage" / name

    def record(self, day: int, name: str = "") -> Path:
        return self.path("records") / f"day-{day:04d}" / name


class InjectedFailure(RuntimeError):
    """Raised on purpose at a step (``fail_at`` / $GENRECALL_DAILY_FAIL_AT) to drill crash recovery."""


# -- day state: which steps are done, with what result ---------------------------------------------
def load_state(ws: Workspace, day: int) -> dict[str, Any]:
    path = ws.day_dir(day) / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"day": day, "steps": {}}


def inputs_hash(params: dict[str, Any], day: int) -> str:
    blob = json.dumps({"params": params, "day": day}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def reset_peak_rss() -> bool:
    """Restart this process's resident-memory high-water mark (Linux ``clear_refs``), so that the next
    ``peak_rss_mb`` is one step's own peak; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """This process's resident-memory high-water mark (``VmHWM``), MB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_step(
    ws: Workspace,
    day: int,
    name: str,
    fn: Callable[..., dict[str, Any]],
    params: dict[str, Any],
    *,
    fail_at: str | None = None,
) -> dict[str, Any]:
    """Run step ``name`` unless recorded as done for the same inputs; record its result."""
    state = load_state(ws, day)
    key = inputs_hash(params, day)
    done = state["steps"].get(name)
    if done is not None and done["inputs"] == key:
        return done["result"]
    if name in {fail_at, os.environ.get(FAIL_ENV)}:
        raise InjectedFailure(f"injected failure at step {name!r} of day {day}")
    start, tracked = time.perf_counter(), reset_peak_rss()
    result = fn(ws, day, params)
    crashpoint(f"{name}:done-unrecorded")  # drill: the step's work is done, its record is not written
    state = load_state(ws, day)  # re-read: the step may not keep the dict
    state["steps"][name] = {
        "inputs": key,
        "result": result,
        "seconds": round(time.perf_counter() - start, 2),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if tracked:
        state["steps"][name]["peak_rss_mb"] = peak_rss_mb()
    state["done"] = all(s in state["steps"] for s in STEPS)
    write_json_atomic(ws.day_dir(day) / "state.json", state)  # a reader sees the old state or the new one
    return result


def next_day_number(ws: Workspace) -> int:
    """The unfinished day if there is one (resume it), else the day after the live data."""
    from genrecall.data.sources import days_ingested

    for d in sorted(ws.path("scratch").glob("day-*")):
        state = load_state(ws, int(d.name.split("-")[1]))
        if state["steps"] and not state.get("done"):
            return int(state["day"])
    return days_ingested(ws.path("raw"))  # the simulator's days, or a files/sql source's


def fresh(path: Path, copy_from: Path | None = None) -> Path:
    """An empty ``path`` (or a copy of ``copy_from``): a redone step never sees a half-written try."""
    shutil.rmtree(path, ignore_errors=True)
    if copy_from is not None:
        shutil.copytree(copy_from, path)
    else:
        path.mkdir(parents=True)
    return path


def config_of(cls: type, params: dict[str, Any], name: str) -> Any:
    return from_dict(cls, params.get(name))


def as_result(obj: Any) -> dict[str, Any]:
    """A step's result as plain JSON data (a dataclass instance becomes its dict)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str))


def main_method(params: dict[str, Any]) -> str:
    from genrecall.pipeline.sid import SidConfig

    methods = config_of(SidConfig, params, "sid").methods
    return "cq_sid" if "cq_sid" in methods else methods[0]


def daily_methods(params: dict[str, Any]) -> tuple[str, ...]:
    """The SID methods an incremental day updates (``daily.methods``; default the served one)."""
    return config_of(DailyConfig, params, "daily").methods or (main_method(params),)


def day_mode(ws: Workspace, day: int) -> str:
    return load_state(ws, day)["steps"]["drift"]["result"]["mode"]
