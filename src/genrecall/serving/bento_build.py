"""A deployable Bento: the service, the genrecall wheel built from this checkout, and one bundle.

    result = build_bento()      # the production bundle, bento/bentofile.yaml
    result.tag                  # "genrecall:<version>": `bentoml serve <tag>`, `bentoml containerize <tag>`

``make bento`` / ``genrecall bento`` run it. Steps:

1. The bundle: the production pointer's tag, or a given tag, or a given bundle directory, which is
   imported into the BentoML model store first (``save_to_store``, verified). ``bentoml models list``
   shows it either way.
2. The genrecall wheel: ``pip wheel --no-deps --no-build-isolation --no-index`` over a copy of the
   checkout's ``pyproject.toml``, ``README.md`` and ``src/`` (a copy, so the build leaves no ``build/``
   or egg-info in the checkout; no isolation and no index, so it builds offline with the venv's
   setuptools).
3. A build context in a temporary directory: ``service.py``, the bentofile with ``python.wheels``
   set to that wheel, and ``params.yaml`` holding the workspace's ``serve`` settings (the request
   bounds and batching the Bento will serve with; its ``bundle`` key is dropped, the Bento pins one).
4. ``bentoml build <ctx> --arg bundle=<tag>``: the service reads the argument
   (``bentoml.use_arguments``) and declares the bundle as a model reference
   (``bentoml.models.BentoModel``), so the Bento lists it among its models, ``bentoml export`` and
   ``bentoml containerize`` carry it, and ``bentoml serve <bento tag>`` loads it from the Bento's
   model store. The Bento is labelled with the bundle's version.

The checkout's ``bento/`` directory is never written to: ``genrecall serve`` keeps serving the
production pointer from it, as before.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genrecall.config import load_params
from genrecall.serving.bundle import BUNDLE_NAME, BundleError, resolve, save_to_store

PROJECT_FILES = ("pyproject.toml", "README.md")  # what setuptools needs beside src/ to build the wheel
BENTO_ARG = "bundle"  # the build argument (`--arg bundle=<tag>`) bento/service.py reads


@dataclass(frozen=True)
class BentoBuild:
    """What ``build_bento`` made."""

    tag: str  # "genrecall:<version>" in the BentoML store
    bundle: str  # "genrecall-bundle:<version>": the model the Bento carries
    wheel: str  # the genrecall wheel's file name inside the Bento (env/python/wheels/)


def bundle_tag(source: str | Path | None = None) -> str:
    """The store tag of the bundle to ship: ``source`` (a tag, or a directory imported into the store
    first), else the production pointer. Raises ``BundleError`` when there is none."""
    if source is None:
        from genrecall.serving.gate import production_tag

        tag = production_tag()
        if not tag:
            raise BundleError("no production bundle: run `genrecall package` (or promote one), or name a bundle")
        return tag
    if Path(str(source)).is_dir():
        return save_to_store(source)
    return str(resolve(source)[1])  # a tag: must be in the store; "name" alone means its latest


def build_wheel(repo_root: str | Path, out_dir: str | Path) -> Path:
    """The genrecall wheel of the checkout at ``repo_root``, built offline into ``out_dir``."""
    repo, out = Path(repo_root), Path(out_dir)
    missing = [name for name in ("src", *PROJECT_FILES) if not (repo / name).exists()]
    if missing:
        raise FileNotFoundError(f"{repo.resolve()} is not a genrecall checkout (no {', '.join(missing)}): run it there")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genrecall-wheel-") as tmp:
        src = Path(tmp) / "genrecall"
        shutil.copytree(repo / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in PROJECT_FILES:
            shutil.copy2(repo / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        subprocess.run([*cmd, "-w", str(out), str(src)], check=True, cwd=tmp)
    wheels = sorted(out.glob("genrecall-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise RuntimeError(f"pip wheel wrote no genrecall wheel into {out}")
    return wheels[-1]


def build_context(ctx: Path, *, bentofile: Path, service: Path, wheel: Path, serve: dict[str, Any]) -> Path:
    """Write the Bento's build context into ``ctx``; returns its bentofile."""
    (ctx / "wheels").mkdir(parents=True, exist_ok=True)
    shutil.copy2(service, ctx / "service.py")
    shutil.copy2(wheel, ctx / "wheels" / wheel.name)
    spec = yaml.safe_load(bentofile.read_text()) or {}
    spec["python"] = {**(spec.get("python") or {}), "wheels": [f"wheels/{wheel.name}"]}
    spec["include"] = sorted({*(spec.get("include") or ["service.py"]), "service.py", "params.yaml"})
    (ctx / "params.yaml").write_text(yaml.safe_dump({"serve": {k: v for k, v in serve.items() if k != "bundle"}}))
    out = ctx / "bentofile.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def run_bentoml_build(ctx: Path, bentofile: Path, bundle: str, env: dict[str, str] | None = None) -> str:
    """``bentoml build`` of ``ctx`` with the bundle argument and label; returns the Bento's tag."""
    version = bundle.split(":", 1)[1]
    cmd = [sys.executable, "-m", "bentoml", "build", str(ctx), "-f", str(bentofile), "--output", "tag"]
    cmd += ["--arg", f"{BENTO_ARG}={bundle}", "--label", f"bundle={version}"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=ctx)
    found = re.search(r"__tag__:(\S+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"bentoml build failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return found.group(1)


def build_bento(
    bundle: str | Path | None = None,
    *,
    repo_root: str | Path = ".",
    bentofile: str | Path | None = None,
    params: dict[str, Any] | None = None,
) -> BentoBuild:
    """Build the deployable Bento (module docstring); ``bentofile`` defaults to ``bento/bentofile.yaml``."""
    repo = Path(repo_root).resolve()
    tag = bundle_tag(bundle)
    if not tag.startswith(f"{BUNDLE_NAME}:"):
        raise BundleError(f"{tag} is not a {BUNDLE_NAME} model")
    serve = (load_params(missing_ok=True) if params is None else params).get("serve") or {}
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    with tempfile.TemporaryDirectory(prefix="genrecall-bento-") as tmp:
        ctx = Path(tmp) / "ctx"
        wheel = build_wheel(repo, Path(tmp) / "dist")
        spec = build_context(
            ctx,
            bentofile=Path(bentofile) if bentofile else repo / "bento" / "bentofile.yaml",
            service=repo / "bento" / "service.py",
            wheel=wheel,
            serve=serve,
        )
        return BentoBuild(run_bentoml_build(ctx, spec, tag, env), tag, wheel.name)
