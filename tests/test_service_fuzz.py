"""Fuzzing the HTTP API: schemathesis against a real ``bentoml serve`` on 127.0.0.1, from the OpenAPI
document the server publishes (``/docs.json``), with every check schemathesis has (no 5xx, status
codes, content types, headers and bodies conform to the schema, bad input refused, good input
accepted, unsupported methods refused), on every operation, for a bounded time. Every 4xx body
must say what is wrong (``error``, and pydantic's field-by-field ``detail`` for a 400).

``FUZZ_SECONDS`` bounds the run (60 s here; docs/RELIABILITY.md has a longer run's figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.serving_fixtures import served_tiny_env, serving, shared_tiny_pipeline

pytestmark = pytest.mark.slow

FUZZ_SECONDS = int(os.environ.get("GENRECALL_FUZZ_SECONDS", "60"))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    with serving(served_tiny_env(shared_tiny_pipeline(), tmp), tmp / "serve.log") as url:
        yield url


def _responses(ndjson: Path) -> list[dict]:
    """Every response schemathesis received (from its NDJSON event log)."""
    out: list[dict] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "status_code" in node and ("body" in node or "content" in node or "headers" in node):
                out.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for line in ndjson.read_text().splitlines():
        walk(json.loads(line))
    return out


def _text(resp: dict) -> str:
    import base64

    body = resp.get("content") or resp.get("body") or ""
    if isinstance(body, dict):
        body = body.get("$base64") or ""
    try:
        return base64.b64decode(body).decode()
    except Exception:
        return str(body)


def test_schemathesis_finds_no_5xx_and_no_schema_violation(url: str, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(st),
        "run",
        f"{url}/docs.json",
        "--checks",
        "all",
        "--max-time",
        str(FUZZ_SECONDS),
        "--seed",
        "17",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--report",
        "ndjson",
        "--report-dir",
        str(tmp_path),
    ]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 300,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    responses = _responses(next(tmp_path.glob("*.ndjson")))
    codes = Counter(int(r["status_code"]) for r in responses)
    print(f"schemathesis: {sum(codes.values())} responses in {FUZZ_SECONDS} s, by status {dict(sorted(codes.items()))}")
    assert sum(codes.values()) >= 300, "a few hundred requests at least"
    assert not [c for c in codes if c >= 500], codes
    assert codes[200] > 0 and codes[400] > 0, "both accepted and refused bodies were exercised"
    for r in responses:
        if 400 <= int(r["status_code"]) < 500 and r["status_code"] != 405:
            text = _text(r)
            body = json.loads(text) if text.startswith("{") else {}
            assert body.get("error"), f"a {r['status_code']} must say what is wrong: {text[:300]}"
            if isinstance(body.get("detail"), list):
                assert all(d.get("msg") and "loc" in d for d in body["detail"]), text[:300]
