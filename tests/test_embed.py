"""Text encoders, the embedding cache and the embed stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrecall.data.schema import ITEMS, REQUESTS, write_table
from genrecall.pipeline.embed import EmbedConfig, embed, load_embeddings
from genrecall.sid.encoder import EmbeddingCache, EncoderConfig, HashEncoder, item_text, make_encoder

UTC = "UTC"


class CountingHashEncoder(HashEncoder):
    """The real hash encoder, counting how many texts it was asked to encode."""

    calls: list[int]

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        self.calls = [*getattr(self, "calls", []), len(texts)]
        return super().encode(texts)


def test_hash_encoder_is_deterministic_normalised_and_typo_tolerant() -> None:
    enc = HashEncoder(dim=32, seed=1)
    v = enc.encode(["red kettle 1.7l", "red kettle 1.7l", "red ketle 1.7l", "running shoes"])
    assert v.shape == (4, 32) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(v[0], v[1])
    assert v[0] @ v[2] > v[0] @ v[3]  # a typo stays closer than another product
    assert not np.allclose(HashEncoder(dim=32, seed=2).encode(["red kettle 1.7l"]), v[:1])


def test_item_text_uses_title_brand_and_present_attributes() -> None:
    text = item_text(
        {
            "title": "Kettle 1.7L",
            "brand": "Acme",
            "color": "red",
            "material": None,
            "size": float("nan"),
            "style": "retro",
        }
    )
    assert text == "Kettle 1.7L | Acme, red, retro"
    # values the title already says are not repeated
    said = item_text({"title": "Acme Red Kettle", "brand": "Acme", "color": "red", "style": "retro"})
    assert said == "Acme Red Kettle | retro"
    assert item_text({"title": "Acme Kettle", "brand": "Acme"}) == "Acme Kettle"


def test_cache_encodes_only_new_texts_and_survives_restarts(tmp_path: Path) -> None:
    enc = CountingHashEncoder(dim=16)
    cache = EmbeddingCache(tmp_path, enc)
    first, s1 = cache.encode(["a b c", "d e f", "a b c"])
    assert (s1.hits, s1.encoded) == (0, 2) and enc.calls == [2]
    assert np.array_equal(first[0], first[2])
    again = EmbeddingCache(tmp_path, enc)  # a fresh process would see only the files
    second, s2 = again.encode(["d e f", "g h i", "a b c"])
    assert (s2.hits, s2.encoded) == (2, 1) and enc.calls == [2, 1]
    assert np.array_equal(second[0], first[1]) and np.array_equal(second[2], first[0])
    again.compact()
    assert len(list(cache.dir.glob("part-*.parquet"))) == 1
    third, s3 = EmbeddingCache(tmp_path, enc).encode(["g h i"])
    assert s3.encoded == 0 and np.array_equal(third[0], second[1])
    other = EmbeddingCache(tmp_path, HashEncoder(dim=16, seed=5))  # another encoder, another cache
    assert other.encode(["a b c"])[1].encoded == 1


def _items_and_requests(directory: Path, titles: list[str]) -> None:
    ts = pd.Timestamp("2026-01-01", tz=UTC)
    n = len(titles)
    items = pd.DataFrame(
        {
            "item_id": np.arange(n, 0, -1, dtype=np.int64),  # written out of order on purpose
            "title": titles,
            "brand": ["Acme"] * n,
            "category_id": pd.array([1] * n, dtype="Int32"),
            "color": ["red"] * n,
            "material": [None] * n,
            "size": [None] * n,
            "style": [None] * n,
            "price": [9.99] * n,
            "listed_at": [ts] * n,
            "delisted_at": pd.Series([pd.NaT] * n, dtype="datetime64[us, UTC]"),
            "updated_at": [ts] * n,
        }
    )
    write_table(items, ITEMS, directory)
    requests = pd.DataFrame(
        {
            "request_id": np.arange(3, dtype=np.int64),
            "ts": [ts] * 3,
            "user_id": [None, "u1", "u2"],
            "query": ["kettle", "red kettle", "kettle"],
            "query_kind": ["noun"] * 3,
            "exposed": [[1, 2], [2], [1]],
            "clicked": [[1], [], []],
            "purchased": [[], [], []],
        }
    )
    write_table(requests, REQUESTS, directory)


def test_embed_stage_writes_aligned_outputs_and_reuses_cache(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _items_and_requests(data, ["kettle one", "kettle two", "toaster"])
    cfg = EmbedConfig(encoder="hash", hash_dim=16)
    r1 = embed(cfg, data, tmp_path / "cache", tmp_path / "emb", show_progress=False)
    assert (r1.items, r1.queries, r1.item_encoded, r1.query_encoded) == (3, 2, 3, 2)
    emb = load_embeddings(tmp_path / "emb")
    assert emb.item_ids.tolist() == [1, 2, 3] and emb.queries == ["kettle", "red kettle"]
    assert emb.items.shape == (3, 16) and emb.query_vectors.shape == (2, 16)
    enc = make_encoder(cfg)
    assert np.allclose(
        emb.items[emb.item_rows(np.array([3]))],
        enc.encode([item_text({"title": "kettle one", "brand": "Acme", "color": "red"})]),
    )
    with pytest.raises(KeyError):
        emb.item_rows(np.array([99]))
    _items_and_requests(data, ["kettle one", "kettle two", "toaster", "new blender"])
    r2 = embed(cfg, data, tmp_path / "cache", tmp_path / "emb", show_progress=False)
    assert (r2.item_encoded, r2.item_cache_hits, r2.query_encoded) == (1, 3, 0)
    meta = json.loads((tmp_path / "emb" / "embed.json").read_text())
    assert meta["encoder"].startswith("hash") and meta["items"] == 4


def test_minilm_loads_offline_and_gives_normalised_384d(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    enc = make_encoder(EncoderConfig(encoder="minilm", batch_size=4))
    v = enc.encode(["stainless steel electric kettle", "electric kettle steel", "women's running shoes"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # the model is real: paraphrases are closer
