"""The search page's server side, in process: BM25 over a bundle's titles, the example users and queries
a bundle carries, the promotion date, and the static page app. The page itself runs in a real browser
in test_browser.py; the service around it in test_service_http.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from genrecall.data.schema import REQUESTS, write_table
from genrecall.serving.bundle import ItemTable
from genrecall.serving.gate import ProductionPointer
from genrecall.serving.lexical import TitleBM25
from genrecall.serving.page import PAGE_FILES, page_app, promotion_date
from genrecall.serving.showcase import Showcase, showcase

TITLES = ["Red Electric Kettle 1.7L", "Steel Kettle", "Running Shoes Blue", "Claw Hammer 16oz", "Red Running Shoes"]


@pytest.fixture()
def items() -> ItemTable:
    n = len(TITLES)
    return ItemTable(
        np.arange(10, 10 + n, dtype=np.int64),
        np.array(TITLES, dtype=object),
        np.linspace(0.1, 0.5, n),
        np.zeros(n, dtype=np.int64),
    )


def test_bm25_ranks_the_bundles_titles(items: ItemTable) -> None:
    bm25 = TitleBM25(items, "b:1")
    res = bm25.search("red kettle", k=10)
    ids = [h.item_id for h in res.items]
    assert ids[0] == 10 and set(ids) == {10, 11, 14}, "both words, then one of them; no shared word: not returned"
    assert next(h.title for h in res.items) == TITLES[0] and res.items[0].score > res.items[1].score > 0
    body = res.to_dict()
    assert body["bundle"] == "b:1" and set(body["items"][0]) == {"item_id", "title", "score"} and body["ms"] >= 0
    assert bm25.search("red kettle", k=1).items[0].item_id == 10
    assert bm25.search("zzz", k=5).items == [] and len(bm25) == len(TITLES)


def _log(path: Path) -> None:
    rows = [
        ("u1", "kettle", [1]),
        ("u1", "kettle", [2]),
        ("u2", "kettle", [3]),
        ("u2", "shoes", []),
        ("u3", "hammer", [4]),
        ("u3", "hammer", [5]),
        ("u3", "shoes", [6]),
        (None, "shoes", [7]),
        (None, "  ", [8]),
        ("u4", "lamp", []),
    ]
    df = pd.DataFrame(
        {
            "request_id": np.arange(len(rows), dtype=np.int64),
            "ts": pd.Timestamp("2026-01-01", tz="UTC"),
            "user_id": [r[0] for r in rows],
            "query": [r[1] for r in rows],
            "query_kind": "exact",
            "exposed": [r[2] for r in rows],
            "clicked": [r[2] for r in rows],
            "purchased": [[] for _ in rows],
        }
    )
    write_table(df, REQUESTS, path)


def test_showcase_offers_users_with_clicks_and_frequent_clicked_queries(tmp_path: Path) -> None:
    _log(tmp_path)
    s = showcase(tmp_path, users=2, queries=3)
    assert s.users == ["u3", "u1"], "most clicked requests first, ties by id; u4 never clicked"
    assert s.queries == ["kettle", "hammer", "shoes"], "blank queries and queries without a click are left out"
    assert Showcase.from_dict(s.to_dict()) == s and showcase(tmp_path / "none") == Showcase()


def test_promotion_date_comes_from_the_pointers_event_log(tmp_path: Path) -> None:
    from genrecall.env import apply_defaults

    apply_defaults(tmp_path)
    pointer = ProductionPointer("page-test")
    pointer.set("page-test:a", reason="first")
    pointer.set("page-test:b", reason="second")
    first = pointer.promoted_at("page-test:a")
    assert first is not None and pointer.promoted_at("page-test:b") >= first
    assert pointer.promoted_at("page-test:never") is None
    pointer.rollback()
    assert pointer.promoted_at("page-test:a") >= pointer.promoted_at("page-test:b"), "a rollback re-promotes"
    assert promotion_date("page-test:b") == pointer.promoted_at("page-test:b")
    assert promotion_date(None) is None and promotion_date("/a/bundle/dir") is None


def test_page_app_serves_the_page_and_its_assets() -> None:
    from starlette.testclient import TestClient

    client = TestClient(page_app())
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in PAGE_FILES[1:]:
        assert f'"static/{asset}"' in page.text, "relative URLs: the page works under any host, port or prefix"
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/static/nothing.js").status_code == 404
    js = client.get("/static/search.js").text
    assert '"search"' in js and '"bm25"' in js and '"bundle"' in js and "innerHTML" not in js
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower(), "BentoML's Swagger UI moved from / to /docs"


def test_bundle_info_carries_what_the_page_needs(tmp_path: Path) -> None:
    from genrecall.serving.page import bundle_info
    from genrecall.serving.retriever import ServeConfig

    class Stats:
        batches = requests = largest = shed = 0

    class Manifest:
        created_at, data_version, params_hash, items, sids = "2026-01-01", "dvc:abc", "h", 5, 3

    class FakeBundle:
        manifest = Manifest()
        examples: ClassVar[dict[str, list[str]]] = {"users": ["u1"], "queries": ["kettle"]}

    class FakeRetriever:
        version, bundle, features = "b:1", FakeBundle(), None

    info = bundle_info(FakeRetriever(), batching=Stats(), lexical=True, promoted_at="2026-01-02", cfg=ServeConfig())
    assert info["promoted_at"] == "2026-01-02" and info["data_version"] == "dvc:abc" and info["bm25"] is True
    assert info["examples"] == {"users": ["u1"], "queries": ["kettle"]}
    assert info["limits"]["max_beam_size"] == ServeConfig().max_beam_size
    json.dumps(info)
