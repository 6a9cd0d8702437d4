"""Locust users for benchmarks/bench_load.py: POST /search with real titles, 127.0.0.1 only.

Set by the driver through the environment: ``GENRECALL_LOAD_QUERIES`` (a JSON file of queries),
``GENRECALL_LOAD_RATE`` (requests/s per user for the soak's constant throughput; 0 = as fast as
answers come back), ``GENRECALL_LOAD_MAX_REQUESTS`` (send no more than this many; the run then idles to its end, so
locust still writes its statistics). A 503 is backpressure
(``serve.max_queue``), reported as its own failure name so the driver can tell it from real errors.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import HttpUser, constant, constant_throughput, events, task

QUERIES = json.loads(Path(os.environ["GENRECALL_LOAD_QUERIES"]).read_text())
RATE = float(os.environ.get("GENRECALL_LOAD_RATE", "0"))
MAX_REQUESTS = int(os.environ.get("GENRECALL_LOAD_MAX_REQUESTS", "0"))
_state: dict = {"n": 0, "runner": None}


@events.init.add_listener
def _keep_runner(environment, **kw):  # type: ignore[no-untyped-def]
    _state["runner"] = environment.runner
    assert environment.host and environment.host.startswith("http://127.0.0.1"), "loopback only"


@events.request.add_listener
def _count(**kw):  # type: ignore[no-untyped-def]
    _state["n"] += 1


class Shopper(HttpUser):
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)

    @task
    def search(self) -> None:
        if MAX_REQUESTS and _state["n"] >= MAX_REQUESTS:  # request budget spent: idle until the run time ends
            self.wait_time = constant(1)
            return
        body = {"query": random.choice(QUERIES), "k": 50, "beam_size": 20}
        with self.client.post("/search", json=body, catch_response=True, name="/search") as r:
            if r.status_code == 200:
                r.success()
            elif r.status_code == 503:
                r.failure("503 backpressure")
            else:
                r.failure(f"{r.status_code} {r.text[:120]}")
