"""Integration: a real ``bentoml serve`` of bento/service.py on a free loopback port, over real HTTP.

The tiny pipeline is packaged and promoted in the test BentoML home; the server serves the production
bundle with user features from a real Feast store. A second server is pointed at a tampered bundle
and must refuse to start.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.serving_fixtures import (
    free_port,
    known_user,
    served_tiny_env,
    serving,
    shared_tiny_pipeline,
    start_server,
    stop,
    titled_items,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny():
    return shared_tiny_pipeline()


@pytest.fixture(scope="module")
def server_env(tiny, tmp_path_factory) -> dict[str, str]:
    return served_tiny_env(tiny, tmp_path_factory.mktemp("p"))


@pytest.fixture(scope="module")
def url(server_env, tmp_path_factory):
    with serving(server_env, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


def post(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/search", json=body, timeout=30)


def test_health_ready_and_bundle(url: str, server_env: dict[str, str]) -> None:
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    info = httpx.post(f"{url}/bundle").json()
    assert info["bundle"] == server_env["GENRECALL_EXPECTED_BUNDLE"] and info["personalized"] is True


def test_search_returns_the_items_own_cluster(url: str, tiny, server_env: dict[str, str]) -> None:
    rows = titled_items(tiny, n=20, seed=1)
    found = 0
    for row in rows.itertuples():
        r = post(url, {"query": row.title, "k": 100, "beam_size": 20})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["bundle"] == server_env["GENRECALL_EXPECTED_BUNDLE"]
        assert len(body["sids"]) == 20 and 0 < len(body["items"]) <= 100
        assert set(body["items"][0]) == {"item_id", "title", "sid", "score"}
        assert all(i["sid"] in body["sids"] and i["title"] for i in body["items"])
        found += "-".join(map(str, row.codes)) in body["sids"]
    assert found / len(rows) >= 0.3  # chance: 20 of 415 SIDs ~ 0.05


def test_known_user_changes_the_result(url: str, tiny) -> None:
    anon = post(url, {"query": "kettle", "user_id": None, "k": 10, "beam_size": 20}).json()
    mine = post(url, {"query": "kettle", "user_id": known_user(tiny), "k": 10, "beam_size": 20}).json()
    stranger = post(url, {"query": "kettle", "user_id": "u-unknown", "k": 10, "beam_size": 20}).json()
    assert mine["personalized"] and not anon["personalized"] and not stranger["personalized"]
    assert (mine["sids"], [i["score"] for i in mine["items"]]) != (anon["sids"], [i["score"] for i in anon["items"]])
    assert stranger["sids"] == anon["sids"]


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"query": ""}, "query", "at least 1 character"),
        ({"query": "   "}, "query", "non-space"),
        ({"query": "kettle " * 100}, "query", "at most 200"),
        ({"query": "kettle", "beam_size": 0}, "beam_size", "greater than or equal to 1"),
        ({"query": "kettle", "beam_size": 10_000}, "beam_size", "less than or equal to 200"),
        ({"query": "kettle", "k": 0}, "k", "greater than or equal to 1"),
        ({"query": "kettle", "k": "10"}, "k", "valid integer"),
        ({"query": 42}, "query", "valid string"),
        ({"query": "kettle", "user_id": 7}, "user_id", "valid string"),
        ({"query": "kettle", "colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"k": 5}, "query", "Field required"),
    ],
)
def test_bad_input_gets_400_that_says_what_is_wrong(url: str, body: dict, field: str, words: str) -> None:
    r = post(url, body)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert any(d["loc"][-1] == field and words in d["msg"] for d in detail), detail


def test_malformed_json_is_a_4xx(url: str) -> None:
    r = httpx.post(f"{url}/search", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500


def test_concurrent_requests_all_answer_as_sequential_ones_do(url: str, tiny) -> None:
    queries = [*list(titled_items(tiny, n=6, seed=2)["title"]), "kettle", "running shoes"]
    user = known_user(tiny)
    bodies = [
        {"query": q, "k": 30, "beam_size": b, "user_id": user if i % 2 else None}
        for i, q in enumerate(queries)
        for b in (20, 50, 100)
    ]  # mixed beams and users in one burst
    sequential = [post(url, body) for body in bodies]
    before = httpx.post(f"{url}/bundle").json()["batching"]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda body: post(url, body), bodies * 2))
    after = httpx.post(f"{url}/bundle").json()["batching"]
    assert all(r.status_code == 200 for r in sequential + concurrent), [
        r.text for r in sequential + concurrent if r.status_code != 200
    ][:2]
    for one, many in zip(sequential * 2, concurrent):  # batched or not, the same answer
        a, b = one.json(), many.json()
        assert a["sids"] == b["sids"] and [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]
        assert [i["score"] for i in a["items"]] == pytest.approx([i["score"] for i in b["items"]], abs=1e-4)
        assert b["personalized"] == a["personalized"]
    served = after["requests"] - before["requests"]
    assert served == len(concurrent) and after["shed"] == before["shed"]
    assert after["batches"] - before["batches"] < served  # concurrent requests shared beam searches


def test_tampered_bundle_refuses_to_start(server_env: dict[str, str], tmp_path: Path) -> None:
    import bentoml

    src = Path(bentoml.models.get(server_env["GENRECALL_EXPECTED_BUNDLE"]).path)
    bad = tmp_path / "tampered"
    shutil.copytree(src, bad)
    (bad / "index" / "index.json").write_text("{}")
    log = tmp_path / "serve.log"
    port = free_port()
    proc = start_server(port, {**server_env, "GENRECALL_BUNDLE": str(bad)}, log)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and "failed verification" not in log.read_text():
            time.sleep(1)
        assert "hash mismatch index/index.json" in log.read_text()
        r = None
        with contextlib.suppress(httpx.HTTPError):  # not serving at all is a refusal too
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert r is None or r.status_code != 200
    finally:
        stop(proc)


def test_the_search_page_and_its_assets_are_served_by_the_service(url: str) -> None:
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="search-form"' in page.text and '"static/search.js"' in page.text
    assert httpx.get(f"{url}/static/search.js").status_code == 200
    assert httpx.get(f"{url}/static/search.css").status_code == 200
    assert httpx.get(f"{url}/docs").status_code == 200, "BentoML's Swagger UI moved to /docs"
    assert httpx.get(f"{url}/healthz").status_code == 200, "the page's mount at / shadows no API route"


def test_openapi_documents_bm25_beside_search(url: str) -> None:
    spec = httpx.get(f"{url}/docs.json").json()
    assert {"/search", "/bm25", "/bundle"} <= set(spec["paths"])
    body = spec["paths"]["/bm25"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"query", "k"} and body["required"] == ["query"]
    assert body["additionalProperties"] is False and body["properties"]["k"]["maximum"] == 1000


def test_bm25_answers_from_the_bundles_titles(url: str, tiny, server_env: dict[str, str]) -> None:
    for row in titled_items(tiny, n=5, seed=3).itertuples():
        r = httpx.post(f"{url}/bm25", json={"query": row.title, "k": 10}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["bundle"] == server_env["GENRECALL_EXPECTED_BUNDLE"] and 0 < len(body["items"]) <= 10
        assert set(body["items"][0]) == {"item_id", "title", "score"}
        assert row.item_id in [i["item_id"] for i in body["items"]], "an item's own title finds it"
    for bad, field in (
        ({"query": "  "}, "query"),
        ({"query": "kettle", "k": 0}, "k"),
        ({"query": "kettle", "beam_size": 5}, "beam_size"),
    ):
        r = httpx.post(f"{url}/bm25", json=bad)
        assert r.status_code == 400 and any(d["loc"][-1] == field for d in r.json()["detail"]), r.text


def test_bundle_tells_the_page_what_it_serves(url: str) -> None:
    info = httpx.post(f"{url}/bundle").json()
    assert info["promoted_at"] and info["data_version"] and info["bm25"] is True
    assert info["limits"]["max_beam_size"] == 200 and info["examples"]["queries"]
    users = info["examples"]["users"]
    assert users, "the bundle offers known users"
    r = post(url, {"query": info["examples"]["queries"][0], "user_id": users[0], "k": 10, "beam_size": 20})
    assert r.status_code == 200 and r.json()["personalized"], "an offered user is known to the feature store"


def test_two_workers_each_load_the_model_and_answer_alike(url: str, tiny, server_env, tmp_path: Path) -> None:
    """``serve.workers: 2``: two worker processes start (each logs its own start-up) and, under concurrent
    load spread over both, every answer equals the one-worker server's."""
    params = tmp_path / "params.yaml"
    params.write_text("serve: {workers: 2}\n")
    bodies = [{"query": q, "k": 20, "beam_size": 20} for q in titled_items(tiny, n=8, seed=5)["title"]]
    expected = [post(url, body).json() for body in bodies]
    log = tmp_path / "serve.log"
    with serving({**server_env, "GENRECALL_PARAMS": str(params)}, log) as url2:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda body: post(url2, body), bodies * 3))
        deadline = time.time() + 60  # the second worker may still be loading when the first is ready
        while time.time() < deadline and log.read_text().count("Service genrecall initialized") < 2:
            time.sleep(1)
        assert log.read_text().count("Service genrecall initialized") == 2
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200][:2]
    for one, many in zip(expected * 3, answers):
        assert many.json()["sids"] == one["sids"]
        assert [i["item_id"] for i in many.json()["items"]] == [i["item_id"] for i in one["items"]]
