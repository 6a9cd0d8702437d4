"""The search page in a real browser: page weight and time to first result for one query.

    python benchmarks/bench_page.py --tiny                    # the tests' tiny bundle (what CI can build)
    python benchmarks/bench_page.py --bundle genrecall-bundle:<version> --loads 20 --out reports/bench_page.json

Starts one ``bentoml serve`` of bento/service.py on a free 127.0.0.1 port and drives headless Chromium
(Selenium + Debian's chromedriver, as tests/test_browser.py) against it:

- **page weight**: bytes of every response the page needs for one query, from the browser's Resource
  Timing: the HTML, CSS and JS (static, cacheable) and the API calls (``/bundle`` once, ``/search`` and
  ``/bm25`` per query), as served (BentoML does not compress them);
- **time to first result**: ``/?q=<query>`` opened with the browser cache disabled, from navigation start
  to the first rendered result (HTML, CSS, JS, ``/bundle``, then ``/search`` and ``/bm25`` in parallel,
  rendering); ``--loads`` times, over the bundle's example queries, after ``--warmup`` unmeasured loads;
- **typed query**: in an already loaded page, from pressing Search to the rendered result (``/search``
  and ``/bm25`` round trips + rendering).

Numbers depend on the machine and its load: quote them with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEIGHT_JS = """
const nav = performance.getEntriesByType('navigation')[0];
const rows = [{name: 'index.html', kind: 'static', bytes: nav.encodedBodySize, transfer: nav.transferSize}];
for (const r of performance.getEntriesByType('resource')) {
  const name = new URL(r.name).pathname.replace(/^\\//, '');
  rows.push({name, kind: r.initiatorType === 'fetch' ? 'api' : 'static',
             bytes: r.encodedBodySize, transfer: r.transferSize});
}
return rows;"""


def _stats(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=float)
    return {
        "n": int(a.size),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
    }


def _wait(driver: Any, *states: str, timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    body = lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")  # noqa: E731
    WebDriverWait(driver, timeout).until(lambda d: body(d) in states)
    return body(driver)


def measure(url: str, queries: list[str], *, loads: int, warmup: int, beam: int) -> dict[str, Any]:
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    from tests.browser_fixtures import chrome

    driver = chrome(1280, 900)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        first, weights = [], []
        for i in range(warmup + loads):
            q = queries[i % len(queries)]
            driver.get(f"{url}/?{urlencode({'q': q, 'beam': beam})}")
            if _wait(driver, "done", "error") != "done":
                raise RuntimeError(f"query {q!r}: {driver.find_element(By.ID, 'error').text}")
            if i >= warmup:
                first.append(driver.execute_script("return window.genrecall.firstResultMs"))
                weights.append(driver.execute_script(WEIGHT_JS))
        typed = []
        for i in range(loads):
            box = driver.find_element(By.ID, "query")
            box.clear()
            box.send_keys(queries[(i + 1) % len(queries)])
            driver.find_element(By.ID, "go").click()
            time.sleep(0.05)
            _wait(driver, "done", "error")
            typed.append(driver.execute_script("return window.genrecall.lastSearchMs"))
    finally:
        driver.quit()
    last = {w["name"]: w for w in weights[-1]}
    static = sum(w["bytes"] for w in last.values() if w["kind"] == "static")
    api = {
        n: int(np.median([next(x["bytes"] for x in ws if x["name"] == n) for ws in weights]))
        for n, w in last.items()
        if w["kind"] == "api"
    }
    return {
        "beam": beam,
        "files": {n: w["bytes"] for n, w in last.items()},
        "static_bytes": static,
        "api_bytes_median": api,
        "total_bytes_one_query": static + sum(api.values()),
        "first_result": _stats(first),
        "typed_query": _stats(typed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="", help="store tag or bundle directory (default: production)")
    ap.add_argument("--tiny", action="store_true", help="build and serve the tests' tiny bundle")
    ap.add_argument("--loads", type=int, default=10, help="measured page loads (and typed queries)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--beam", type=int, default=20, help="beam size of the measured query (serve default: 20)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()

    from genrecall.env import apply_defaults

    if args.tiny:  # an isolated BentoML home: the benchmark never touches the project's store
        os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bench-bentoml-")
    apply_defaults()
    from tests.serving_fixtures import serving

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if args.tiny:
        from tests.serving_fixtures import served_tiny_env, shared_tiny_pipeline

        env = served_tiny_env(shared_tiny_pipeline(), Path(tempfile.mkdtemp(prefix="bench-page-")))
    elif args.bundle:
        env["GENRECALL_BUNDLE"] = args.bundle
    log = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "serve.log"
    with serving(env, log) as url:
        import httpx

        info = httpx.post(f"{url}/bundle").json()
        queries = info["examples"]["queries"] or ["kettle", "running shoes", "hammer"]
        res = {
            "bundle": info["bundle"],
            "items": info["items"],
            "sids": info["sids"],
            "queries": queries,
            **measure(url, queries, loads=args.loads, warmup=args.warmup, beam=args.beam),
        }
    print(f"bundle {res['bundle']} ({res['items']} items, {res['sids']} SIDs), beam {res['beam']}, k 100")
    for name, size in res["files"].items():
        print(f"  {name:<18} {size / 1024:7.1f} KB")
    print(
        f"page weight, one query: {res['total_bytes_one_query'] / 1024:.1f} KB "
        f"(static {res['static_bytes'] / 1024:.1f} KB + API {sum(res['api_bytes_median'].values()) / 1024:.1f} KB)"
    )
    for key, label in (("first_result", "time to first result (cold load)"), ("typed_query", "typed query to result")):
        s = res[key]
        print(
            f"{label:<34} p50 {s['p50_ms']:6.0f} ms  p90 {s['p90_ms']:6.0f} ms  "
            f"(n={s['n']}, {s['min_ms']:.0f}-{s['max_ms']:.0f})"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
