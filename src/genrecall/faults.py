"""Crash points: named places where a drill kills this process with SIGKILL, mid-operation.

``crashpoint("commit:after-live-moved")`` does nothing unless ``$GENRECALL_KILL_AT`` names that point;
then the process dies at once, without cleanup, ``finally`` blocks or flushed buffers, exactly as an
OOM kill or a lost machine would. Tests run the daily rebuild in a subprocess with the variable set
and check that a rerun completes the day once (tests/test_daily_kill.py, docs/RELIABILITY.md).
A point may be qualified by an occurrence: ``name#2`` kills at its second call in the process.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_ENV = "GENRECALL_KILL_AT"
_SEEN: Counter[str] = Counter()


def crashpoint(name: str) -> None:
    """SIGKILL this process here when ``$GENRECALL_KILL_AT`` is ``name`` (or ``name#n`` on the n-th call)."""
    target = os.environ.get(KILL_ENV)
    if not target or not target.startswith(name):
        return
    _SEEN[name] += 1
    point, _, nth = target.partition("#")
    if point == name and _SEEN[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
