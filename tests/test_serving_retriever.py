"""The retriever on a tiny trained bundle with a real Feast store: what it returns, in what order, for whom."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from genrecall.data.schema import sid_from_str
from genrecall.serving.bundle import Bundle
from genrecall.serving.retriever import InvalidRequest, Retriever, SearchRequest, ServeConfig
from tests.serving_fixtures import known_user, make_bundle, shared_tiny_pipeline, titled_items

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny():
    return shared_tiny_pipeline()


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory) -> Bundle:
    return Bundle.load(make_bundle(tiny, tmp_path_factory.mktemp("r") / "b"))


@pytest.fixture(scope="module")
def features(tiny):
    from genrecall.features.store import FeatureClient  # imports Feast (~10 s)

    return FeatureClient(tiny.feast_repo, tiny.feast_data_dir)


@pytest.fixture(scope="module")
def retriever(bundle, features) -> Retriever:
    return Retriever(bundle, ServeConfig(), features)


def test_an_items_own_title_finds_its_category_and_often_its_cluster(retriever: Retriever, tiny) -> None:
    rows = titled_items(tiny, n=40)
    cats, clusters = [], []
    for row in rows.itertuples():
        res = retriever.search(row.title, k=50, beam_size=10)
        cats.append(sid_from_str(res.sids[0])[0] == row.codes[0])
        clusters.append("-".join(map(str, row.codes)) in res.sids)
    # 32 leaf categories / 415 SIDs: chance would be ~0.03 and ~0.02
    assert np.mean(cats) >= 0.6, np.mean(cats)
    assert np.mean(clusters) >= 0.25, np.mean(clusters)


def test_items_follow_beam_rank_then_quality_and_k(retriever: Retriever, bundle: Bundle) -> None:
    res = retriever.search("electric kettle", k=25, beam_size=20)
    assert len(res.items) == 25 and len(res.sids) == 20 and res.bundle == bundle.version
    assert res.sid_scores == sorted(res.sid_scores, reverse=True)
    rank = {s: i for i, s in enumerate(res.sids)}
    keys = [(rank[h.sid], -bundle.items.quality[bundle.items.rows([h.item_id])[0]]) for h in res.items]
    assert keys == sorted(keys)
    for h in res.items:
        assert h.item_id in bundle.index.items(sid_from_str(h.sid))  # every item is really in its SID
        assert h.title == bundle.items.title[bundle.items.rows([h.item_id])[0]]
        assert h.score == res.sid_scores[rank[h.sid]]
    expanded = sum(len(bundle.index.items(sid_from_str(s))) for s in res.sids)
    assert len(retriever.search("electric kettle", k=1000, beam_size=20).items) == min(1000, expanded)


def test_quality_order_sorts_across_sids(bundle: Bundle) -> None:
    r = Retriever(bundle, ServeConfig(item_order="quality"))
    res = r.search("electric kettle", k=30, beam_size=20)
    q = bundle.items.quality[bundle.items.rows([h.item_id for h in res.items])]
    assert np.all(np.diff(q) <= 0)


def test_batch_matches_single_searches_with_mixed_beams(retriever: Retriever) -> None:
    reqs = [
        SearchRequest("kettle", None, 10, 5),
        SearchRequest("running shoes", None, 7, 20),
        SearchRequest("red hammer", None, 10, 5),
        SearchRequest("toaster", "nobody", 3, 1),
    ]
    batch = retriever.search_batch(reqs)
    for req, got in zip(reqs, batch):
        one = retriever.search(req.query, req.user_id, k=req.k, beam_size=req.beam_size)
        assert [h.item_id for h in got.items] == [h.item_id for h in one.items] and got.sids == one.sids
        np.testing.assert_allclose(got.sid_scores, one.sid_scores, atol=1e-4)
        assert len(got.sids) == req.beam_size


def test_known_user_personalises_unknown_user_does_not(retriever: Retriever, bundle: Bundle, tiny) -> None:
    user = known_user(tiny)
    anon = retriever.search("kettle", k=20, beam_size=20)
    mine = retriever.search("kettle", user_id=user, k=20, beam_size=20)
    stranger = retriever.search("kettle", user_id="u-never-seen", k=20, beam_size=20)
    assert mine.personalized and not anon.personalized and not stranger.personalized
    assert (mine.sids, mine.sid_scores) != (anon.sids, anon.sid_scores)  # the prompt carries the user
    assert stranger.sids == anon.sids and stranger.sid_scores == anon.sid_scores  # unknown user = anonymous
    ctx = retriever.contexts([user])[0]
    assert ctx is not None and ctx.recent_sids and all(tuple(s) in bundle.trie for s in ctx.recent_sids)
    no_store = Retriever(bundle, ServeConfig()).search("kettle", user_id=user, k=20, beam_size=20)
    assert not no_store.personalized and no_store.sids == anon.sids


@pytest.mark.parametrize(
    "req, message",
    [
        (SearchRequest(""), "non-empty"),
        (SearchRequest("   "), "non-empty"),
        (SearchRequest("x" * 201), "limit is 200"),
        (SearchRequest("a", beam_size=0), "beam_size"),
        (SearchRequest("a", beam_size=10_000), "beam_size"),
        (SearchRequest("a", k=0), "k must"),
        (SearchRequest("a", k=True), "k must"),
        (SearchRequest("a", k=2.5), "k must"),
        (SearchRequest(5), "non-empty"),
        (SearchRequest("a", user_id=7), "user_id"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(retriever: Retriever, req: SearchRequest, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        retriever.search_batch([req])


def test_defaults_come_from_config(bundle: Bundle) -> None:
    r = Retriever(bundle, dataclasses.replace(ServeConfig(), default_k=7, default_beam_size=3))
    res = r.search("kettle")
    assert len(res.sids) == 3 and len(res.items) <= 7
    body = res.to_dict()
    assert set(body) >= {"items", "sids", "bundle"} and set(body["items"][0]) == {"item_id", "title", "sid", "score"}


def test_load_from_store_tag(tiny, bundle: Bundle, tmp_path: Path) -> None:
    from genrecall.serving.bundle import save_to_store

    tag = save_to_store(bundle.path, name="retriever-test")
    r = Retriever.load(tag)
    assert r.version == tag and r.search("kettle", k=5).bundle == tag
