"""Serve the daily rebuild on a cron schedule with ``flow.serve`` (no work pool or worker needed).

    python -m flows.serve_schedule --workspace . --cron "0 3 * * *"     # what `make schedule` runs

The process registers a deployment ``daily-rebuild/daily`` with the Prefect server (the local one
by default, state under ``.state/prefect``) and runs each scheduled flow run itself; stop it with
Ctrl-C / SIGTERM (before stopping the server). ``prefect deploy`` with ``prefect.yaml`` is the
alternative for a work pool.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.daily_rebuild import daily_rebuild

DEFAULT_CRON = "0 3 * * *"  # 03:00 every day: after the day's logs close, before morning traffic


def serve(workspace: str = ".", *, cron: str = DEFAULT_CRON, name: str = "daily", timezone: str = "UTC") -> None:
    """Block, running ``daily_rebuild(workspace)`` on ``cron``."""
    from prefect.schedules import Cron

    daily_rebuild.serve(name=name, schedule=Cron(cron, timezone=timezone),
                        parameters={"workspace": str(Path(workspace).resolve())},
                        description="genrecall daily rebuild (docs/DAILY.md)")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default=".")
    ap.add_argument("--cron", default=DEFAULT_CRON)
    ap.add_argument("--name", default="daily")
    args = ap.parse_args()
    serve(args.workspace, cron=args.cron, name=args.name)
