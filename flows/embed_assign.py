"""Embedding + frozen-tokenizer SID assignment mapped over catalog shards, as a Prefect 3 flow.

    from flows.embed_assign import run
    run("data/validated", "models/sid/cq_sid", "data/embed_assign")            # runner from params.yaml `scale`
    run(..., scale={"runner": "dask", "dask_cluster": {"n_workers": 4}})        # a Dask LocalCluster
    run(..., scale={"runner": "dask", "dask_address": "tcp://scheduler:8786"})  # an existing Dask cluster

One ``embed`` task and one ``assign`` task per shard (``genrecall.pipeline.shards``); an assign task
starts as soon as its shard's vectors exist. The merge is in shard order, so the SIDs are the same on
every runner and worker count. Flow parameters are paths (small, recorded by the Prefect API); the
arrays move between tasks through the runner, never through the API. Ray works the same way with
``prefect-ray``'s ``RayTaskRunner`` (docs/SCALING.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from genrecall.env import apply_defaults

apply_defaults()  # telemetry off, Prefect state in the workspace, before Prefect is imported

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from genrecall.config import from_dict, load_params  # noqa: E402
from genrecall.pipeline.shards import (  # noqa: E402
    ScaleConfig,
    ShardedResult,
    assign_shard,
    embed_shard,
    load_catalog,
    make_task_runner,
    merge,
    save_result,
    shard_bounds,
)

embed_task = task(embed_shard, name="embed-shard", cache_policy=NO_CACHE, retries=1)  # a lost worker is retried
assign_task = task(assign_shard, name="assign-shard", cache_policy=NO_CACHE, retries=1)


@flow(name="embed-assign", validate_parameters=False)
def embed_assign(
    data_dir: str,
    tokenizer_dir: str,
    out_dir: str | None = None,
    *,
    encoder: dict[str, Any] | None = None,
    cache_dir: str | None = None,
    shards: int = 8,
    torch_threads: int = 1,
    limit: int | None = None,
) -> ShardedResult:
    """Embed the listed items of ``data_dir`` and assign them SIDs with ``tokenizer_dir``, shard by shard."""
    start = time.perf_counter()
    cat = load_catalog(data_dir, limit=limit)
    bounds = shard_bounds(len(cat.item_ids), shards)
    vec = [embed_task.submit(cat.texts[b], encoder or {}, cache_dir, torch_threads=torch_threads) for b in bounds]
    codes = [
        assign_task.submit(v, cat.categories[b], tokenizer_dir, torch_threads=torch_threads)
        for v, b in zip(vec, bounds)
    ]
    result = ShardedResult(
        cat.item_ids,
        merge([f.result() for f in vec]),
        merge([f.result() for f in codes]),
        shards=len(bounds),
        runner="",
        seconds=time.perf_counter() - start,
    )
    if out_dir is not None:
        save_result(result, out_dir)
    return result


def run(
    data_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    scale: dict[str, Any] | None = None,
    encoder: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
    params_path: str | Path | None = None,
) -> ShardedResult:
    """Run the flow on the task runner that ``scale`` (default: params.yaml ``scale``) names.
    ``encoder`` defaults to params.yaml ``embed`` (the encoder the catalog was embedded with)."""
    params = load_params(params_path)
    cfg = from_dict(ScaleConfig, params.get("scale") if scale is None else scale)
    enc = params.get("embed") or {} if encoder is None else encoder
    flow_fn = embed_assign.with_options(task_runner=make_task_runner(cfg))
    result = flow_fn(
        str(data_dir),
        str(tokenizer_dir),
        None,
        encoder=enc,
        cache_dir=str(cache_dir) if cache_dir else None,
        shards=cfg.shards,
        torch_threads=cfg.torch_threads,
        limit=limit,
    )
    result.runner = cfg.runner
    if out_dir is not None:
        save_result(result, out_dir, extra={"scale": cfg.__dict__})
    return result


@flow(name="embed-assign-job")
def embed_assign_job(
    data_dir: str, tokenizer_dir: str, out_dir: str, params_path: str = "params.yaml", cache_dir: str | None = None
) -> dict[str, Any]:
    """Deployment entry point (deploy/prefect/prefect.yaml): ``run`` on the runner params.yaml names,
    writing ``out_dir``; returns a small summary (arrays stay out of the Prefect API)."""
    res = run(data_dir, tokenizer_dir, out_dir, cache_dir=cache_dir, params_path=params_path)
    return {"items": len(res.item_ids), "shards": res.shards, "runner": res.runner, "seconds": res.seconds}
