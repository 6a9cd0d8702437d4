"""The genrecall HTTP service: ``POST /search`` over the production bundle, with adaptive batching,
``POST /bm25`` over the same bundle's titles, and the search page for people at ``GET /``.

One BentoML service, ``serve.workers`` worker processes (1 by default), each with its own model:

- ``search`` validates the JSON body against ``SearchBody`` (unknown fields, wrong types, empty or
  oversized queries, k and beam_size outside the configured bounds all get a 400 that names the field
  and the problem), then hands the request to a ``MicroBatcher`` and awaits its answer.
- The batcher's one thread owns the ``Retriever`` (bundle + Feast user features). Requests that arrive
  while a beam search runs are merged into the next ``search_batch`` call: concurrent requests share
  one beam search (per distinct beam size), and an idle server answers a lone request at once. More
  than ``serve.max_queue`` waiting requests get a 503 with ``Retry-After`` (backpressure).
- ``bm25`` answers from a BM25 index over the bundle's titles (``genrecall.serving.lexical``), built at
  start-up (``serve.bm25: false`` leaves it out); same query bounds as ``search``.
- ``GET /`` is the search page (``genrecall.serving.page``: static HTML/CSS/JS that calls ``/search``
  and ``/bm25``); BentoML's Swagger UI moves to ``GET /docs``.

Which bundle: ``$GENRECALL_BUNDLE`` (a store tag or a directory), else the bundle a built Bento carries
(``genrecall bento`` builds with ``--arg bundle=<tag>``; the service declares it as a BentoML model
reference, so the Bento packs it and ``bentoml serve <bento>`` resolves it from the Bento's models),
else ``serve.bundle`` in params.yaml, else the production pointer (``genrecall promote`` /
``genrecall rollback`` move it; restart to pick it up). A Feast outage or a slow lookup at request time
serves non-personalised recall and says so (``"degraded"`` in the response), never a 500
(``genrecall.serving.feature_guard``). ``GET /healthz`` and ``GET /readyz`` answer 200 only once the
bundle is loaded. Binds 127.0.0.1:3000 unless ``serve.host``/``serve.port`` (or ``bentoml serve
--host/--port``) say otherwise. The OpenAPI document (``GET /docs.json``) describes the 400 bodies as they
are (``genrecall.serving.openapi``). All logic lives in ``genrecall.serving``; this file only wires it to HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Any

from genrecall.env import apply_defaults, telemetry_off

# Served from a built Bento (bento.yaml beside src/): BentoML owns the state (BENTOML_HOME, the Bento's models)
# and the Bento's files must stay as built, so only telemetry is switched off. From the checkout (`genrecall
# serve`), tool state defaults into the workspace as everywhere else.
IN_BENTO = (Path(__file__).resolve().parent.parent / "bento.yaml").exists()
if IN_BENTO:
    telemetry_off()
else:
    apply_defaults()

import bentoml  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator  # noqa: E402

from genrecall.config import stage_config  # noqa: E402
from genrecall.serving.json_only import JsonOnly  # noqa: E402
from genrecall.serving.openapi import publish_error_schema  # noqa: E402
from genrecall.serving.page import page_app  # noqa: E402
from genrecall.serving.retriever import ServeConfig  # noqa: E402

log = logging.getLogger("genrecall.service")
CFG: ServeConfig = stage_config(ServeConfig, "serve")
# the bundle a built Bento pins (`bentoml build --arg bundle=<tag>`, genrecall.serving.bento_build); None when
# serving from the checkout (`genrecall serve`), which follows the production pointer instead
PINNED_BUNDLE: str | None = getattr(bentoml.use_arguments(), "bundle", None) or None


def _home_path(p: str) -> Path:
    """Relative paths in the config are relative to the project ($GENRECALL_HOME, else the cwd)."""
    path = Path(p)
    return path if path.is_absolute() else Path(os.environ.get("GENRECALL_HOME", ".")) / path


# a character that is not whitespace in Python's sense (str.isspace, what strip() removes), spelled out so that
# every regex engine reads the published pattern the same way (\S differs between Python and ECMA/Rust)
NOT_BLANK = "[^" + "".join(f"\\u{i:04x}" for i in range(0x10000) if chr(i).isspace()) + "]"
QUERY_SCHEMA = {"pattern": NOT_BLANK}


def _not_blank(v: str) -> str:
    if not re.search(NOT_BLANK, v):
        raise ValueError("query must contain a non-space character")
    return v


class SearchBody(BaseModel):
    """The request body of ``POST /search`` (DESIGN.md section 4)."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(
        min_length=1,
        max_length=CFG.max_query_chars,
        description="what the shopper typed",
        json_schema_extra=QUERY_SCHEMA,
    )
    user_id: StrictStr | None = Field(default=None, max_length=CFG.max_user_id_chars, description="null = anonymous")
    k: StrictInt = Field(default=CFG.default_k, ge=1, le=CFG.max_k, description="items to return")
    beam_size: StrictInt = Field(
        default=CFG.default_beam_size, ge=1, le=CFG.max_beam_size, description="SIDs to generate"
    )

    query_not_blank = field_validator("query")(_not_blank)


