"""The one spelling of the command that serves bento/service.py from a checkout.

``genrecall serve``, the serving benchmark and the HTTP tests all start the same ``bentoml serve``;
they differ only in where the checkout is, the address and the environment they pass.
"""

from __future__ import annotations

import sys
from pathlib import Path


def serve_command(port: int, host: str = "127.0.0.1", bento_dir: str | Path = "bento") -> list[str]:
    """``python -m bentoml serve service:Search`` run in ``bento_dir`` (the checkout's bento/), bound to host:port."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "service:Search",
        "--working-dir",
        str(bento_dir),
        "--host",
        host,
        "--port",
        str(port),
    ]
