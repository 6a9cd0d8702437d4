"""Serving latency through real HTTP: p50/p95/p99 and throughput per beam size, one client and concurrent.

    python benchmarks/bench_serving.py                        # the production bundle of ./.state/bentoml
    python benchmarks/bench_serving.py --bundle genrecall-bundle:<version> --requests 200 \
        --out reports/bench_serving.json
    python benchmarks/bench_serving.py --tiny                 # self-check: builds the tests' tiny bundle first
    python benchmarks/bench_serving.py --in-process           # also time Retriever.search without HTTP
    python benchmarks/bench_serving.py --tiny --in-process --quick   # ~2 min: 30 requests a cell, beams 20 50

    python benchmarks/bench_serving.py --tiny --minilm --in-process --quick   # MiniLM in the request path

Each variant in ``--variants`` (``DECODER/RUNTIME[/WORKERS]``; default ``lean/onnx``, the serving
default, and ``transformers/torch``, the reference path: transformers' beam search and
sentence-transformers; ``lean/onnx/2`` serves with two worker processes) is measured in the same run,
one after the other: its own server (``serve.decoder``, ``serve.encoder_runtime`` and ``serve.workers``
set through ``$GENRECALL_PARAMS``, a copy of the project's params.yaml with
only those changed), then in process. The runtime matters only for a bundle whose generator reads
MiniLM vectors (``--minilm`` builds such a tiny bundle; the default tiny one uses the hash encoder).
The summary prints first-variant / last-variant ratios per cell: compare ratios, not absolute times,
across machines.

Starts one ``bentoml serve`` of bento/service.py on a free 127.0.0.1 port serving ``--bundle`` (a store
tag or a directory; default: production), warms it up, then for each beam size in ``--beams`` and each
concurrency in ``--concurrency`` sends ``--requests`` POST /search requests whose queries are item titles
from the bundle (so every request has a real answer), through one pooled keep-alive client. Latency is
client-side wall time per request; a non-200 is counted with its status and body (the first ones are
printed and kept in ``--out``). Numbers depend on the machine: say which one when you quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_cfg(variant: str) -> dict[str, Any]:
    """``serve`` settings of a variant ``DECODER[/RUNTIME[/WORKERS]]``."""
    decoder, _, rest = variant.partition("/")
    runtime, _, workers = rest.partition("/")
    return {"decoder": decoder, "encoder_runtime": runtime, "workers": int(workers or 1)}


def _params_with(variant: str) -> Path:
    """A copy of the project's params (``$GENRECALL_PARAMS`` or params.yaml) with the variant's settings."""
    import yaml

    from genrecall.config import load_params

    params = load_params(missing_ok=True)
    params["serve"] = {**(params.get("serve") or {}), **_serve_cfg(variant)}
    path = Path(tempfile.mkdtemp(prefix="bench-params-")) / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _serve(bundle: str, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen:
    from genrecall.serving.launch import serve_command

    return subprocess.Popen(
        serve_command(port, bento_dir=REPO / "bento"),
        cwd=REPO,
        # the service runs in bento/ (--working-dir): its workspace state (.state/onnx) belongs to the repo
        env={"GENRECALL_HOME": str(REPO), **env, "GENRECALL_BUNDLE": bundle},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _run(client: httpx.Client, queries: list[str], beam: int, concurrency: int, k: int) -> dict[str, Any]:
    def one(q: str) -> tuple[float, int, str]:
        t = time.perf_counter()
        try:
            r = client.post("/search", json={"query": q, "k": k, "beam_size": beam})
            status, body = r.status_code, ("" if r.status_code == 200 else r.text[:300])
        except httpx.HTTPError as e:  # a transport failure is an error too, not a crash of the benchmark
            status, body = -1, f"{type(e).__name__}: {e}"
        return (time.perf_counter() - t) * 1000, status, body

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        out = list(pool.map(one, queries))
    wall = time.perf_counter() - start
    lat = np.array([ms for ms, status, _ in out if status == 200] or [np.nan])
    failures = [
        {"status": status, "ms": round(ms, 1), "query": q, "body": body}
        for q, (ms, status, body) in zip(queries, out)
        if status != 200
    ]
    return {
        "beam": beam,
        "concurrency": concurrency,
        "requests": len(queries),
        "errors": len(failures),
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()),
        "throughput_rps": (len(queries) - len(failures)) / wall,
        "failures": failures[:20],
    }  # status + body of the first failures: 503 = backpressure (serve.max_queue)


def _in_process(
    bundle: str, titles: list[str], beams: list[int], n: int, k: int, seed: int, variant: str
) -> list[dict[str, Any]]:
    """The same searches without HTTP: ``Retriever.search`` in this process, one thread, one client."""
    import torch

    from genrecall.serving.retriever import Retriever, ServeConfig

    torch.set_num_threads(1)
    retriever = Retriever.load(bundle, ServeConfig(**_serve_cfg(variant)))
    rng = np.random.default_rng(seed)
    for q in rng.choice(titles, 20):  # warm-up
        retriever.search(str(q), k=k, beam_size=max(beams))
    rows = []
    for beam in beams:
        lat = []
        for q in rng.choice(titles, n):
            t = time.perf_counter()
            retriever.search(str(q), k=k, beam_size=beam)
            lat.append((time.perf_counter() - t) * 1000)
        rows.append(
            {
                "beam": beam,
                "variant": variant,
                "path": "in-process",
                "requests": n,
                "p50_ms": float(np.percentile(lat, 50)),
                "p95_ms": float(np.percentile(lat, 95)),
                "p99_ms": float(np.percentile(lat, 99)),
            }
        )
        print(
            f"{variant:>18}  beam {beam:>4}  in-process  p50 {rows[-1]['p50_ms']:7.1f} ms  "
            f"p95 {rows[-1]['p95_ms']:7.1f} ms  p99 {rows[-1]['p99_ms']:7.1f} ms",
            flush=True,
        )
    return rows


def _http(
    bundle: str, env: dict[str, str], titles: list[str], args: argparse.Namespace, variant: str
) -> dict[str, Any]:
    """One server with the variant's serve settings: every (beam, concurrency) cell through real HTTP."""
    rng = np.random.default_rng(0)
    port, log = _free_port(), Path(tempfile.mkdtemp(prefix="bench-serve-")) / "serve.log"
    proc = _serve(bundle, port, log, {**env, "GENRECALL_PARAMS": str(_params_with(variant))})
    url = f"http://127.0.0.1:{port}"
    try:
        import bentoml

        try:
            with bentoml.SyncHTTPClient(url, server_ready_timeout=180):
                pass
        except Exception:
            sys.exit(f"server did not start; log:\n{log.read_text()[-3000:]}")
        info = httpx.post(f"{url}/bundle").json()
        info.pop("batching", None)
        # one pooled keep-alive client, as a search front end would hold: connection set-up is not serving time
        limits = httpx.Limits(max_connections=max(args.concurrency), max_keepalive_connections=max(args.concurrency))
        with httpx.Client(base_url=url, timeout=120, limits=limits) as client:
            _run(client, [str(t) for t in rng.choice(titles, 20)], max(args.beams), 1, args.k)  # warm-up
            rows = []
            for beam in args.beams:
                for conc in args.concurrency:
                    queries = [str(t) for t in rng.choice(titles, args.requests)]
                    rows.append({"variant": variant, "path": "http", **_run(client, queries, beam, conc, args.k)})
                    r = rows[-1]
                    print(
                        f"{variant:>18}  beam {beam:>4}  conc {conc:>3}  p50 {r['p50_ms']:7.1f} ms  "
                        f"p95 {r['p95_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  {r['throughput_rps']:7.1f} req/s  "
                        f"errors {r['errors']}",
                        flush=True,
                    )
                    for f in r["failures"][:3]:
                        print(f"    {f['status']} after {f['ms']} ms: {f['body'][:200]}", flush=True)
            batching = client.post("/bundle").json().get("batching")
            print(f"server batching counters ({variant}): {batching}", flush=True)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    return {"bundle": info, "batching": batching, "rows": rows}


