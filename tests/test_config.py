from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from genrecall.config import from_dict, load_params, params_hash, stage_config


@dataclass
class _Cfg:
    alpha: float = 0.5
    sizes: tuple[int, ...] = (4, 4)
    name: str = "x"
    extra: dict = field(default_factory=dict)


def test_from_dict_fills_defaults_and_converts_lists() -> None:
    cfg = from_dict(_Cfg, {"alpha": 1.5, "sizes": [8, 2]})
    assert cfg.alpha == 1.5 and cfg.sizes == (8, 2) and cfg.name == "x"


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown setting"):
        from_dict(_Cfg, {"alpah": 1.0})


def test_stage_config_reads_params_file(tmp_path, monkeypatch) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("mystage:\n  alpha: 2.0\n  name: y\n")
    monkeypatch.setenv("GENRECALL_PARAMS", str(p))
    assert stage_config(_Cfg, "mystage") == _Cfg(alpha=2.0, name="y")
    assert stage_config(_Cfg, "absent") == _Cfg()
    assert load_params(tmp_path / "missing.yaml", missing_ok=True) == {}


def test_a_params_path_that_does_not_exist_is_an_error(tmp_path, monkeypatch) -> None:
    """A mistyped $GENRECALL_PARAMS (or --params) must not silently mean all defaults."""
    from genrecall.config import ParamsNotFound

    monkeypatch.setenv("GENRECALL_PARAMS", str(tmp_path / "typo.yaml"))
    with pytest.raises(ParamsNotFound, match=r"\$GENRECALL_PARAMS .*typo.yaml does not exist"):
        load_params()
    with pytest.raises(ParamsNotFound):
        stage_config(_Cfg, "mystage")  # what the service and every stage call
    with pytest.raises(ParamsNotFound, match=r"missing\.yaml"):
        load_params(tmp_path / "missing.yaml")
    monkeypatch.delenv("GENRECALL_PARAMS")
    monkeypatch.chdir(tmp_path)
    assert load_params() == {}, "no params.yaml in the cwd and nothing named: all defaults"


def test_params_hash_is_order_independent() -> None:
    assert params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": [1, 2], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})


def test_repo_params_load_into_every_stage_config() -> None:
    """params.yaml at the repo root has only known keys for each stage's config."""
    import importlib

    from tests.conftest import REPO_ROOT

    params = load_params(REPO_ROOT / "params.yaml")
    assert params, "params.yaml is missing or empty"
    stage_configs = {
        "generate": ("genrecall.data.marketplace", "MarketplaceConfig"),
        "validate": ("genrecall.data.validate", "ValidateConfig"),
        "embed": ("genrecall.pipeline.embed", "EmbedConfig"),
        "sid": ("genrecall.pipeline.sid", "SidConfig"),
        "features": ("genrecall.features.sources", "FeaturesConfig"),
        "train": ("genrecall.pipeline.train", "TrainConfig"),
        "train_rl": ("genrecall.pipeline.train_rl", "TrainRLConfig"),
        "evaluate": ("genrecall.pipeline.evaluate", "EvaluateConfig"),
        "package": ("genrecall.pipeline.package", "PackageConfig"),
        "gate": ("genrecall.serving.gate", "GateConfig"),
        "serve": ("genrecall.serving.retriever", "ServeConfig"),
        "daily": ("genrecall.pipeline.daily", "DailyConfig"),
        "eval_real": ("genrecall.pipeline.eval_real", "EvalRealConfig"),
        "scale": ("genrecall.pipeline.shards", "ScaleConfig"),
    }
    assert set(stage_configs) <= set(params), f"params.yaml lacks {set(stage_configs) - set(params)}"
    for stage, (module, name) in stage_configs.items():
        cls = getattr(importlib.import_module(module), name)
        from_dict(cls, params.get(stage))
    # nested blocks of the train stage map onto the generator's own configs
    from genrecall.pipeline.train import TrainConfig

    train = from_dict(TrainConfig, params["train"])
    for stage in ("i2sid", "q2sid", "uq2sid"):
        train.stage_config(stage)
    from genrecall.gen.model import GeneratorConfig
    from genrecall.gen.tokenizer import TokenizerConfig

    from_dict(GeneratorConfig, train.model)
    from_dict(TokenizerConfig, train.tokenizer)
    from genrecall.pipeline.finetune import FinetuneConfig

    from_dict(FinetuneConfig, params["daily"].get("finetune"))
    # train_rl: the shared GRPO block, each variant's overrides and the reward tiers
    from genrecall.pipeline.train_rl import TrainRLConfig
    from genrecall.rl import GRPOConfig, RewardConfig

    rl = from_dict(TrainRLConfig, params["train_rl"])
    for overrides in rl.variants.values():
        from_dict(GRPOConfig, {**rl.grpo, **(overrides or {})})
    from_dict(RewardConfig, rl.reward)


def test_scale_params_parse_into_the_runner_and_dist_configs() -> None:
    from genrecall.dist import DistConfig
    from genrecall.pipeline.shards import ScaleConfig, make_task_runner
    from tests.conftest import REPO_ROOT

    scale = from_dict(ScaleConfig, load_params(REPO_ROOT / "params.yaml")["scale"])
    assert from_dict(DistConfig, scale.dist).backend == "auto"
    assert type(make_task_runner(scale)).__name__ == "ThreadPoolTaskRunner"
    with pytest.raises(ValueError, match="unknown setting"):
        from_dict(DistConfig, {"backnd": "gloo"})
