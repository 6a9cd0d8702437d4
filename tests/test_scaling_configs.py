"""The scale-out configs in deploy/ (docs/SCALING.md), each checked by the real tool's own parser.

No network and no cluster: Feast's RepoConfig, DVC's config loader and schema, BentoML's build and
runtime config loaders, Prefect's prefect.yaml model, and plain YAML for the Kubernetes manifests.
"""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
SECRETS = {"FEAST_DB_PASSWORD": "pw", "REDIS_PASSWORD": "pw"}


@pytest.fixture()
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)


def _feast_raw(name: str) -> dict:
    return yaml.safe_load(os.path.expandvars((DEPLOY / "feast" / name).read_text()))


def test_feast_redis_config_parses_through_genrecall(tmp_path: Path, secrets: None) -> None:
    from genrecall.features.store import repo_config

    shutil.copy(DEPLOY / "feast" / "feature_store.redis.yaml", tmp_path / "feature_store.yaml")
    cfg = repo_config(tmp_path, tmp_path / "data")  # the loader the pipeline and the service use
    assert type(cfg.online_store).__name__ == "RedisOnlineStoreConfig"
    assert cfg.online_store.connection_string.startswith("redis-master:6379") and cfg.online_store.key_ttl_seconds > 0
    assert cfg.registry.registry_type == "sql" and ":pw@" in cfg.registry.path  # not moved into data_dir


def test_feast_spark_config_parses(secrets: None) -> None:
    from feast import RepoConfig

    raw = _feast_raw("feature_store.spark.yaml")
    assert raw["offline_store"]["type"] == "spark" and raw["batch_engine"]["type"] == "spark.engine"
    rest = {k: v for k, v in raw.items() if k != "batch_engine"} | {"offline_store": {"type": "file"}}
    cfg = RepoConfig(**rest)  # every non-Spark block validates here
    assert cfg.online_store.redis_type.name == "redis_cluster"
    pytest.importorskip("pyspark", reason="the Spark blocks need pyspark (feast[spark]) to validate")
    full = RepoConfig(**raw)
    assert type(full.offline_store).__name__ == "SparkOfflineStoreConfig"


@pytest.mark.parametrize("name,remote,scheme", [("config.s3", "s3", "s3://"), ("config.gcs", "gcs", "gs://")])
def test_dvc_remote_configs_load_and_validate(tmp_path: Path, name: str, remote: str, scheme: str) -> None:
    from dvc.config import Config, ConfigError

    (tmp_path / ".dvc").mkdir()
    shutil.copy(DEPLOY / "dvc" / name, tmp_path / ".dvc" / "config")
    conf = Config(dvc_dir=str(tmp_path / ".dvc"), validate=True)
    assert conf["core"]["remote"] == remote and conf["remote"][remote]["url"].startswith(scheme)
    assert conf["remote"][remote]["jobs"] == 16  # validated: the schema turned "16" into an int
    (tmp_path / ".dvc" / "config").write_text((DEPLOY / "dvc" / name).read_text().replace("jobs = 16", "jobs = many"))
    with pytest.raises(ConfigError):  # the same loader rejects a broken value
        Config(dvc_dir=str(tmp_path / ".dvc"), validate=True)


def test_bentoml_gpu_build_and_runtime_configs_load() -> None:
    from bentoml._internal.bento.build_config import BentoBuildConfig
    from bentoml._internal.configuration.containers import BentoMLConfiguration

    with (DEPLOY / "bento" / "bentofile.gpu.yaml").open() as f:
        build = BentoBuildConfig.from_yaml(f)
    assert build.service == "service:Search" and build.docker.cuda_version.startswith("12.6")
    assert build.python.lock_packages is False  # STACK.md gotcha 1
    svc = BentoMLConfiguration(override_config_file=str(DEPLOY / "bento" / "serving.gpu.yaml"), use_version=2).to_dict()
    genrecall = svc["services"]["genrecall"]  # the name in bento/service.py's @bentoml.service
    assert genrecall["resources"]["gpu"] == 1 and genrecall["workers"] == 1
    assert genrecall["traffic"]["max_concurrency"] > 0 and genrecall["http"]["port"] == 3000
    assert 'name="genrecall"' in (REPO_ROOT / "bento" / "service.py").read_text()


def test_kubernetes_manifests_have_the_expected_objects() -> None:
    search = list(yaml.safe_load_all((DEPLOY / "k8s" / "search.yaml").read_text()))
    kinds = {d["kind"]: d for d in search}
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    dep = kinds["Deployment"]
    assert (
        dep["spec"]["replicas"] >= 2
        and kinds["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == dep["spec"]["replicas"]
    )
    pod = dep["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e.get("value") for e in main["env"]}
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert (
        env["BENTOML_CONFIG"].startswith(mounts["serving-config"])
        and env["GENRECALL_FEAST_REPO"] == mounts["feast-repo"]
    )
    assert main["ports"][0]["containerPort"] == 3000
    assert dep["spec"]["selector"]["matchLabels"] == dep["spec"]["template"]["metadata"]["labels"]

    train = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "k8s" / "train-ddp.yaml").read_text())}
    cmd = train["Job"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[0] == "torchrun" and cmd[-3:] == ["-m", "genrecall", "train-sft"]
    dask = yaml.safe_load((DEPLOY / "k8s" / "dask-cluster.yaml").read_text())
    assert dask["kind"] == "DaskCluster" and dask["spec"]["worker"]["replicas"] > 1


def test_prefect_yaml_deployments_point_at_real_flows_and_a_work_pool() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import load_flow_from_entrypoint

    model = PrefectYamlModel.model_validate(yaml.safe_load((DEPLOY / "prefect" / "prefect.yaml").read_text()))
    assert {d.name for d in model.deployments} == {"daily", "embed-assign"}
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # entrypoints are relative to the project root, as for `prefect deploy`
    try:
        for d in model.deployments:
            assert d.work_pool is not None and d.work_pool.name == "genrecall-k8s"
            flow = load_flow_from_entrypoint(d.entrypoint)
            params = inspect.signature(flow.fn).parameters
            assert set(d.parameters) <= set(params), f"{d.name}: unknown parameters {set(d.parameters) - set(params)}"
    finally:
        os.chdir(cwd)
    assert model.deployments[0].schedules[0].cron == "0 3 * * *"
