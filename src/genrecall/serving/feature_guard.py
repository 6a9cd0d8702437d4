"""User-feature lookups that degrade instead of failing: bounded in time, never raising.

    guard = GuardedFeatures(FeatureClient("feature_repo", "data/feast"), timeout_ms=250)
    contexts, degraded = guard.user_contexts(["u000042", None])
    # contexts: one UserFeatures per id, or None when the store failed; degraded: None, or
    # "features unavailable: <reason>" (the HTTP response carries it, with "personalized": false)

Personalisation is an improvement on top of recall, not a precondition for it: when the online store
is down (a missing or locked SQLite file, a Redis outage, a broken registry) a search must still
answer from the query alone and say that it did. So every lookup

- runs on the guard's own thread and is awaited at most ``timeout_ms`` (0 = no bound, run inline);
  a lookup that overruns is left to finish in the background and the request goes on without it;
- never starts while the previous one is still running: a stalled store then costs each request
  nothing (it is reported at once) instead of piling threads and connections up behind the stall;
- turns any exception into the ``degraded`` reason, truncated to ``MAX_REASON`` characters.

The first lookup of a fresh Feast client opens the online store and reads the registry (~0.4 s on
SQLite, over the per-request bound), so ``warm_up`` runs one lookup of an unknown id first, under a
generous bound of its own; the retriever calls it when it first wraps a source.

``UnavailableFeatures`` stands in for a store that could not even be opened at start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

PREFIX = "features unavailable: "
WARM_UP_ID = "__genrecall-warm-up__"  # an id no store holds: the warm-up lookup returns the defaults
MAX_REASON = 300  # characters of an exception's text kept in a response (Feast errors can run to pages)


class UserFeatureSource(Protocol):
    """What a lookup needs (``genrecall.features.store.FeatureClient``)."""

    def user_contexts(self, user_ids: Sequence[str | None]) -> list[Any]: ...


class FeaturesUnavailable(RuntimeError):
    """The feature store cannot answer."""


class UnavailableFeatures:
    """A feature source that always fails with the reason it was given (a store that did not open)."""

    available = False  # POST /bundle reports the server as not personalising

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def user_contexts(self, user_ids: Sequence[str | None]) -> list[Any]:
        raise FeaturesUnavailable(self.reason)


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, FeaturesUnavailable) else str(exc)
    return PREFIX + (text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "...")


class GuardedFeatures:
    """Wraps a feature source: ``user_contexts`` returns ``(contexts or None, degraded reason or None)``."""

    def __init__(self, source: UserFeatureSource, timeout_ms: float = 250.0) -> None:
        if timeout_ms < 0:
            raise ValueError("timeout_ms must be >= 0 (0 = no bound)")
        self.source = source
        self.timeout_s = timeout_ms / 1000.0
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: Future | None = None
        self._lock = threading.Lock()

    def warm_up(self, timeout_s: float = 30.0) -> str | None:
        """One lookup of an unknown id, awaited up to ``timeout_s``; the failure reason, or None when it worked."""
        return self._lookup([WARM_UP_ID], timeout_s)[1]

    def user_contexts(self, user_ids: Sequence[str | None]) -> tuple[list[Any] | None, str | None]:
        """The source's contexts for ``user_ids``, or ``(None, "features unavailable: <reason>")``."""
        return self._lookup(list(user_ids), self.timeout_s)

    def _lookup(self, ids: list[str | None], timeout_s: float) -> tuple[list[Any] | None, str | None]:
        if not timeout_s:
            try:
                return self.source.user_contexts(ids), None
            except Exception as e:
                return None, _reason(e)
        with self._lock:
            if self._inflight is not None and not self._inflight.done():
                return None, PREFIX + "the previous lookup has not returned yet (the store is stalled)"
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="genrecall-features")
            self._inflight = fut = self._pool.submit(self.source.user_contexts, ids)
        try:
            return fut.result(timeout=timeout_s), None
        except FutureTimeout:
            return None, PREFIX + f"lookup timed out after {timeout_s * 1000:.0f} ms"
        except Exception as e:
            return None, _reason(e)
