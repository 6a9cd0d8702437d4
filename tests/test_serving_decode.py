"""The retriever's decoders on the tiny bundle: lean (default) answers as transformers does; adaptive beam."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecall.gen.fast_decode import LeanDecoder
from genrecall.serving.bundle import Bundle
from genrecall.serving.retriever import Retriever, SearchRequest, ServeConfig
from tests.serving_fixtures import known_user, make_bundle, shared_tiny_pipeline, titled_items

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return shared_tiny_pipeline()


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory) -> Bundle:
    return Bundle.load(make_bundle(tiny, tmp_path_factory.mktemp("d") / "b"))


@pytest.fixture(scope="module")
def features(tiny):
    from genrecall.features.store import FeatureClient

    return FeatureClient(tiny.feast_repo, tiny.feast_data_dir)


def _requests(tiny) -> list[SearchRequest]:
    titles = titled_items(tiny, n=6, seed=3)["title"].tolist()
    user = known_user(tiny)
    beams = [1, 20, 50, 20, 7, 100]
    return [SearchRequest(t, user if i % 2 else None, k=60, beam_size=b) for i, (t, b) in enumerate(zip(titles, beams))]


def test_lean_is_the_default_and_answers_as_transformers_does(bundle: Bundle, features, tiny) -> None:
    lean = Retriever(bundle, ServeConfig(), features)
    reference = Retriever(bundle, ServeConfig(decoder="transformers"), features)
    assert isinstance(lean.decoder, LeanDecoder) and reference.decoder is None
    reqs = _requests(tiny)
    got, want = lean.search_batch(reqs), reference.search_batch(reqs)
    assert any(r.personalized for r in got)
    for g, w, r in zip(got, want, reqs):
        assert g.sids == w.sids
        np.testing.assert_allclose(g.sid_scores, w.sid_scores, atol=1e-4)
        assert [h.item_id for h in g.items] == [h.item_id for h in w.items]
        assert g.beam_size == w.beam_size == r.beam_size
        assert g.to_dict()["beam_size"] == r.beam_size


def test_adaptive_beam_is_capped_by_the_request_and_says_which_beam(bundle: Bundle, features, tiny) -> None:
    cfg = ServeConfig(adaptive_beam=True, adaptive_tiers=(2, 5, 30), adaptive_thresholds=(0.95, 0.5))
    adaptive = Retriever(bundle, cfg, features)
    fixed = Retriever(bundle, ServeConfig(), features)
    reqs = _requests(tiny)
    got = adaptive.search_batch(reqs)
    for g, r in zip(got, reqs):
        assert g.beam_size in {min(b, int(r.beam_size or 0)) for b in cfg.adaptive_tiers}
        assert len(g.sids) <= g.beam_size
        same = fixed.search_batch([SearchRequest(r.query, r.user_id, k=r.k, beam_size=g.beam_size)])[0]
        assert g.sids == same.sids  # the chosen beam decodes exactly like a fixed search at that beam


def test_config_refuses_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="decoder"):
        ServeConfig(decoder="onnx")
    with pytest.raises(ValueError, match="adaptive_beam needs"):
        ServeConfig(decoder="transformers", adaptive_beam=True)
    with pytest.raises(ValueError, match="ascending"):
        ServeConfig(adaptive_tiers=(50, 20, 100))
    with pytest.raises(ValueError, match="thresholds"):
        ServeConfig(adaptive_thresholds=(0.5,))
    assert ServeConfig().adaptive_policy() is None
