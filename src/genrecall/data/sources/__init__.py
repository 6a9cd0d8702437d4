"""Data sources: the simulator, a landing directory of daily exports, or a SQL catalog plus log files.

``source_config(params)`` reads params.yaml ``source``; ``bootstrap`` is the first stage's first run on
a files/sql source, ``ingest_day`` the daily ``ingest`` step's; ``export`` writes the simulator's days
in those layouts (``genrecall export``). See ``base.py`` for the settings and docs/CONTRACTS.md for the
table contracts a shop's exports must follow.
"""

from genrecall.data.sources.base import (
    STATE_FILE,
    BootstrapResult,
    BoundaryError,
    FilesConfig,
    IngestResult,
    SourceConfig,
    SourceState,
    SqlConfig,
    days_ingested,
    source_config,
)
from genrecall.data.sources.ingest import bootstrap, ingest_day

__all__ = [
    "STATE_FILE",
    "BootstrapResult",
    "BoundaryError",
    "FilesConfig",
    "IngestResult",
    "SourceConfig",
    "SourceState",
    "SqlConfig",
    "bootstrap",
    "days_ingested",
    "ingest_day",
    "source_config",
]
