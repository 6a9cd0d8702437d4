"""A whole pipeline run on the tiny marketplace with tiny models, for end-to-end tests.

Not a test module: tests import ``run_tiny_pipeline`` and call it from a module- or session-scoped
fixture. Every stage is the real stage function; only sizes are small (hash encoder, a 2-layer
generator, a few training steps), so the run takes well under a minute on 2 cores.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrecall.config import from_dict
from genrecall.data.marketplace import MarketplaceConfig
from genrecall.data.validate import ValidateConfig
from genrecall.features.sources import FeaturesConfig
from genrecall.pipeline.embed import EmbedConfig, embed
from genrecall.pipeline.evaluate import EvaluateConfig, evaluate
from genrecall.pipeline.features import features
from genrecall.pipeline.generate import generate
from genrecall.pipeline.sid import SidConfig, sid
from genrecall.pipeline.train import train, train_config
from genrecall.pipeline.validate import validate

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_PARAMS: dict[str, Any] = {
    "generate": {"preset": "tiny", "seed": 7},
    "validate": {"max_bad_share": 0.05},
    "embed": {"encoder": "hash", "hash_dim": 32},
    "sid": {
        "epochs": 2,
        "hidden_dims": [32],
        "latent_dim": 8,
        "codebook_sizes": ["auto", 4, 4],
        "kmeans_iters": 5,
        "batch_size": 64,
        "test_days": 2,
    },
    "features": {},
    "train": {
        "test_days": 2,
        "tokenizer": {"vocab_size": 300, "semantic_tokens": 2},
        "pseudo": {"per_item": 1},
        "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64},
        "i2sid": {"max_steps": 15, "batch_size": 32, "warmup_steps": 2, "num_threads": 1},
        "q2sid": {"max_steps": 15, "batch_size": 32, "warmup_steps": 2, "num_threads": 1},
        "uq2sid": {"max_steps": 15, "batch_size": 32, "warmup_steps": 2, "num_threads": 1},
    },
    "evaluate": {
        "test_days": 2,
        "max_requests": 60,
        "beams": [1, 2, 5, 10, 20],
        "report_beams": [1, 10],
        "personalized_beams": 10,
        "num_threads": 1,
    },
}


@dataclass(frozen=True)
class TinyRun:
    root: Path
    params: dict[str, Any]

    @property
    def data(self) -> Path:
        return self.root / "data" / "validated"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


def run_tiny_pipeline(root: Path, params: dict[str, Any] | None = None) -> TinyRun:
    """generate -> validate -> embed -> sid -> features -> train_sft -> evaluate, all under ``root``."""
    p = params or TINY_PARAMS
    repo = root / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    d = root / "data"
    generate(from_dict(MarketplaceConfig, p["generate"]), d / "raw", show_progress=False)
    validate(
        from_dict(ValidateConfig, p["validate"]),
        d / "raw",
        d / "validated",
        d / "quarantine",
        root / "reports" / "validation.json",
    )
    embed(from_dict(EmbedConfig, p["embed"]), d / "validated", root / "cache", d / "embeddings", show_progress=False)
    sid(
        from_dict(SidConfig, p["sid"]),
        d / "validated",
        d / "embeddings",
        root / "models" / "sid",
        d / "sid",
        root / "reports",
        show_progress=False,
    )
    features(from_dict(FeaturesConfig, p["features"]), d / "validated", d / "sid" / "cq_sid", repo, d / "feast")
    train(
        train_config(p),
        d / "validated",
        d / "sid",
        root / "models" / "generator",
        root / "reports",
        feast_repo=repo,
        feast_data_dir=d / "feast",
        cache_dir=root / "cache",
        show_progress=False,
    )
    evaluate(
        from_dict(EvaluateConfig, p["evaluate"]),
        d / "validated",
        d / "sid",
        d / "embeddings",
        root / "models" / "generator",
        root / "reports",
        feast_repo=repo,
        feast_data_dir=d / "feast",
        preset=p["generate"].get("preset"),
        sid_model_dir=root / "models" / "sid",
    )
    return TinyRun(root, p)
