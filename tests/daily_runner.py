"""Run (or resume) one daily-rebuild day in this process: the process the kill drills SIGKILL.

Not a test module. ``python -m tests.daily_runner <workspace> <params.json> [day]`` calls ``run_day``
(the unfinished day, else the next one; or ``day``), the
same step functions and on-disk state the Prefect flow's tasks call (``flows/daily_rebuild.py`` is
a loop of ``run_step`` calls); a Prefect server per process would add ~20 s to each of the many
kills. The environment (BentoML home, ``$GENRECALL_KILL_AT``) comes from the caller.
"""

from __future__ import annotations

import json
import sys


def main(root: str, params_path: str, day: int | None = None) -> None:
    from genrecall.env import apply_defaults

    apply_defaults()
    import torch

    torch.set_num_threads(1)
    from genrecall.pipeline.daily import Workspace, run_day

    with open(params_path) as f:
        params = json.load(f)
    state = run_day(Workspace(root, cache="cache"), params, day=day)  # LAYOUT of tests/prefect_fixtures.py
    print(json.dumps({"day": state["day"], "done": state.get("done", False)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
