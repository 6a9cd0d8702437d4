"""The micro-batcher: concurrent requests share one call, order and errors stay per request, overload is shed."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from genrecall.serving.batcher import MicroBatcher, QueueFull


class Gate:
    """A batch function that records its batches and blocks until released (so tests control timing)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, xs: Sequence[int]) -> list[int]:
        self.batches.append(list(xs))
        self.started.set()
        assert self.release.wait(10), "test never released the batch"
        if any(x < 0 for x in xs):
            raise ValueError(f"negative request in {list(xs)}")
        return [x * 10 for x in xs]


def test_requests_arriving_during_a_batch_share_the_next_call() -> None:
    fn = Gate()
    b = MicroBatcher(fn, max_batch_size=8)
    first = b.submit(1)
    assert fn.started.wait(10)  # the idle batcher ran the lone request at once, without waiting for company
    rest = [b.submit(x) for x in range(2, 7)]
    fn.release.set()
    assert first.result(10) == 10 and [f.result(10) for f in rest] == [20, 30, 40, 50, 60]  # order kept
    assert fn.batches == [[1], [2, 3, 4, 5, 6]]
    s = b.stats
    assert (s.batches, s.requests, s.largest, s.shed) == (2, 6, 5, 0) and s.mean_batch == 3.0
    b.close()


def test_batches_are_capped_at_max_batch_size() -> None:
    fn = Gate()
    b = MicroBatcher(fn, max_batch_size=2)
    futures = [b.submit(0)]
    assert fn.started.wait(10)
    futures += [b.submit(x) for x in range(1, 6)]
    fn.release.set()
    assert [f.result(10) for f in futures] == [0, 10, 20, 30, 40, 50]
    assert fn.batches == [[0], [1, 2], [3, 4], [5]]
    b.close()


def test_a_full_queue_sheds_at_once_and_recovers() -> None:
    fn = Gate()
    b = MicroBatcher(fn, max_batch_size=4, max_queue=2)
    running = b.submit(1)
    assert fn.started.wait(10)
    waiting = [b.submit(2), b.submit(3)]
    with pytest.raises(QueueFull, match="2 requests already waiting"):
        b.submit(4)
    assert b.stats.shed == 1
    fn.release.set()
    assert running.result(10) == 10 and [f.result(10) for f in waiting] == [20, 30]
    assert b.submit(5).result(10) == 50  # room again once the queue drained
    b.close()


def test_a_failing_request_fails_alone() -> None:
    fn = Gate()
    b = MicroBatcher(fn, max_batch_size=8)
    head = b.submit(0)
    assert fn.started.wait(10)
    good, bad, good2 = b.submit(7), b.submit(-1), b.submit(8)
    fn.release.set()
    assert head.result(10) == 0 and good.result(10) == 70 and good2.result(10) == 80
    with pytest.raises(ValueError, match="negative"):
        bad.result(10)
    assert b.submit(3).result(10) == 30  # the worker survived
    b.close()


def test_map_close_and_bad_settings() -> None:
    b = MicroBatcher(lambda xs: [x + 1 for x in xs])
    assert b.map([1, 2, 3]) == [2, 3, 4]
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(1)
    b2 = MicroBatcher(lambda xs: [])  # a batch function that drops answers is an error, not a hang
    with pytest.raises(RuntimeError, match="0 responses for 1 requests"):
        b2.submit(5).result(10)
    b2.close()
    with pytest.raises(ValueError):
        MicroBatcher(lambda xs: xs, max_batch_size=0)


class Counting:
    """A batch function that fails any call holding a negative request and counts its calls; a call of
    request 0 alone blocks until ``release`` is set (so a test can queue a whole batch behind it)."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, xs: Sequence[int]) -> list[int]:
        self.calls.append(list(xs))
        if list(xs) == [0]:
            self.started.set()
            assert self.release.wait(10), "test never released the batch"
        if any(x < 0 for x in xs):
            raise ValueError(f"negative request in {list(xs)}")
        return [x * 10 for x in xs]


def _one_batch(b: MicroBatcher, fn: Counting, requests: list[int]) -> list:
    """Queue ``requests`` behind a running call, so they form the next batch together; their futures."""
    first = b.submit(0)
    assert fn.started.wait(10)
    futures = [b.submit(x) for x in requests]
    fn.release.set()
    assert first.result(10) == 0
    return futures


@pytest.mark.parametrize("n, bad_at", [(16, 0), (16, 11), (32, 31), (32, 7), (5, 2)])
def test_one_bad_request_costs_log_n_extra_calls_not_n(n: int, bad_at: int) -> None:
    fn = Counting()
    b = MicroBatcher(fn, max_batch_size=n)
    requests = [i + 1 for i in range(n)]
    requests[bad_at] = -1
    futures = _one_batch(b, fn, requests)
    for x, f in zip(requests, futures):
        if x < 0:
            with pytest.raises(ValueError, match="negative"):
                f.result(10)
        else:
            assert f.result(10) == x * 10
    batch_calls = [c for c in fn.calls if c != [0]]
    depth = (n - 1).bit_length()  # ceil(log2 n)
    assert len(batch_calls) <= 1 + 2 * depth, batch_calls  # the failed batch, then two halves per level
    assert n < 16 or len(batch_calls) <= n // 2 + 1, batch_calls  # retrying one by one cost n + 1 calls
    assert [-1] in batch_calls  # the bad request ran alone in the end: its own exception, nobody else's
    assert b.stats.retries == len(batch_calls) - 1
    b.close()


def test_two_bad_requests_both_fail_alone_and_the_rest_answer() -> None:
    fn = Counting()
    b = MicroBatcher(fn, max_batch_size=32)
    requests = [i + 1 for i in range(32)]
    requests[3] = requests[20] = -1
    futures = _one_batch(b, fn, requests)
    outcomes = [f.exception(10) for f in futures]
    assert [i for i, e in enumerate(outcomes) if e is not None] == [3, 20]
    assert [f.result(10) for i, f in enumerate(futures) if i not in (3, 20)] == [
        x * 10 for i, x in enumerate(requests) if i not in (3, 20)
    ]
    assert len([c for c in fn.calls if c != [0]]) <= 1 + 2 * 2 * 5


def test_validate_refuses_a_bad_request_at_submit_and_it_never_joins_a_batch() -> None:
    fn = Counting()

    def validate(x: int) -> None:
        if x < 0:
            raise ValueError(f"{x} is negative")

    b = MicroBatcher(fn, max_batch_size=8, validate=validate)
    with pytest.raises(ValueError, match="-3 is negative"):
        b.submit(-3)
    assert b.map([1, 2]) == [10, 20]
    assert all(x >= 0 for c in fn.calls for x in c) and b.stats.retries == 0
    b.close()
