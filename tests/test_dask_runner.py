"""Sharded embedding + SID assignment (flows/embed_assign.py) on Prefect's local runner and on a real
Dask LocalCluster (two worker processes): the same vectors and SIDs as one unsharded pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genrecall.data.marketplace import MarketplaceConfig, init_marketplace
from genrecall.pipeline.shards import ScaleConfig, ShardCache, load_catalog, make_task_runner, shard_bounds
from genrecall.sid.encoder import EncoderConfig, make_encoder
from genrecall.sid.tokenizer import SidTokenizer, SidTokenizerConfig
from tests.prefect_fixtures import prefect_harness  # noqa: F401

ENC = {"encoder": "hash", "hash_dim": 32}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny marketplace's catalog, and a CQ-SID tokenizer fit on its hash embeddings."""
    root = tmp_path_factory.mktemp("embed-assign")
    init_marketplace(MarketplaceConfig(preset="tiny", seed=3)).save(root / "data")
    cat = load_catalog(root / "data")
    x = make_encoder(EncoderConfig(**ENC)).encode(cat.texts)
    tok = SidTokenizer(SidTokenizerConfig(codebook_sizes=("auto", 8, 8), hidden_dims=(32,), latent_dim=8, epochs=2))
    tok.fit(x, cat.categories)
    tok.save(root / "tok")
    return {"root": root, "x": x, "codes": tok.assign(x, cat.categories), "ids": cat.item_ids}


def test_shard_bounds_cover_every_row_once_in_order() -> None:
    for n, k in [(10, 3), (5, 8), (0, 4), (1_000_003, 7)]:
        bounds = shard_bounds(n, k)
        rows = np.concatenate([np.arange(n)[b] for b in bounds]) if bounds else np.empty(0)
        assert np.array_equal(rows, np.arange(n)) and len(bounds) <= max(k, 1)
        sizes = [b.stop - b.start for b in bounds]
        assert not sizes or max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="runner"):
        ScaleConfig(runner="spark")


def test_concurrent_shards_share_one_cache_without_clobbering(tmp_path: Path) -> None:
    enc = make_encoder(EncoderConfig(**ENC))
    a, b = ShardCache(tmp_path, enc), ShardCache(tmp_path, enc)  # two workers, each with its view
    a.encode(["red kettle", "blue kettle"])
    b.encode(["running shoes"])  # b never saw a's part: without the tag both would write part-000000
    assert len(list(next(tmp_path.iterdir()).glob("part-*.parquet"))) == 2
    again, stats = ShardCache(tmp_path, enc).encode(["blue kettle", "running shoes"])
    assert stats.encoded == 0 and np.allclose(again, enc.encode(["blue kettle", "running shoes"]))


@pytest.mark.slow  # a Dask cluster under a Prefect run (~20 s)
def test_local_and_dask_runners_give_the_same_sids(catalog: dict, prefect_harness: None, tmp_path: Path) -> None:  # noqa: F811
    from flows.embed_assign import run

    root = catalog["root"]
    local = run(
        root / "data",
        root / "tok",
        tmp_path / "local",
        encoder=ENC,
        cache_dir=tmp_path / "cache",
        scale={"runner": "local", "shards": 3, "max_workers": 2},
    )
    assert np.array_equal(local.item_ids, catalog["ids"]) and local.shards == 3
    np.testing.assert_allclose(local.vectors, catalog["x"], atol=1e-6)
    assert np.array_equal(local.codes, catalog["codes"])  # sharding changed nothing

    dask_scale = {
        "runner": "dask",
        "shards": 5,
        "dask_cluster": {"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None},
    }
    assert type(make_task_runner(ScaleConfig(**dask_scale))).__name__ == "DaskTaskRunner"
    dask = run(
        root / "data", root / "tok", tmp_path / "dask", encoder=ENC, cache_dir=tmp_path / "cache", scale=dask_scale
    )
    assert dask.runner == "dask" and dask.shards == 5
    assert np.array_equal(dask.item_ids, local.item_ids) and np.array_equal(dask.codes, local.codes)
    np.testing.assert_allclose(dask.vectors, local.vectors, atol=1e-6)
    saved = np.load(tmp_path / "dask" / "codes.npy")
    assert np.array_equal(saved, local.codes)
