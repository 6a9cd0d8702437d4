"""Build a tiny but real pipeline output for serving tests: marketplace -> embed -> sid -> SFT -> Feast.

Not a test module (no ``test_`` prefix): serving tests, the HTTP integration test and the serving
benchmark call ``build_tiny_pipeline(root)`` once and reuse what it wrote. Everything is real (the
tiny marketplace preset, the hash encoder, the sid stage, ``train_sft``, a Feast store in ``root``);
only the sizes are small. Deterministic from the seeds below; about 30-60 s on one core.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genrecall.data.marketplace import MarketplaceConfig, generate_marketplace
from genrecall.data.schema import CATEGORIES, ITEMS, REQUESTS, SID_ASSIGNMENTS, USERS, read_table
from genrecall.gen.examples import (
    SidDataset,
    item_examples,
    query_examples,
    user_contexts_from_log,
    user_query_examples,
)
from genrecall.gen.model import GeneratorConfig, build_model
from genrecall.gen.semantic import SentenceEncoder
from genrecall.gen.sft import SFTConfig, train_sft
from genrecall.gen.tokenizer import GenTokenizer, TokenizerConfig
from genrecall.pipeline.embed import EmbedConfig, embed
from genrecall.pipeline.sid import SidConfig, sid
from genrecall.serving.launch import serve_command
from genrecall.sid.index import SidIndex

REPO_ROOT = Path(__file__).resolve().parents[1]
HASH = EmbedConfig(encoder="hash", hash_dim=32)
SID_CFG = SidConfig(
    methods=("cq_sid",),
    epochs=3,
    hidden_dims=(64,),
    latent_dim=16,
    codebook_sizes=("auto", 8, 8),
    kmeans_iters=5,
    batch_size=128,
)
# a semantic-prompt generator (gen/semantic.py): the served bundle brings its encoder into the request path
GEN_CFG = GeneratorConfig(
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    intermediate_size=128,
    max_positions=128,
    semantic_dim=HASH.hash_dim,
    semantic_encoder=dataclasses.asdict(HASH),
)
TINY_METRICS = {
    "semantic": {"cq_sid": {"hitrate@1": 0.10, "hitrate@10": 0.40, "hitrate@100": 0.80}},
    "personalized": {
        "cq_sid": {"hitrate@10": 0.45, "items@1000": 0.60},
        "served": {"hitrate@10": 0.45, "items@1000": 0.60},
    },
}  # what package writes


@dataclass(frozen=True)
class TinyPipeline:
    """Where ``build_tiny_pipeline`` wrote each pipeline output (arguments of ``package``)."""

    root: Path
    data_dir: Path
    sid_model_dir: Path
    index_dir: Path
    generator_dir: Path
    metrics_path: Path
    feast_repo: Path | None = None
    feast_data_dir: Path | None = None

    def package_kwargs(self) -> dict:
        return {
            "generator_dir": self.generator_dir,
            "sid_model_dir": self.sid_model_dir,
            "index_dir": self.index_dir,
            "data_dir": self.data_dir,
            "metrics_path": self.metrics_path,
            "params": {"tiny": True},
            "dvc_lock": self.root / "no-dvc.lock",
        }


def gen_config(encoder: EmbedConfig = HASH) -> GeneratorConfig:
    """The tiny generator's config, its semantic prompt fed by ``encoder``."""
    dim = encoder.hash_dim if encoder.encoder == "hash" else 384
    return dataclasses.replace(GEN_CFG, semantic_dim=dim, semantic_encoder=dataclasses.asdict(encoder))


def train_tiny_generator(
    data_dir: Path, index_dir: Path, out_dir: Path, *, steps: int = 600, seed: int = 0, encoder: EmbedConfig = HASH
) -> Path:
    """SFT a tiny generator on I2SID + Q2SID + UQ2SID examples mixed; returns its final dir."""
    items, requests = read_table(ITEMS, data_dir), read_table(REQUESTS, data_dir)
    users, categories = read_table(USERS, data_dir), read_table(CATEGORIES, data_dir)
    sids = read_table(SID_ASSIGNMENTS, index_dir)
    index = SidIndex.load(index_dir)
    texts = list(items["title"]) + list(requests["query"]) + list(categories["name"])
    tok = GenTokenizer.train(
        texts,
        index.sid_vocab_sizes,
        TokenizerConfig(vocab_size=600, semantic_tokens=2),
        profile_values={f: users[f].tolist() for f in ("gender", "age_band", "price_tier")},
    )
    contexts = user_contexts_from_log(requests, users, sids, items=items, categories=categories)
    data = SidDataset.concat(
        item_examples(items, sids, tok),
        query_examples(requests, sids, tok),
        user_query_examples(requests, sids, tok, contexts),
    )
    data = data.with_vectors(SentenceEncoder(encoder, data_dir.parent / "cache"))
    model = build_model(dataclasses.replace(gen_config(encoder), seed=seed), len(tok), tokenizer=tok)
    cfg = SFTConfig(
        stage="uq2sid",
        max_steps=steps,
        batch_size=32,
        lr=5e-3,
        warmup_steps=10,
        seed=seed,
        checkpoint_every=0,
        num_threads=1,
    )
    return train_sft(model, tok, data, cfg, out_dir, show_progress=False).final_dir


def build_feature_store(root: Path, data_dir: Path, index_dir: Path) -> tuple[Path, Path]:
    """A real Feast store (SQLite online, Parquet offline) for the tiny data; returns (repo, data dir)."""
    from genrecall.features.sources import FeaturesConfig
    from genrecall.pipeline.features import features

    repo = root / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    features(FeaturesConfig(), data_dir, index_dir, repo, root / "feast")
    return repo, root / "feast"


