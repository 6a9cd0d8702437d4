"""Atomic file writes: a reader (or a process restarted after a crash) sees the old file or the new
one, never half of one. The production pointer, gate decisions, bundle manifests and the daily
rebuild's state and reports are all written this way.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, data: Any) -> None:
    """``data`` as indented, key-sorted JSON (``str`` for what JSON cannot hold) at ``path``:
    written to a temp file beside it, fsynced, then renamed over it. Parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
