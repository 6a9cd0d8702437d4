"""A deployable Bento, end to end: ``build_bento`` (what ``make bento`` runs) builds it from the tests' tiny
bundle; it is exported and imported into a fresh BentoML home, so nothing but the Bento provides the
bundle; and ``bentoml serve <tag>`` runs it from a fresh venv in which genrecall exists only as the
Bento's own wheel, over real HTTP.

The fresh venv is made offline: ``python -m venv --without-pip``, then a ``.pth`` file makes the
shared venv's third-party packages visible (a directory of links to its site-packages, genrecall's
own entries left out), then ``pip install --no-index`` of the Bento's wheel and of the Bento's
``requirements.txt`` (all must already be satisfied: nothing can download) and ``pip check``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.serving_fixtures import free_port, known_user, make_bundle, shared_tiny_pipeline, stop, titled_items

pytestmark = pytest.mark.slow

SITE = Path(sysconfig.get_paths()["purelib"])  # the shared venv's site-packages: the third-party packages
OWN = ("genrecall", "__editable__.genrecall")  # its entries that are genrecall itself: not visible in the fresh venv


@pytest.fixture(scope="module")
def tiny():
    return shared_tiny_pipeline()


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    from genrecall.serving.bento_build import build_bento

    bundle = make_bundle(tiny, tmp_path_factory.mktemp("bento") / "bundle")
    return build_bento(bundle, repo_root=REPO_ROOT, params={"serve": {"default_k": 7, "bundle": "ignored"}})


def clean_env(**extra: str) -> dict[str, str]:
    """An environment with nothing of this checkout in it (no PYTHONPATH, no GENRECALL_*)."""
    keep = {k: os.environ[k] for k in ("HOME", "TMPDIR", "LANG") if k in os.environ}
    return {
        **keep,
        "PATH": "/usr/bin:/bin",
        "BENTOML_DO_NOT_TRACK": "True",
        "OMP_NUM_THREADS": "1",
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **extra,
    }


def fresh_venv(root: Path) -> Path:
    """A new venv whose only view of third-party packages is a .pth into the shared venv; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    deps = root / "deps"
    deps.mkdir()
    for entry in SITE.iterdir():
        if not entry.name.startswith(OWN):
            (deps / entry.name).symlink_to(entry)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (root / "venv" / "lib" / py / "site-packages" / "_shared_deps.pth").write_text(
        f"import site; site.addsitedir({str(deps)!r})\n"
    )
    return root / "venv" / "bin" / "python"


def run(python: Path, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([str(python), *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{args}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def test_the_bento_carries_the_wheel_the_bundle_model_and_the_serve_settings(built) -> None:
    import bentoml

    bento = bentoml.get(built.tag)
    assert [str(m.tag) for s in bento.info.services for m in s.models] == [built.bundle]
    assert built.bundle in [str(m.tag) for m in bentoml.models.list()], "`bentoml models list` shows the bundle"
    assert bento.info.args == {"bundle": built.bundle}
    assert bento.info.labels["bundle"] == built.bundle.split(":", 1)[1]
    names = zipfile.ZipFile(bento.path_of(f"env/python/wheels/{built.wheel}")).namelist()
    assert {"genrecall/serving/retriever.py", "genrecall/serving/static/search.js"} <= set(names)
    assert "torch==2.13.0" in Path(bento.path_of("env/python/requirements.txt")).read_text().splitlines()
    assert Path(bento.path_of("src/params.yaml")).read_text() == "serve:\n  default_k: 7\n"  # pinned: no bundle key


def test_the_built_bento_serves_from_a_fresh_venv_and_home(built, tiny, tmp_path: Path) -> None:
    import bentoml

    exported = bentoml.export_bento(built.tag, str(tmp_path / "genrecall.bento"))
    python = fresh_venv(tmp_path)
    home = tmp_path / "home"
    env = clean_env(BENTOML_HOME=str(home))
    run(python, "-m", "bentoml", "import", exported, env=env)
    name, version = built.tag.split(":")
    bento_dir = home / "bentos" / name / version
    run(python, "-m", "pip", "install", "--no-index", str(bento_dir / "env/python/wheels" / built.wheel), env=env)
    satisfied = run(
        python, "-m", "pip", "install", "--no-index", "-r", str(bento_dir / "env/python/requirements.txt"), env=env
    )
    assert "Requirement already satisfied: torch==2.13.0" in satisfied
    run(python, "-m", "pip", "check", env=env)
    where = run(python, "-c", "import genrecall; print(genrecall.__file__)", env=env).strip()
    assert where.startswith(str(tmp_path / "venv")), f"genrecall must come from the Bento's wheel, not {where}"

    broken = Path(shutil.copytree(tiny.feast_data_dir, tmp_path / "feast"))
    (broken / "online_store.db").unlink()  # a Feast store whose online store is gone: degrade, don't fail
    port, log = free_port(), tmp_path / "serve.log"
    serve_env = {**env, "GENRECALL_FEAST_REPO": str(tiny.feast_repo), "GENRECALL_FEAST_DATA": str(broken)}
    cmd = [str(python), "-m", "bentoml", "serve", built.tag, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=serve_env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            with bentoml.SyncHTTPClient(url, server_ready_timeout=120):
                pass
        except Exception:
            raise AssertionError(f"the Bento did not start:\n{log.read_text()[-3000:]}") from None
        check_contract(url, built.bundle, titled_items(tiny, n=1, seed=4)["title"][0], known_user(tiny))
    finally:
        stop(proc)
    assert not (bento_dir / "src" / ".state").exists(), "serving wrote workspace state into the Bento"


def check_contract(url: str, bundle: str, title: str, user: str) -> None:
    """The HTTP contract, on the served Bento: ready, its bundle, hits, a 400, a degraded user lookup."""
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.post(f"{url}/bundle").json()["bundle"] == bundle
    anon = httpx.post(f"{url}/search", json={"query": title, "beam_size": 20}, timeout=30)
    assert anon.status_code == 200, anon.text
    body = anon.json()
    assert body["bundle"] == bundle and 0 < len(body["items"]) <= 7, "the Bento serves with its own serve settings"
    assert body["personalized"] is False and body["degraded"] is None
    mine = httpx.post(f"{url}/search", json={"query": title, "beam_size": 20, "user_id": user}, timeout=30)
    assert mine.status_code == 200, mine.text
    assert mine.json()["personalized"] is False and mine.json()["degraded"].startswith("features unavailable: ")
    assert mine.json()["sids"] == body["sids"], "a degraded request gets the non-personalised recall"
    assert httpx.post(f"{url}/search", json={"query": ""}).status_code == 400