def _ratios(rows: list[dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    """Per cell (path, beam, concurrency): each variant's p50/p99 over the last variant's (the reference)."""
    if len(variants) < 2:
        return []
    ref = variants[-1]
    cells: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["path"], r["beam"], r.get("concurrency", 1)), {})[r["variant"]] = r
    out = []
    for (path, beam, conc), by in cells.items():
        for name in variants[:-1]:
            if name in by and ref in by:
                out.append(
                    {
                        "path": path,
                        "beam": beam,
                        "concurrency": conc,
                        "variant": name,
                        "reference": ref,
                        "p50_ratio": by[name]["p50_ms"] / by[ref]["p50_ms"],
                        "p99_ratio": by[name]["p99_ms"] / by[ref]["p99_ms"],
                    }
                )
                o = out[-1]
                print(
                    f"{path:>10}  beam {beam:>4}  conc {conc:>3}  {name}/{ref}: p50 x{o['p50_ratio']:.2f}  "
                    f"p99 x{o['p99_ratio']:.2f}"
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="", help="store tag or bundle directory (default: production)")
    ap.add_argument("--beams", type=int, nargs="+", default=[20, 50, 100])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--requests", type=int, default=100, help="requests per (beam, concurrency) cell")
    ap.add_argument("--k", type=int, default=100, help="items per response")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["lean/onnx", "transformers/torch"],
        help="DECODER/RUNTIME[/WORKERS] (serve.decoder / serve.encoder_runtime / serve.workers) to compare; "
        "the last is the reference",
    )
    ap.add_argument("--minilm", action="store_true", help="with --tiny: MiniLM feeds the generator (real encoder)")
    ap.add_argument("--tiny", action="store_true", help="build and serve the tests' tiny bundle (self-check)")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="also time Retriever.search in this process (no HTTP), after the server stopped",
    )
    ap.add_argument("--quick", action="store_true", help="30 requests a cell, beams 20 and 50, concurrency 1 and 4")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.beams, args.concurrency = 30, [20, 50], [1, 4]

    from genrecall.env import apply_defaults

    env = dict(os.environ)
    if args.tiny:  # an isolated BentoML home so the benchmark never touches the project's store
        env["BENTOML_HOME"] = os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bench-bentoml-")
    apply_defaults()
    env.setdefault("BENTOML_HOME", os.environ["BENTOML_HOME"])
    from genrecall.serving.bundle import resolve
    from genrecall.serving.gate import production_tag

    bundle = args.bundle
    if bundle and Path(bundle).is_dir():  # the server runs in bento/: a relative directory must not read as a tag
        bundle = str(Path(bundle).resolve())
    if args.tiny:
        from tests.serving_fixtures import make_bundle, shared_tiny_pipeline

        if args.minilm:
            from genrecall.sid.encoder import EncoderConfig
            from tests.serving_fixtures import build_tiny_pipeline

            tiny = build_tiny_pipeline(tempfile.mkdtemp(prefix="bench-tiny-minilm-"), encoder=EncoderConfig())
        else:
            tiny = shared_tiny_pipeline()
        bundle = str(make_bundle(tiny, Path(tempfile.mkdtemp(prefix="bench-bundle-")) / "b"))
        env.update(GENRECALL_FEAST_REPO=str(tiny.feast_repo), GENRECALL_FEAST_DATA=str(tiny.feast_data_dir))
    bundle = bundle or production_tag() or ""
    if not bundle:
        sys.exit("no bundle: pass --bundle, run `genrecall package`, or use --tiny")
    titles = pd.read_parquet(resolve(bundle)[0] / "items.parquet")["title"].tolist()

    rows: list[dict[str, Any]] = []
    served: dict[str, Any] = {}
    for variant in args.variants:
        served[variant] = _http(bundle, env, titles, args, variant)
        rows += served[variant]["rows"]
    if args.in_process:
        for variant in args.variants:
            rows += _in_process(bundle, titles, args.beams, args.requests, args.k, seed=1, variant=variant)
    ratios = _ratios(rows, args.variants)
    result = {
        "bundle": served[args.variants[0]]["bundle"],
        "batching": {d: served[d]["batching"] for d in args.variants},
        "k": args.k,
        "cpu_count": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "results": rows,
        "ratios": ratios,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
