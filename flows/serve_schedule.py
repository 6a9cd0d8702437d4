"""Serve the daily rebuild on a schedule with ``flow.serve`` (no work pool or worker needed).

    python -m flows.serve_schedule --workspace . --cron "0 3 * * *"     # what `make schedule` runs
    python -m flows.serve_schedule --workspace . --every 86400          # daily, first run in 15 s

Schedules need a real Prefect server (the ephemeral one has no scheduler). Unless ``PREFECT_API_URL``
names one, this starts ``prefect server start`` on 127.0.0.1:``--port`` with its database under
``$PREFECT_HOME`` (``.state/prefect``); the UI is at http://127.0.0.1:<port>. It then registers the
deployment ``daily-rebuild/daily`` and runs each scheduled flow run itself, one at a time. Ctrl-C or
SIGTERM stops the runner first (it pauses the schedule), then the server it started.
``prefect deploy`` with ``prefect.yaml`` is the alternative for a work pool.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from genrecall.prefect_server import ServerConfig, prefect_api, ui_url

DEFAULT_CRON = "0 3 * * *"  # 03:00 every day: after the day's logs close, before morning traffic
FIRST_RUN_S = 15  # --every: the first run this long after the deployment is registered


def _schedule(cron: str, every: float | None, tz: str) -> Any:
    from prefect.schedules import Cron, Interval

    if every is None:
        return Cron(cron, timezone=tz)
    first = datetime.now(UTC) + timedelta(seconds=FIRST_RUN_S)
    return Interval(timedelta(seconds=every), anchor_date=first, timezone="UTC")


def serve(
    workspace: str = ".",
    *,
    cron: str = DEFAULT_CRON,
    every: float | None = None,
    name: str = "daily",
    tz: str = "UTC",
    port: int = ServerConfig.port,
) -> None:
    """Block, running ``daily_rebuild(workspace)`` on ``cron`` (or every ``every`` seconds)."""
    # SIGTERM before the runner takes over (it installs its own) still stops the server on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with prefect_api(ServerConfig(port=port)) as api:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.daily_rebuild import daily_rebuild

        print(f"Prefect API {api}; UI {ui_url(api)} (Deployments > daily-rebuild/daily > Runs)", flush=True)
        with temporary_settings(updates={PREFECT_API_URL: api}):
            daily_rebuild.serve(
                name=name,
                schedule=_schedule(cron, every, tz),
                limit=1,  # one day at a time
                parameters={"workspace": str(Path(workspace).resolve())},
                description="genrecall daily rebuild (docs/DAILY.md)",
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default=".")
    ap.add_argument("--cron", default=DEFAULT_CRON)
    ap.add_argument(
        "--every", type=float, default=None, help=f"seconds between runs, first in {FIRST_RUN_S} s (instead of --cron)"
    )
    ap.add_argument("--name", default="daily")
    ap.add_argument("--port", type=int, default=ServerConfig.port, help="port of the server started here")
    args = ap.parse_args()
    serve(args.workspace, cron=args.cron, every=args.every, name=args.name, port=args.port)