def build_tiny_pipeline(
    root: str | Path, *, steps: int = 600, feast: bool = True, encoder: EmbedConfig = HASH
) -> TinyPipeline:
    """Run the tiny pipeline into ``root`` (idempotent: a finished build is reused). ``encoder``: the
    text encoder of the embed stage and the generator's semantic prompt (the hash encoder by default;
    MiniLM puts the real query encoder into the serving path, for benchmarks)."""
    root = Path(root)
    done = root / "tiny_pipeline.json"
    if done.exists():
        return TinyPipeline(**{k: Path(v) if v else None for k, v in json.loads(done.read_text()).items()})
    torch.set_num_threads(1)
    data_dir = root / "data"
    generate_marketplace(MarketplaceConfig(preset="tiny", seed=7)).save(data_dir)
    embed(encoder, data_dir, root / "cache", root / "emb", show_progress=False)
    sid(SID_CFG, data_dir, root / "emb", root / "models" / "sid", root / "sid", root / "reports", show_progress=False)
    index_dir, sid_model_dir = root / "sid" / "cq_sid", root / "models" / "sid" / "cq_sid"
    generator_dir = train_tiny_generator(
        data_dir, index_dir, root / "models" / "generator", steps=steps, encoder=encoder
    )
    metrics_path = root / "reports" / "metrics.json"
    metrics_path.write_text(json.dumps(TINY_METRICS))
    repo = feast_dir = None
    if feast:
        repo, feast_dir = build_feature_store(root, data_dir, index_dir)
    tiny = TinyPipeline(root, data_dir, sid_model_dir, index_dir, generator_dir, metrics_path, repo, feast_dir)
    done.write_text(json.dumps({k: str(v) if v else None for k, v in tiny.__dict__.items()}))
    return tiny


def known_user(tiny: TinyPipeline) -> str:
    """A user with many clicks in the log (so the store holds history for them)."""
    requests = read_table(REQUESTS, tiny.data_dir)
    clicks = requests[requests["user_id"].notna()].assign(
        n=[len(c) for c in requests.loc[requests["user_id"].notna(), "clicked"]]
    )
    return str(clicks.groupby("user_id")["n"].sum().sort_values(ascending=False, kind="stable").index[0])


def titled_items(tiny: TinyPipeline, n: int = 20, seed: int = 0) -> pd.DataFrame:
    """``n`` indexed items (item_id, title, codes) to query by their own title."""
    items = read_table(ITEMS, tiny.data_dir)
    sids = read_table(SID_ASSIGNMENTS, tiny.index_dir)
    df = items.merge(sids, on="item_id")
    return df.iloc[np.random.default_rng(seed).choice(len(df), size=n, replace=False)].reset_index(drop=True)


_SHARED: dict[str, TinyPipeline] = {}


def shared_tiny_pipeline() -> TinyPipeline:
    """One tiny pipeline per test process (session fixtures of several modules share it)."""
    if "tiny" not in _SHARED:
        import tempfile

        _SHARED["tiny"] = build_tiny_pipeline(Path(tempfile.mkdtemp(prefix="genrecall-serving-")))
    return _SHARED["tiny"]


def make_bundle(tiny: TinyPipeline, out_dir: Path, *, metrics: dict | None = None, **kwargs) -> Path:
    """Write a bundle directory from the tiny pipeline (``metrics`` replaces the recorded metrics)."""
    from genrecall.pipeline.package import item_quality
    from genrecall.serving.bundle import write_bundle

    write_bundle(
        out_dir,
        generator_dir=tiny.generator_dir,
        sid_model_dir=tiny.sid_model_dir,
        index_dir=tiny.index_dir,
        items=item_quality(tiny.data_dir),
        categories=read_table(CATEGORIES, tiny.data_dir),
        metrics=TINY_METRICS if metrics is None else metrics,
        data_version="test",
        params_hash="test",
        **kwargs,
    )
    return out_dir


# -- a real `bentoml serve` of bento/service.py on a free loopback port --------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``bentoml serve`` in its own process group, with ``env`` (PYTHONPATH and all: the test's own)."""
    cmd = serve_command(port, bento_dir=REPO_ROOT / "bento")
    return subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)  # the server's own process group (start_new_session): its workers go too
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def served_tiny_env(tiny: TinyPipeline, tmp: Path) -> dict[str, str]:
    """Package and promote the tiny pipeline's bundle; the environment a server of it runs with."""
    from genrecall.pipeline.package import PackageConfig, package

    result = package(PackageConfig(), **tiny.package_kwargs())
    assert result.production == result.tag
    (tmp / "empty-params.yaml").write_text("{}\n")  # all defaults (a path that does not exist is an error)
    return {
        **os.environ,
        "GENRECALL_FEAST_REPO": str(tiny.feast_repo),
        "GENRECALL_FEAST_DATA": str(tiny.feast_data_dir),
        "GENRECALL_PARAMS": str(tmp / "empty-params.yaml"),
        "OMP_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "True",
        "GENRECALL_EXPECTED_BUNDLE": result.tag,
    }


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """A running server's base URL (``http://127.0.0.1:<port>``) until the block ends."""
    import bentoml

    port = free_port()
    proc = start_server(port, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        with bentoml.SyncHTTPClient(url, server_ready_timeout=90):
            pass
    except Exception:
        stop(proc)
        raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}") from None
    try:
        yield url
    finally:
        stop(proc)
