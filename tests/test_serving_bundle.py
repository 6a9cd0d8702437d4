"""The bundle: built from real (tiny) pipeline outputs, verified on load, refused when tampered or mismatched."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from genrecall.pipeline.package import item_quality
from genrecall.serving.bundle import (
    MANIFEST,
    Bundle,
    BundleError,
    data_version,
    index_fingerprint,
    list_bundles,
    read_manifest,
    save_to_store,
    sha256_file,
    verify,
    write_bundle,
)
from genrecall.sid.index import SidIndex
from tests.serving_fixtures import TINY_METRICS, make_bundle, shared_tiny_pipeline


@pytest.fixture(scope="session")
def tiny():
    return shared_tiny_pipeline()


@pytest.fixture(scope="module")
def bundle_dir(tiny, tmp_path_factory) -> Path:
    return make_bundle(tiny, tmp_path_factory.mktemp("bundle") / "b")


def test_manifest_records_lineage_and_every_file(bundle_dir: Path, tiny) -> None:
    m = verify(bundle_dir)
    assert m.metrics == TINY_METRICS and m.data_version == "test" and m.params_hash == "test"
    assert {
        "generator/model.safetensors",
        "generator/tokenizer.json",
        "generator/config.json",
        "sid_tokenizer/model.safetensors",
        "index/sid_assignments.parquet",
        "items.parquet",
    } <= set(m.files)
    for rel, digest in m.files.items():
        assert sha256_file(bundle_dir / rel) == digest
        assert rel.endswith((".json", ".safetensors", ".parquet")), rel  # nothing pickle-capable
    index = SidIndex.load(tiny.index_dir)
    assert m.index_fingerprint == index_fingerprint(index) and m.items == len(index) and m.sids == index.n_sids
    assert m.version.endswith(m.content_digest()[:10])


def test_load_gives_a_consistent_bundle(bundle_dir: Path) -> None:
    b = Bundle.load(bundle_dir)
    assert b.tag is None and b.version == b.manifest.version
    assert np.array_equal(b.items.item_id, b.index.item_ids())
    assert (b.items.quality > 0).all() and all(isinstance(t, str) and t for t in b.items.title)
    assert len(b.trie) == b.index.n_sids
    assert b.generator.tokenizer.sid_vocab_sizes == b.manifest.sid_vocab_sizes
    assert b.category_names  # names for rendering a user's recent categories


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _resign(path: Path) -> None:
    """Recompute the manifest's file hashes, as an attacker (or a careless hand edit) would."""
    m = json.loads((path / MANIFEST).read_text())
    m["files"] = {rel: sha256_file(path / rel) for rel in m["files"]}
    (path / MANIFEST).write_text(json.dumps(m))


def test_tampered_file_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    bad = _copy(bundle_dir, tmp_path / "bad")
    weights = bad / "generator" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=re.escape("hash mismatch generator/model.safetensors")):
        Bundle.load(bad)


def test_extra_missing_and_unsafe_files_are_refused(bundle_dir: Path, tmp_path: Path) -> None:
    extra = _copy(bundle_dir, tmp_path / "extra")
    (extra / "generator" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(BundleError, match=re.escape("unlisted file generator/pytorch_model.bin")):
        verify(extra)
    missing = _copy(bundle_dir, tmp_path / "missing")
    (missing / "index" / "index.json").unlink()
    with pytest.raises(BundleError, match=re.escape("missing index/index.json")):
        verify(missing)
    with pytest.raises(BundleError, match=re.escape("no manifest.json")):
        verify(tmp_path)


def test_mismatched_index_is_refused_even_with_valid_hashes(bundle_dir: Path, tmp_path: Path) -> None:
    bad = _copy(bundle_dir, tmp_path / "swapped")
    index = SidIndex.load(bad / "index")
    ids = index.item_ids()
    a, b = int(ids[0]), int(ids[-1])
    sid_a, sid_b = index.sid_of([a, b])
    index.add([a, b], np.stack([sid_b, sid_a]))  # two items swap clusters: same shape, different index
    index.save(bad / "index")
    _resign(bad)
    verify(bad)  # the hashes are fine now ...
    with pytest.raises(BundleError, match="not the one its manifest names"):
        Bundle.load(bad)  # ... but the index is not the one the generator was bundled with


def test_generator_trained_on_another_sid_tokenizer_is_refused(tiny, tmp_path: Path) -> None:
    gen = _copy(tiny.generator_dir, tmp_path / "gen")
    tok = json.loads((gen / "tokenizer.json").read_text())
    tok["sid_vocab_sizes"][1] += 3  # a generator whose level-2 vocabulary does not match the codebooks
    tok["vocab_size"] += 3
    (gen / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(BundleError, match="another SID tokenizer"):
        write_bundle(
            tmp_path / "b",
            generator_dir=gen,
            sid_model_dir=tiny.sid_model_dir,
            index_dir=tiny.index_dir,
            items=item_quality(tiny.data_dir),
        )


def test_items_without_titles_are_refused(tiny, tmp_path: Path) -> None:
    items = item_quality(tiny.data_dir).iloc[5:]
    with pytest.raises(BundleError, match="have no title/quality row"):
        write_bundle(
            tmp_path / "b",
            generator_dir=tiny.generator_dir,
            sid_model_dir=tiny.sid_model_dir,
            index_dir=tiny.index_dir,
            items=items,
        )


def test_store_round_trip_and_tamper_in_store(bundle_dir: Path) -> None:
    import bentoml

    tag = save_to_store(bundle_dir, name="bundle-test")
    assert tag == f"bundle-test:{read_manifest(bundle_dir).version}"
    assert save_to_store(bundle_dir, name="bundle-test") == tag  # content-addressed: saving again is a no-op
    assert list_bundles("bundle-test") == [tag]
    loaded = Bundle.load(tag)
    assert loaded.tag == tag and loaded.version == tag
    stored = Path(bentoml.models.get(tag).path)
    (stored / "items.parquet").write_bytes(b"not parquet")
    with pytest.raises(BundleError, match=re.escape("hash mismatch items.parquet")):
        Bundle.load(tag)
    with pytest.raises(BundleError, match="no bundle 'bundle-test:nope'"):
        Bundle.load("bundle-test:nope")


def test_data_version_prefers_dvc_lock(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "t.parquet").write_bytes(b"x")
    plain = data_version(tmp_path / "d", dvc_lock=tmp_path / "none.lock")
    assert plain.startswith("sha256:")
    (tmp_path / "d" / "t.parquet").write_bytes(b"y")
    assert data_version(tmp_path / "d", dvc_lock=tmp_path / "none.lock") != plain
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        f"schema: '2.0'\nstages:\n  validate:\n    outs:\n    - path: {tmp_path / 'd'}\n      md5: abc123.dir\n"
    )
    assert data_version(tmp_path / "d", dvc_lock=lock) == "dvc:abc123.dir"
