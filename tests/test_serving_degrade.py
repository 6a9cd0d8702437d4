"""Degrade, don't fail: a Feast store that is gone or stalled at request time serves non-personalised recall
and says so. A real Feast store (a copy of the tiny pipeline's), made unavailable for real: its online
store's SQLite file removed, or locked by another connection."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import torch

from genrecall.serving.bundle import Bundle
from genrecall.serving.feature_guard import GuardedFeatures, UnavailableFeatures
from genrecall.serving.retriever import Retriever, SearchRequest, ServeConfig
from tests.serving_fixtures import known_user, make_bundle, shared_tiny_pipeline

torch.set_num_threads(1)


def test_a_store_that_did_not_open_degrades_every_lookup_with_its_reason() -> None:
    guard = GuardedFeatures(UnavailableFeatures("registry unreadable"), timeout_ms=100)
    assert guard.user_contexts(["u1", None]) == (None, "features unavailable: registry unreadable")
    assert GuardedFeatures(UnavailableFeatures("x"), timeout_ms=0).user_contexts(["u1"])[1] == "features unavailable: x"
    with pytest.raises(ValueError):
        GuardedFeatures(UnavailableFeatures("x"), timeout_ms=-1)
    assert UnavailableFeatures("x").available is False  # POST /bundle: "personalized": false


@pytest.fixture(scope="module")
def tiny():
    return shared_tiny_pipeline()


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory) -> Bundle:
    return Bundle.load(make_bundle(tiny, tmp_path_factory.mktemp("d") / "b"))


def store_copy(tiny, tmp_path: Path):
    """A FeatureClient on a private copy of the tiny Feast store, and the copy's data dir."""
    from genrecall.features.store import FeatureClient  # imports Feast (~10 s)

    data = Path(shutil.copytree(tiny.feast_data_dir, tmp_path / "feast"))
    return FeatureClient(tiny.feast_repo, data), data


def ask(r: Retriever, user: str | None) -> object:
    return r.serve_batch([SearchRequest("electric kettle", user, 10, 20)])[0]


@pytest.mark.slow
def test_a_missing_online_store_serves_unpersonalised_and_says_why(bundle: Bundle, tiny, tmp_path: Path) -> None:
    client, data = store_copy(tiny, tmp_path)
    (data / "online_store.db").unlink()  # gone before the first lookup
    r = Retriever(bundle, ServeConfig(), client)
    assert "no such table" in (r.warm_features() or "")
    user = known_user(tiny)
    mine, anon = r.serve_batch([SearchRequest("electric kettle", user, 10, 20), SearchRequest("electric kettle")])
    assert not mine.personalized and mine.degraded.startswith("features unavailable: OperationalError: no such table")
    assert mine.to_dict()["degraded"] == mine.degraded and mine.to_dict()["personalized"] is False
    assert anon.degraded is None and anon.to_dict()["degraded"] is None, "an anonymous request lost nothing"
    assert mine.sids == anon.sids, "the degraded request gets the plain query's recall"


@pytest.mark.slow
def test_a_locked_store_times_out_within_the_bound_then_recovers(bundle: Bundle, tiny, tmp_path: Path) -> None:
    client, data = store_copy(tiny, tmp_path)
    r = Retriever(bundle, ServeConfig(feature_timeout_ms=200), client)
    assert r.warm_features() is None
    user = known_user(tiny)
    assert ask(r, user).personalized
    lock = sqlite3.connect(data / "online_store.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database: reads wait (sqlite's own limit: 5 s)
    try:
        start = time.monotonic()
        slow = ask(r, user)
        assert time.monotonic() - start < 3, "the lookup bound, not sqlite's busy timeout, ended the wait"
        assert not slow.personalized and slow.degraded == "features unavailable: lookup timed out after 200 ms"
        stalled = ask(r, user)  # the abandoned lookup still runs: do not queue another behind it
        assert not stalled.personalized and "has not returned yet" in stalled.degraded
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    deadline = time.monotonic() + 15
    while (back := ask(r, user)).degraded is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert back.personalized and back.degraded is None, "lookups resume once the store answers again"
