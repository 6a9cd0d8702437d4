"""The search page for people: static HTML, CSS and JS served by the same BentoML service at ``GET /``.

No build step: ``static/index.html``, ``static/search.css`` and ``static/search.js`` ship as package
data and are served as they are. The page calls the service's own API with relative URLs, so it
works wherever the service binds (127.0.0.1:3000 by default) and behind a path prefix:

- ``POST /bundle`` once: what is served (tag, data version, promotion date) for the footer, the
  request bounds for the beam-size control, and the bundle's example users and queries;
- ``POST /search`` and ``POST /bm25`` per query, side by side: generative recall grouped by SID
  cluster, and BM25 over the same bundle's titles.

A 4xx from the API is shown as the API worded it (the page does no validation of its own, so the
message is the contract's). ``page_app()`` is a Starlette app the service mounts at ``/``: BentoML's
own routes (``/search``, ``/healthz``, ...) are matched first, and BentoML's Swagger UI, which this
page replaces at ``/``, moves to ``/docs``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATIC = Path(__file__).with_name("static")
PAGE_FILES = ("index.html", "search.css", "search.js")


@dataclass(frozen=True)
class Limits:
    """The request bounds the page's controls follow (``ServeConfig``)."""

    default_k: int
    max_k: int
    default_beam_size: int
    max_beam_size: int
    max_query_chars: int


def limits_of(cfg: Any) -> Limits:
    return Limits(cfg.default_k, cfg.max_k, cfg.default_beam_size, cfg.max_beam_size, cfg.max_query_chars)


def promotion_date(tag: str | None) -> str | None:
    """When the served bundle became production, or None (a directory, or a bundle never promoted)."""
    if not tag or ":" not in tag:
        return None
    from genrecall.serving.gate import ProductionPointer

    return ProductionPointer(tag.split(":", 1)[0]).promoted_at(tag)


def bundle_info(retriever: Any, *, batching: Any, lexical: bool, promoted_at: str | None, cfg: Any) -> dict[str, Any]:
    """The body of ``POST /bundle``: what is served, the batching counters, and what the page needs."""
    m = retriever.bundle.manifest
    return {
        "bundle": retriever.version,
        "created_at": m.created_at,
        "data_version": m.data_version,
        "params_hash": m.params_hash,
        "items": m.items,
        "sids": m.sids,
        "personalized": retriever.features is not None and getattr(retriever.features, "available", True),
        "promoted_at": promoted_at,
        "bm25": lexical,
        "examples": {
            "users": list(retriever.bundle.examples.get("users", [])),
            "queries": list(retriever.bundle.examples.get("queries", [])),
        },
        "limits": asdict(limits_of(cfg)),
        "batching": {
            "batches": batching.batches,
            "requests": batching.requests,
            "largest": batching.largest,
            "shed": batching.shed,
        },
    }


def _swagger_page() -> Path | None:
    """BentoML's OpenAPI page (it loads ``./docs.json`` and ``./static_content/``), when this BentoML has it."""
    try:
        import _bentoml_impl.server as server
    except ImportError:  # pragma: no cover - another BentoML layout
        return None
    page = Path(server.__file__).with_name("main-openapi.html")
    return page if page.exists() else None


def page_app() -> Any:
    """The Starlette app mounted at ``/``: the page, its assets, and BentoML's Swagger UI at ``/docs``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    missing = [f for f in PAGE_FILES if not (STATIC / f).is_file()]
    if missing:
        raise FileNotFoundError(f"search page assets missing from {STATIC}: {missing}")

    async def index(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    routes: list[Any] = [
        Route("/", index, methods=["GET", "HEAD"], name="search-page"),
        Mount("/static", StaticFiles(directory=STATIC), name="search-page-static"),
    ]
    swagger = _swagger_page()
    if swagger is not None:

        async def docs(_: Request) -> Response:
            return FileResponse(swagger, media_type="text/html; charset=utf-8")

        routes.append(Route("/docs", docs, methods=["GET", "HEAD"], name="swagger-ui"))
    return Starlette(routes=routes)
