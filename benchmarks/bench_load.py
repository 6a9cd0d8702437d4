"""Load: a locust ramp from 1 to 64 users, then a soak at the rate the service sustains (127.0.0.1 only).

    python benchmarks/bench_load.py --tiny --out reports/bench_load.json                 # the tests' tiny bundle
    python benchmarks/bench_load.py --tiny --soak-seconds 600                            # the full 10-minute soak
    python benchmarks/bench_load.py --bundle genrecall-bundle:<version> --step-seconds 30 # a real bundle

Starts one ``bentoml serve`` of bento/service.py on a free loopback port, then runs locust headless
(``benchmarks/locustfile.py``: POST /search, k=50, beam 20, queries = the bundle's titles):

- **ramp**: 1, 2, 4, 8, 16, 32, 64 closed-loop users (each sends its next request when the last one is
  answered), ``--step-seconds`` each and at most ``--step-requests`` requests: throughput, p50, p99,
  503s (backpressure: ``serve.max_queue``) and any other error (must be 0);
- **soak**: ``--soak-users`` users at a constant total rate of ``--soak-share`` x the best ramp
  throughput, for ``--soak-seconds``: the same figures, and the server's resident memory (all its
  processes) at the start and the end, sampled every ``--rss-every`` seconds in between.

Time and request counts are bounded everywhere. Figures depend on the machine: say which one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def server_rss_mb(pgid: int) -> float:
    """Resident memory of every process in the server's process group (bentoml's supervisor + worker)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            pid = int(status.parent.name)
            if os.getpgid(pid) != pgid:
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, ProcessLookupError):
            continue
    return round(total / 1024, 1)


def run_locust(
    host: str, users: int, seconds: int, max_requests: int, queries: Path, out: Path, rate_per_user: float = 0.0
) -> dict[str, Any]:
    """One headless locust run; its aggregated row and failures."""
    prefix = out / f"u{users}-r{rate_per_user:g}"
    env = {
        **os.environ,
        "GENRECALL_LOAD_QUERIES": str(queries),
        "GENRECALL_LOAD_RATE": str(rate_per_user),
        "GENRECALL_LOAD_MAX_REQUESTS": str(max_requests),
    }
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO / "benchmarks/locustfile.py"),
        "--headless",
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "10",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=seconds + 120)
    wall = time.perf_counter() - start
    with open(f"{prefix}_stats.csv") as fh:
        rows = list(csv.DictReader(fh))
    agg = next(r for r in rows if r["Name"] == "Aggregated")
    with open(f"{prefix}_failures.csv") as fh:
        failures = {r["Error"]: int(r["Occurrences"]) for r in csv.DictReader(fh)}
    n = int(agg["Request Count"])
    num = lambda v: float(v) if v not in ("N/A", "") else float("nan")  # noqa: E731
    shed = sum(v for k, v in failures.items() if "503" in k)
    return {
        "users": users,
        "requests": n,
        "seconds": round(wall, 1),
        "rps": round(float(agg["Requests/s"]), 1),
        "p50_ms": num(agg["50%"]),
        "p99_ms": num(agg["99%"]),
        "ok": n - sum(failures.values()),
        "shed_503": shed,
        "errors": {k: v for k, v in failures.items() if "503" not in k},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="serve the tests' tiny bundle (built first)")
    ap.add_argument("--bundle", default=None, help="a store tag or directory (default: production)")
    ap.add_argument("--users", default="1,2,4,8,16,32,64")
    ap.add_argument("--step-seconds", type=int, default=20)
    ap.add_argument("--step-requests", type=int, default=5000)
    ap.add_argument("--soak-seconds", type=int, default=600)
    ap.add_argument("--soak-users", type=int, default=16)
    ap.add_argument("--soak-share", type=float, default=0.8, help="soak rate / best ramp throughput")
    ap.add_argument("--rss-every", type=int, default=15)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from tests.serving_fixtures import free_port, start_server, stop

    tmp = Path(tempfile.mkdtemp(prefix="genrecall-load-"))
    if args.tiny:
        import tests.conftest  # noqa: F401  (test state dirs, telemetry off)
        from tests.serving_fixtures import served_tiny_env, shared_tiny_pipeline, titled_items

        tiny = shared_tiny_pipeline()
        env = served_tiny_env(tiny, tmp)
        queries = list(titled_items(tiny, n=200, seed=0)["title"])
    else:
        from genrecall.env import apply_defaults
        from genrecall.serving.bundle import Bundle
        from genrecall.serving.gate import production_tag

        apply_defaults()
        source = args.bundle or production_tag()
        env = {**os.environ, "GENRECALL_BUNDLE": str(source), "OMP_NUM_THREADS": "1"}
        queries = list(Bundle.load(source).items["title"].sample(200, random_state=0))
    qfile = tmp / "queries.json"
    qfile.write_text(json.dumps(queries))
    port = free_port()
    proc = start_server(port, env, tmp / "serve.log")
    host = f"http://127.0.0.1:{port}"
    try:
        import bentoml

        with bentoml.SyncHTTPClient(host, server_ready_timeout=120):
            pass
        warm = run_locust(host, 2, 20, 100, qfile, tmp)  # warm-up: the first searches pay one-off costs
        print("warm-up:", json.dumps(warm), flush=True)
        ramp = []
        for users in [int(u) for u in args.users.split(",")]:
            ramp.append(run_locust(host, users, args.step_seconds, args.step_requests, qfile, tmp))
            print(json.dumps(ramp[-1]), flush=True)
        best = max(r["rps"] for r in ramp)
        rate = args.soak_share * best
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            t0 = time.perf_counter()
            while not done.is_set():
                samples.append((round(time.perf_counter() - t0, 1), server_rss_mb(proc.pid)))
                done.wait(args.rss_every)

        rss_start = server_rss_mb(proc.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        soak = run_locust(
            host,
            args.soak_users,
            args.soak_seconds,
            int(rate * args.soak_seconds * 1.5) + 100,
            qfile,
            tmp,
            rate_per_user=rate / args.soak_users,
        )
        done.set()
        sampler.join()
        soak.update(
            target_rps=round(rate, 1), rss_start_mb=rss_start, rss_end_mb=server_rss_mb(proc.pid), rss_samples=samples
        )
        print(json.dumps({k: v for k, v in soak.items() if k != "rss_samples"}), flush=True)
    finally:
        stop(proc)
    result = {
        "machine": f"{os.cpu_count()} CPUs, shared",
        "bundle": "tiny (tests)" if args.tiny else str(args.bundle),
        "ramp": ramp,
        "soak": soak,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print("| users | requests | req/s | p50 ms | p99 ms | 503 | other errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in [*ramp, soak]:
        print(
            f"| {r['users']} | {r['requests']} | {r['rps']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['shed_503']} "
            f"| {sum(r['errors'].values())} |"
        )
    print(f"soak: {soak['target_rps']} req/s target, RSS {soak['rss_start_mb']} MB -> {soak['rss_end_mb']} MB")


if __name__ == "__main__":
    main()
