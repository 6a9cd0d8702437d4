"""Scale-out benchmark: sharded embedding + frozen-tokenizer SID assignment on 1 vs N Dask workers,
and SFT throughput per process (for the capacity model in docs/SCALING.md).

    python benchmarks/bench_scale.py assign --workers 1 2 --minilm-items 10000 --out /tmp/bench_scale.json
    python benchmarks/bench_scale.py sft --steps 30 --out /tmp/bench_sft.json

``assign`` builds the ``large`` preset's catalog only (1M items; no traffic is simulated), fits a
CQ-SID tokenizer on a 50k-item sample of hash-encoder embeddings, then runs ``flows/embed_assign.py``
on a Dask LocalCluster of 1, 2, ... single-threaded worker processes: the full 1M items with the hash
encoder, and the first ``--minilm-items`` items with MiniLM (embedding 1M items with MiniLM at
~150 items/s on 2 cores would take ~2 hours here). No embedding cache, so every text is encoded.
Each run checks that the SIDs equal the 1-worker run's. ``sft`` times ``train_sft`` of the default
generator (params.yaml ``train.model``) on synthetic Q2SID-shaped examples, one process, 1 thread.
Times are wall-clock on a shared machine: noisy. No timed assertions live in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # flows/ lives at the project root
os.environ.setdefault("GENRECALL_HOME", tempfile.mkdtemp(prefix="genrecall-bench-scale-"))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def build_catalog(root: Path, preset: str) -> tuple[Path, float]:
    """The preset's day-0 tables (catalog, users, categories) under ``root/data``; seconds taken."""
    from genrecall.data.marketplace import MarketplaceConfig, init_marketplace

    start = time.perf_counter()
    init_marketplace(MarketplaceConfig(preset=preset)).save(root / "data")
    return root / "data", time.perf_counter() - start


def fit_tokenizer(data: Path, out: Path, encoder: dict, sample: int, seed: int = 0) -> dict:
    """A CQ-SID tokenizer fit on ``sample`` random items' embeddings (frozen afterwards), and the
    one-core in-process time to embed + assign 5k items with it."""
    from genrecall.pipeline.shards import embed_shard, load_catalog
    from genrecall.sid.tokenizer import SidTokenizer, SidTokenizerConfig

    cat = load_catalog(data)
    rows = np.sort(np.random.default_rng(seed).permutation(len(cat.item_ids))[:sample])
    start = time.perf_counter()
    x = embed_shard([cat.texts[i] for i in rows], encoder)
    tok = SidTokenizer(SidTokenizerConfig(epochs=3, seed=seed))
    tok.fit(x, cat.categories[rows])
    tok.save(out)
    t0 = time.perf_counter()
    x5 = embed_shard(cat.texts[:5000], encoder)
    t1 = time.perf_counter()
    tok.assign(x5, cat.categories[:5000])
    t2 = time.perf_counter()
    return {
        "items": len(cat.item_ids),
        "fit_sample": len(rows),
        "fit_seconds": round(t0 - start, 1),
        "codebook_sizes": list(tok.codebook_sizes),
        "embed_5k_one_core_s": round(t1 - t0, 2),
        "assign_5k_one_core_s": round(t2 - t1, 3),
    }


def run_sharded(
    data: Path, tok: Path, encoder: dict, workers: int, shards: int, limit: int | None
) -> tuple[dict, np.ndarray]:
    from flows.embed_assign import run

    scale = {
        "runner": "dask",
        "shards": shards,
        "dask_cluster": {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None},
    }
    start = time.perf_counter()
    res = run(data, tok, encoder=encoder, scale=scale, limit=limit)
    wall = time.perf_counter() - start
    n = len(res.item_ids)
    return {
        "workers": workers,
        "shards": res.shards,
        "items": n,
        "flow_s": round(res.seconds, 1),
        "wall_s": round(wall, 1),
        "items_per_s": round(n / res.seconds, 1),
    }, res.codes


def bench_assign(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="genrecall-bench-scale-"))
    data, gen_s = build_catalog(root, args.preset)
    out: dict = {"preset": args.preset, "catalog_seconds": round(gen_s, 1)}
    runs = (
        ("hash", {"encoder": "hash", "hash_dim": 64}, args.hash_items, args.fit_sample),
        ("minilm", {"encoder": "minilm"}, args.minilm_items, min(args.fit_sample, 3000)),
    )
    for name, enc, limit, sample in runs:
        out[f"tokenizer_{name}"] = fit_tokenizer(data, root / f"tok-{name}", enc, sample)
        print(name, out[f"tokenizer_{name}"], flush=True)
        rows, ref = [], None
        for w in args.workers:
            row, codes = run_sharded(data, root / f"tok-{name}", enc, w, args.shards, limit)
            ref = codes if ref is None else ref
            row["same_sids_as_first"] = bool(np.array_equal(codes, ref))
            rows.append(row)
            print(name, row, flush=True)
        base = rows[0]["flow_s"]
        for r in rows:
            r["speedup"] = round(base / r["flow_s"], 2)
        out[name] = rows
    return out


def bench_sft(args: argparse.Namespace) -> dict:
    """Examples/s of train_sft on the default generator (params.yaml train.model), 1 process, 1 thread."""
    import torch

    from genrecall.config import from_dict, load_params
    from genrecall.gen.examples import SidDataset
    from genrecall.gen.model import GeneratorConfig, build_model
    from genrecall.gen.sft import SFTConfig, train_sft
    from genrecall.gen.tokenizer import GenTokenizer, TokenizerConfig

    torch.set_num_threads(1)
    train = load_params(ROOT / "params.yaml").get("train", {})
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2000)]
    texts = [" ".join(rng.choice(words, 4)) for _ in range(5000)]
    sizes = (240, 16, 16)
    tok = GenTokenizer.train(texts, sizes, from_dict(TokenizerConfig, {"vocab_size": 4096}))
    prompts = [tok.encode_prompt(t, kind="query") for t in texts]
    targets = np.stack([rng.integers(0, s, len(texts)) for s in sizes], axis=1)
    ds = SidDataset(prompts=prompts, targets=targets)
    model = build_model(from_dict(GeneratorConfig, train.get("model")), len(tok), tokenizer=tok)
    cfg = SFTConfig(
        stage="q2sid", max_steps=args.steps, batch_size=128, warmup_steps=2, checkpoint_every=0, num_threads=1
    )
    res = train_sft(model, tok, ds, cfg, Path(tempfile.mkdtemp(prefix="genrecall-bench-sft-")), show_progress=False)
    prompt_len = float(np.mean([len(p) for p in prompts]))
    return {
        "model": train.get("model"),
        "steps": res.steps,
        "batch_size": 128,
        "mean_prompt_tokens": round(prompt_len, 1),
        "seconds": round(res.seconds, 1),
        "examples_per_s": round(res.examples_per_s, 1),
        "params": int(sum(p.numel() for p in model.parameters())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("assign")
    a.add_argument("--preset", default="large")
    a.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    a.add_argument("--shards", type=int, default=16)
    a.add_argument("--hash-items", type=int, default=None, help="items embedded with the hash encoder (default: all)")
    a.add_argument("--minilm-items", type=int, default=10_000)
    a.add_argument("--fit-sample", type=int, default=50_000)
    a.add_argument("--out", type=Path)
    s = sub.add_parser("sft")
    s.add_argument("--steps", type=int, default=30)
    s.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = bench_assign(args) if args.cmd == "assign" else bench_sft(args)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
