"""An ASGI middleware that refuses request bodies the API cannot read, before BentoML parses them.

Every API of the service takes a JSON body. BentoML picks a parser by ``Content-Type``; a
``multipart/form-data`` header without a boundary (or another type it cannot read) made it raise
inside the endpoint: a 500 for what is the client's mistake. ``JsonOnly`` answers such requests
with a 400 that says what is wrong, in the documented error shape (``{"error", "detail"}``). A
missing ``Content-Type`` is let through (BentoML reads the body as JSON); so is any path outside
``paths`` (the search page, static files, health and metrics).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class JsonOnly:
    """Refuse non-JSON POST bodies on ``paths`` with a 400 (see the module docstring)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], paths: Iterable[str] = ()) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" and scope.get("path") in self.paths:
            headers = dict(scope.get("headers") or [])
            ctype = headers.get(b"content-type", b"").decode("latin-1").strip()
            media = ctype.split(";", 1)[0].strip().lower()
            if ctype and media != "application/json" and not media.endswith("+json"):
                body = json.dumps(
                    {
                        "error": f"unsupported Content-Type {ctype!r}: send the body as application/json",
                        "detail": "Content-Type must be application/json",
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
