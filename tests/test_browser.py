"""In a real browser (headless Chromium via Selenium): the search page served by a real ``bentoml serve``,
and the HTML report opened from disk.

- the page: type a query, pick a known user and a beam size, search; SID clusters with their items,
  titles and scores render, BM25 fills its column, the footer names the bundle, its data version and
  its promotion date; a bad input shows the API's 400 message;
- the report: every chart is drawn (an SVG with a real size and shapes) and the file loads nothing.

Without Chromium these tests are skipped with the command that installs it (tests/browser_fixtures.py).
Screenshots: ``GENRECALL_SCREENSHOTS=docs/img pytest tests/test_browser.py`` refreshes the docs' ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.browser_fixtures import INSTALL_HINT, chrome, find_browser, save_screenshot, screenshot_dir
from tests.serving_fixtures import served_tiny_env, serving, shared_tiny_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_browser() is None, reason=INSTALL_HINT)]
pytest.importorskip("selenium", reason="selenium is missing: pip install -e '.[dev]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SID = re.compile(r"^\d+(-\d+)+$")


@pytest.fixture(scope="module")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return served_tiny_env(shared_tiny_pipeline(), tmp_path_factory.mktemp("p"))


@pytest.fixture(scope="module")
def url(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    with serving(server_env, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    driver = chrome(1280, 900)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


def _state(driver, *states: str, timeout: float = 60) -> str:
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in states
    )
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def _fill(driver, element_id: str, text: str) -> None:
    box = driver.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(text)


def _open(driver, url: str) -> dict:
    driver.get(f"{url}/")
    _state(driver, "ready")
    return httpx.post(f"{url}/bundle").json()


def test_a_typed_query_renders_sid_clusters_their_items_and_bm25(
    browser, url: str, server_env: dict, shots: Path
) -> None:
    info = _open(browser, url)
    query, user = info["examples"]["queries"][2], info["examples"]["users"][0]
    _fill(browser, "query", query)
    _fill(browser, "user", user)
    _fill(browser, "beam", "20")
    browser.find_element(By.ID, "go").click()
    assert _state(browser, "done", "error") == "done", browser.find_element(By.ID, "error").text

    clusters = browser.find_elements(By.CSS_SELECTOR, "#clusters .cluster")
    assert clusters, "at least one SID cluster"
    shown = []
    for card in clusters:
        sid = card.find_element(By.CSS_SELECTOR, ".sid").text
        assert SID.match(sid) and card.get_attribute("data-sid") == sid
        items = card.find_elements(By.CSS_SELECTOR, ".item")
        assert items and all(i.find_element(By.CSS_SELECTOR, ".title").text.strip() for i in items)
        assert all(float(i.find_element(By.CSS_SELECTOR, ".score").text) <= 0 for i in items)  # log-probabilities
        shown.append(sid)
    api = httpx.post(f"{url}/search", json={"query": query, "user_id": user, "k": 100, "beam_size": 20}).json()
    assert shown == list(dict.fromkeys(i["sid"] for i in api["items"])), "the API's clusters, in beam order"
    stats = browser.find_element(By.ID, "gen-stats").text
    assert re.search(r"20 SIDs · \d+ items · \d+ ms · personalised", stats), stats
    assert browser.find_elements(By.CSS_SELECTOR, "#bm25-items .item .title")
    assert "ms" in browser.find_element(By.ID, "bm25-stats").text

    assert browser.find_element(By.ID, "bundle").text == server_env["GENRECALL_EXPECTED_BUNDLE"]
    assert browser.find_element(By.ID, "data-version").text == info["data_version"]
    assert re.match(r"\d{4}-\d{2}-\d{2}T", browser.find_element(By.ID, "promoted").text)
    assert browser.execute_script("return window.genrecall.firstResultMs") > 0
    save_screenshot(browser, shots / "search-page.png", height=900)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("beam", "500", "beam_size: Input should be less than or equal to 200"),
        ("query", "   ", "query: Value error, query must contain a non-space character"),
    ],
)
def test_a_bad_input_shows_the_apis_message(browser, url: str, shots: Path, field: str, value: str, words: str) -> None:
    _open(browser, url)
    _fill(browser, "query", "kettle")
    _fill(browser, field, value)
    browser.find_element(By.ID, "go").click()
    assert _state(browser, "error", "done") == "error"
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "400" in error.text and words in error.text, error.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#clusters .cluster"), "no stale results beside the error"
    if field == "beam":
        save_screenshot(browser, shots / "search-error.png", height=440)


def test_a_query_in_the_url_runs_on_load(browser, url: str) -> None:
    browser.get(f"{url}/?q=kettle&beam=5")
    assert _state(browser, "done", "error") == "done"
    assert 0 < len(browser.find_elements(By.CSS_SELECTOR, "#clusters .cluster")) <= 5
    assert browser.find_element(By.ID, "query").get_attribute("value") == "kettle"


def test_the_reports_charts_are_drawn_from_a_file_with_no_network(browser, tmp_path: Path, shots: Path) -> None:
    from genrecall.eval.report_html import write_report
    from tests.report_fixtures import write_report_inputs

    root = write_report_inputs(tmp_path / "ws")
    report = write_report(
        root / "reports", root / "reports/report.html", sid_dir=root / "data/sid", daily_dir=root / "daily"
    )
    browser.set_window_size(1100, 900)
    browser.get_log("browser")  # drop what the page tests logged (their 400s)
    browser.get(report.path.resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    drawn = browser.execute_script("""
        return [...document.querySelectorAll('figure.chart')].map(f => {
            const svg = f.querySelector('svg'), box = svg.getBoundingClientRect();
            return {name: f.dataset.chart, w: box.width, h: box.height,
                    shapes: svg.querySelectorAll('path, rect, use').length,
                    texts: [...svg.querySelectorAll('text')].map(t => t.textContent)};
        });""")
    assert [c["name"] for c in drawn] == report.charts and len(drawn) == 8
    for chart in drawn:
        assert chart["w"] > 300 and chart["h"] > 150 and chart["shapes"] > 10, chart["name"]
    items = next(c for c in drawn if c["name"] == "items-at-1000")
    assert {"bm25", "dense", "cq_sid", "rq_vae"} <= set(items["texts"])
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0, "nothing fetched"
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    save_screenshot(browser, shots / "report.png", height=1500)
    browser.set_window_size(1280, 900)
