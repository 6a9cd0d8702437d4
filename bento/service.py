"""The genrecall HTTP service: ``POST /search`` over the production bundle, with adaptive batching.

Two BentoML services, the documented pattern for batching behind a one-request-per-call API:

- ``Search`` (the entry point, the public HTTP API): validates the JSON body against ``SearchBody``
  (unknown fields, wrong types, empty or oversized queries, k and beam_size outside the configured
  bounds all get a 400 that names the field and the problem) and forwards one request to ``Recall``.
- ``Recall``: holds the ``Retriever`` (bundle + Feast user features) and exposes ``search_batch`` as a
  batchable API: BentoML's dispatcher merges concurrent requests into one call, and the retriever runs
  one beam search per distinct beam size for the whole batch.

Which bundle: ``$GENRECALL_BUNDLE`` (a store tag or a directory), else ``serve.bundle`` in params.yaml,
else the production pointer (``genrecall promote`` / ``genrecall rollback`` move it; restart to pick it
up). ``GET /healthz`` and ``GET /readyz`` answer 200 only once the bundle is loaded. Binds 127.0.0.1:3000
unless ``serve.host``/``serve.port`` (or ``bentoml serve --host/--port``) say otherwise. All logic lives in
``genrecall.serving``; this file only wires it to HTTP.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from genrecall.env import apply_defaults

apply_defaults()

import bentoml  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator  # noqa: E402

from genrecall.config import stage_config  # noqa: E402
from genrecall.serving.retriever import ServeConfig  # noqa: E402

log = logging.getLogger("genrecall.service")
CFG: ServeConfig = stage_config(ServeConfig, "serve")


def _home_path(p: str) -> Path:
    """Relative paths in the config are relative to the project ($GENRECALL_HOME, else the cwd)."""
    path = Path(p)
    return path if path.is_absolute() else Path(os.environ.get("GENRECALL_HOME", ".")) / path


class SearchBody(BaseModel):
    """The request body of ``POST /search`` (DESIGN.md section 4)."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(min_length=1, max_length=CFG.max_query_chars, description="what the shopper typed")
    user_id: StrictStr | None = Field(default=None, max_length=CFG.max_user_id_chars, description="null = anonymous")
    k: StrictInt = Field(default=CFG.default_k, ge=1, le=CFG.max_k, description="items to return")
    beam_size: StrictInt = Field(default=CFG.default_beam_size, ge=1, le=CFG.max_beam_size, description="SIDs to generate")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must contain a non-space character")
        return v


def _feature_client() -> Any | None:
    """A Feast ``FeatureClient`` when a materialized store is configured, else None (non-personalised)."""
    if os.environ.get("GENRECALL_FEATURES", "on").lower() in ("0", "off", "false", "no"):
        return None
    repo = _home_path(os.environ.get("GENRECALL_FEAST_REPO", CFG.feast_repo))
    data = _home_path(os.environ.get("GENRECALL_FEAST_DATA", CFG.feast_data_dir))
    if not (repo / "feature_store.yaml").exists() or not (data / "registry.db").exists():
        log.warning("no Feast store at %s (data %s): serving non-personalised recall", repo, data)
        return None
    from genrecall.features.store import FeatureClient

    return FeatureClient(repo, data)


@bentoml.service(name="genrecall-recall", workers=1, threads=1, traffic={"timeout": 30})
class Recall:
    """The model side: one retriever, batched calls."""

    def __init__(self) -> None:
        from genrecall.serving.gate import production_tag
        from genrecall.serving.retriever import Retriever

        source = os.environ.get("GENRECALL_BUNDLE") or CFG.bundle or production_tag()
        if not source:
            raise RuntimeError("no bundle to serve: run `genrecall package` (or promote one), or set GENRECALL_BUNDLE")
        if Path(source).exists():
            source = str(Path(source).resolve())
        self.retriever = Retriever.load(source, CFG, features=_feature_client())
        log.info("serving bundle %s (personalised: %s)", self.retriever.version, self.retriever.features is not None)

    @bentoml.api(batchable=True, max_batch_size=CFG.max_batch_size, max_latency_ms=CFG.max_latency_ms)
    def search_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from genrecall.serving.retriever import SearchRequest

        responses = self.retriever.search_batch([SearchRequest(**r) for r in requests])
        return [r.to_dict() for r in responses]

    @bentoml.api
    def bundle(self) -> dict[str, Any]:
        m = self.retriever.bundle.manifest
        return {"bundle": self.retriever.version, "created_at": m.created_at, "data_version": m.data_version,
                "params_hash": m.params_hash, "items": m.items, "sids": m.sids,
                "personalized": self.retriever.features is not None}

    def __is_ready__(self) -> bool:
        return getattr(self, "retriever", None) is not None


@bentoml.service(name="genrecall", workers=1, threads=64, http={"host": CFG.host, "port": CFG.port},
                 traffic={"timeout": 30})
class Search:
    """The public API."""

    recall = bentoml.depends(Recall)

    def __init__(self) -> None:
        self._bundle: dict[str, Any] | None = None

    @bentoml.api(input_spec=SearchBody)
    def search(self, query: str, user_id: str | None, k: int, beam_size: int) -> dict[str, Any]:
        """Top-k items for a query (and user): ``{"items": [...], "sids": [...], "bundle": version}``."""
        return self.recall.search_batch([{"query": query, "user_id": user_id, "k": k, "beam_size": beam_size}])[0]

    @bentoml.api(route="/bundle")
    def bundle(self) -> dict[str, Any]:
        """What is being served: bundle version, data version, params hash, sizes."""
        return self._info()

    def _info(self) -> dict[str, Any]:
        if self._bundle is None:
            self._bundle = self.recall.bundle()
        return self._bundle

    def __is_ready__(self) -> bool:
        try:
            return bool(self._info().get("bundle"))
        except Exception:  # Recall still loading (or failed): not ready, not an error
            return False

    def __is_alive__(self) -> bool:  # /healthz: answers 200 only once the bundle is loaded
        return self.__is_ready__()