class BM25Body(BaseModel):
    """The request body of ``POST /bm25``: the same query bounds as ``/search``."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(
        min_length=1,
        max_length=CFG.max_query_chars,
        description="what the shopper typed",
        json_schema_extra=QUERY_SCHEMA,
    )
    k: StrictInt = Field(default=CFG.default_k, ge=1, le=CFG.max_k, description="items to return")

    query_not_blank = field_validator("query")(_not_blank)


def _feature_client() -> Any | None:
    """A Feast ``FeatureClient`` when a materialized store is configured, else None (non-personalised).

    A store that exists but cannot be opened (a broken registry, an outage at start-up) does not stop the
    server: it serves non-personalised recall and every request with a user says why (``degraded``)."""
    if os.environ.get("GENRECALL_FEATURES", "on").lower() in ("0", "off", "false", "no"):
        return None
    repo = _home_path(os.environ.get("GENRECALL_FEAST_REPO", CFG.feast_repo))
    data = _home_path(os.environ.get("GENRECALL_FEAST_DATA", CFG.feast_data_dir))
    if not (repo / "feature_store.yaml").exists() or not (data / "registry.db").exists():
        log.warning("no Feast store at %s (data %s): serving non-personalised recall", repo, data)
        return None
    from genrecall.features.store import FeatureClient
    from genrecall.serving.feature_guard import UnavailableFeatures

    try:
        return FeatureClient(repo, data)
    except Exception as e:  # the store is there but will not open: degrade, don't fail
        log.error("Feast store at %s (data %s) unavailable at start-up: %s", repo, data, e)
        return UnavailableFeatures(f"{type(e).__name__}: {e}")


def _load_retriever(pinned: Any | None = None) -> Any:
    """The retriever of the bundle to serve (module docstring); ``pinned`` is the Bento's resolved model."""
    from genrecall.serving.gate import production_tag
    from genrecall.serving.retriever import Retriever

    env = os.environ.get("GENRECALL_BUNDLE")
    source = env or (str(pinned.tag) if pinned is not None else None) or CFG.bundle or production_tag()
    if not source:
        raise RuntimeError("no bundle to serve: run `genrecall package` (or promote one), or set GENRECALL_BUNDLE")
    if Path(source).exists():
        source = str(Path(source).resolve())
    return Retriever.load(source, CFG, features=_feature_client())


