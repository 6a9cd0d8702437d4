"""Adaptive micro-batching: concurrent requests share one call of a batch function (one beam search).

    batcher = MicroBatcher(retriever.search_batch, max_batch_size=32, max_queue=256)
    response = batcher.submit(SearchRequest("red kettle")).result()          # from a thread
    response = await asyncio.wrap_future(batcher.submit(request))            # from an event loop
    batcher.close()

One worker thread owns the model. When it is idle, a request runs at once, alone (no timer: a single
client pays no batching delay). While a batch runs, new requests queue; when it ends, everything queued
(up to ``max_batch_size``) becomes the next batch. So the batch size follows the load by itself: one at
low traffic, large under bursts, and the beam search's cost per request falls as the batch grows.
``max_wait_ms`` > 0 additionally holds a batch open that long for company (throughput over latency).

Backpressure: at most ``max_queue`` requests wait; past that ``submit`` raises ``QueueFull`` at once
(the HTTP service answers 503 with Retry-After) instead of letting every queued request time out.

Failures stay with the requests that cause them, at a bounded cost:

- ``validate`` (optional) checks each request in ``submit``, on the caller's side: an invalid request
  raises there (the service answers 400) and never enters, let alone poisons, a batch.
- A batch that still raises is bisected: each half is run again, and a half that raises is halved
  again, down to single requests. The good requests get their answers, the bad one its exception,
  and one bad request among n costs at most 2·ceil(log2 n) extra calls (not n, as retrying every
  request alone did; on a 32-request batch of beam searches that is 10 calls instead of 32).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

Req = TypeVar("Req")
Resp = TypeVar("Resp")
_STOP = object()


class QueueFull(RuntimeError):
    """More than ``max_queue`` requests are waiting: shed this one (HTTP 503 + Retry-After)."""


@dataclass(frozen=True)
class BatchStats:
    """Counters since start: how much sharing the batcher achieved."""

    batches: int  # calls of the batch function
    requests: int  # requests answered (including failures)
    largest: int  # the biggest batch so far
    shed: int  # requests refused with QueueFull
    retries: int = 0  # extra calls made to bisect failing batches (a failure-free server stays at 0)

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class MicroBatcher(Generic[Req, Resp]):
    """Runs ``fn(list_of_requests) -> list_of_responses`` on one worker thread, merging concurrent requests."""

    def __init__(
        self,
        fn: Callable[[Sequence[Req]], Sequence[Resp]],
        *,
        max_batch_size: int = 32,
        max_queue: int = 256,
        max_wait_ms: float = 0.0,
        validate: Callable[[Req], object] | None = None,
        name: str = "genrecall-batcher",
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1 and max_wait_ms >= 0")
        self.fn = fn
        self.validate = validate  # raises for a request that must not run; called in submit()
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._batches = self._requests = self._largest = self._shed = self._retries = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- callers ---------------------------------------------------------------------------------------
    def submit(self, request: Req) -> Future:
        """Queue one request; its Future resolves to the response (or raises what the batch function raised).

        Raises at once what ``validate`` raises for an invalid request, and ``QueueFull`` under overload.
        """
        if self._closed:
            raise RuntimeError("the batcher is closed")
        if self.validate is not None:
            self.validate(request)
        fut: Future = Future()
        try:
            self._queue.put_nowait((request, fut))
        except queue.Full:
            with self._lock:
                self._shed += 1
            raise QueueFull(f"{self._queue.maxsize} requests already waiting; retry shortly") from None
        return fut

    def map(self, requests: Sequence[Req]) -> list[Resp]:
        """Submit several requests and wait for all (they may share batches with other callers)."""
        return [f.result() for f in [self.submit(r) for r in requests]]

    @property
    def stats(self) -> BatchStats:
        with self._lock:
            return BatchStats(self._batches, self._requests, self._largest, self._shed, self._retries)

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # -- the worker ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = [first], False
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                try:
                    wait = deadline - time.monotonic()
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[Req, Future]]) -> None:
        live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]  # the caller may have gone
        if not live:
            return
        with self._lock:
            self._batches += 1
            self._requests += len(live)
            self._largest = max(self._largest, len(live))
        self._call(live)

    def _call(self, live: list[tuple[Req, Future]]) -> None:
        """Run ``live`` as one call; if it raises, bisect: each half runs (and, failing, splits) on its own."""
        try:
            out = list(self.fn([r for r, _ in live]))
            if len(out) != len(live):
                raise RuntimeError(f"batch function returned {len(out)} responses for {len(live)} requests")
        except BaseException as exc:
            if len(live) == 1:
                live[0][1].set_exception(exc)
                return
            mid = len(live) // 2
            with self._lock:
                self._retries += 2
            self._call(live[:mid])
            self._call(live[mid:])
            return
        for (_, f), resp in zip(live, out):
            f.set_result(resp)
