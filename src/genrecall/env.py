"""Process environment defaults: telemetry off and tool state inside the workspace.

Every tool in the stack phones home or writes under ``$HOME`` by default (STACK.md gotchas 4-5).
``apply_defaults()`` runs before any of them is imported (CLI start-up, tests, flows, service), and
only *sets defaults*: a user who exports a value keeps it.
"""

from __future__ import annotations

import os
from pathlib import Path

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "True",
    "DVC_NO_ANALYTICS": "1",
    "FEAST_USAGE": "False",
    "GX_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",  # offline by design: models come from installed packages only
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def telemetry_off() -> None:
    """Set the telemetry-off defaults only (a built Bento: its state lives where BentoML puts it)."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def apply_defaults(workspace: str | Path | None = None) -> Path:
    """Set telemetry-off and state-location defaults; returns the state directory used."""
    telemetry_off()
    root = Path(workspace or os.environ.get("GENRECALL_HOME", ".")).resolve()
    state = root / ".state"
    os.environ.setdefault("PREFECT_HOME", str(state / "prefect"))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect warns when it is missing
    os.environ.setdefault("BENTOML_HOME", str(state / "bentoml"))
    os.environ.setdefault("DVC_SITE_CACHE_DIR", str(state / "dvc-site"))
    # Prefect's first flow run starts a temporary server; on a fresh database it needs ~20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    return state