@bentoml.service(
    name="genrecall", workers=CFG.workers, threads=4, http={"host": CFG.host, "port": CFG.port}, traffic={"timeout": 30}
)
@bentoml.asgi_app(page_app(), path="/")
class Search:
    """The public API; the model runs on the batcher's thread, requests wait on the event loop."""

    # a built Bento's bundle as a BentoML model reference: `bentoml build` packs the model into the Bento,
    # `bentoml serve <bento>` resolves it from the Bento's own model store (None when serving the checkout)
    bundle_model = bentoml.models.BentoModel(PINNED_BUNDLE) if PINNED_BUNDLE else None

    def __init__(self) -> None:
        from genrecall.serving.batcher import MicroBatcher
        from genrecall.serving.lexical import TitleBM25
        from genrecall.serving.page import promotion_date

        self.retriever = _load_retriever(self.bundle_model)
        self.batcher = MicroBatcher(
            self.retriever.serve_batch,  # search_batch + per-request flags (a degraded feature lookup)
            max_batch_size=CFG.max_batch_size,
            max_queue=CFG.max_queue,
            max_wait_ms=CFG.batch_wait_ms,
            validate=self.retriever.check,  # an invalid request gets its 400 alone, before it can join a batch
        )
        if (failed := self.retriever.warm_features()) is not None:  # the first Feast lookup is the slow one
            log.warning("user features: %s (requests with a user are served non-personalised meanwhile)", failed)
        self.lexical = TitleBM25.from_bundle(self.retriever.bundle) if CFG.bm25 else None
        self.promoted_at = promotion_date(self.retriever.bundle.tag)
        log.info(
            "serving bundle %s (personalised: %s, BM25 column: %s)",
            self.retriever.version,
            self.retriever.features is not None,
            self.lexical is not None,
        )

    @bentoml.api(input_spec=SearchBody)
    async def search(self, query: str, user_id: str | None, k: int, beam_size: int) -> dict[str, Any]:
        """Top-k items for a query (and user): ``{"items": [...], "sids": [...], "bundle": version}``."""
        from starlette.responses import JSONResponse

        from genrecall.serving.batcher import QueueFull
        from genrecall.serving.retriever import InvalidRequest, SearchRequest

        try:
            response = await asyncio.wrap_future(self.batcher.submit(SearchRequest(query, user_id, k, beam_size)))
        except QueueFull as e:
            return JSONResponse(
                {"error": f"server busy: {e}"},
                status_code=503,  # type: ignore[return-value]
                headers={"Retry-After": "1"},
            )
        except InvalidRequest as e:  # the bounds are checked twice; the retriever has the last word
            return JSONResponse({"error": str(e)}, status_code=400)  # type: ignore[return-value]
        return response.to_dict()

    @bentoml.api(route="/bm25", input_spec=BM25Body)
    def bm25(self, query: str, k: int) -> dict[str, Any]:
        """BM25 over the served bundle's titles: ``{"items": [{"item_id", "title", "score"}], "bundle", "ms"}``."""
        from starlette.responses import JSONResponse

        if self.lexical is None:
            return JSONResponse(
                {"error": "BM25 is off on this server (serve.bm25: false)"},  # type: ignore[return-value]
                status_code=404,
            )
        return self.lexical.search(query.strip(), k).to_dict()

    @bentoml.api(route="/bundle")
    def bundle(self) -> dict[str, Any]:
        """What is being served: bundle version, data version, promotion date, params hash, sizes, request
        bounds, example users and queries (for the search page), batching counters."""
        from genrecall.serving.page import bundle_info

        return bundle_info(
            self.retriever,
            batching=self.batcher.stats,
            lexical=self.lexical is not None,
            promoted_at=self.promoted_at,
            cfg=CFG,
        )

    def __is_ready__(self) -> bool:
        return getattr(self, "retriever", None) is not None

    def __is_alive__(self) -> bool:  # /healthz: answers 200 only once the bundle is loaded
        return self.__is_ready__()


publish_error_schema(Search)  # /docs.json documents the 400 bodies as they are: detail = pydantic's error list
Search.add_asgi_middleware(JsonOnly, paths=("/search", "/bm25", "/bundle"))  # non-JSON bodies: a 400, not a 500
