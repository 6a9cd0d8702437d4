"""dvc.yaml against the code, statically (no DVC run): cheap checks for what makes `dvc repro` stop.

- every ``params:`` key of every stage resolves in params.yaml (DVC refuses a missing one);
- every ``deps:`` path exists in the repo (DVC refuses a missing dependency);
- every ``cmd`` is a ``genrecall`` command whose options the CLI accepts;
- the params namespaces a stage's command reads (``p.get("ns")`` in cli.py) are the ones it declares.

The slow test ``test_dvc_repro.py`` runs the committed pipeline itself.
"""

from __future__ import annotations

import ast
import shlex
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
STAGES: dict[str, dict[str, Any]] = DVC_YAML["stages"]
DEFAULT_PARAMS_FILE = "params.yaml"


def stage_params(stage: dict[str, Any]) -> list[tuple[str, str]]:
    """(params file, dotted key) for each ``params:`` entry (``- key`` or ``- file.yaml: [keys]``)."""
    out: list[tuple[str, str]] = []
    for entry in stage.get("params", []):
        if isinstance(entry, str):
            out.append((DEFAULT_PARAMS_FILE, entry))
        else:
            out.extend((file, key) for file, keys in entry.items() for key in keys or [])
    return out


def resolve(params: dict[str, Any], dotted: str) -> bool:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _path(entry: str | dict[str, Any]) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


@pytest.mark.parametrize("name", list(STAGES))
def test_every_params_key_resolves(name: str) -> None:
    keys = stage_params(STAGES[name])
    assert keys, f"stage {name} declares no params"
    for file, key in keys:
        data = yaml.safe_load((REPO_ROOT / file).read_text()) or {}
        assert resolve(data, key), f"stage {name}: param {key!r} is not in {file}"


@pytest.mark.parametrize("name", list(STAGES))
def test_every_dep_exists_or_is_an_earlier_stage_output(name: str) -> None:
    produced: set[str] = set()
    for other_name, other in STAGES.items():
        if other_name == name:
            break
        for kind in ("outs", "metrics", "plots"):
            produced.update(_path(o) for o in other.get(kind, []))
    for dep in STAGES[name].get("deps", []):
        if dep in produced:
            continue
        assert (REPO_ROOT / dep).exists(), f"stage {name}: dep {dep} neither exists nor is an earlier stage's output"


def _cli_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse((REPO_ROOT / "src" / "genrecall" / "cli.py").read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _get_key(node: ast.AST) -> str | None:
    """``"ns"`` when ``node`` is a ``<x>.get("ns", ...)`` call."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def namespaces_read(fn: ast.FunctionDef) -> set[str]:
    """The top-level params namespaces a CLI command reads: keys of ``p.get("ns")`` calls whose
    receiver is not itself a ``.get`` (``(p.get("generate") or {}).get("preset")`` reads ``generate``)."""
    out = set()
    for node in ast.walk(fn):
        key = _get_key(node)
        if key is None:
            continue
        receiver = node.func.value  # type: ignore[attr-defined]
        if isinstance(receiver, ast.BoolOp):
            receiver = receiver.values[0]
        if _get_key(receiver) is None:
            out.add(key)
    return out


@pytest.mark.parametrize("name", list(STAGES))
def test_cmd_is_a_valid_genrecall_command_reading_its_declared_params(name: str) -> None:
    import typer

    from genrecall.cli import app

    argv = shlex.split(STAGES[name]["cmd"])
    assert argv[0] == "genrecall", f"stage {name}: cmd must be a genrecall command, not {argv[0]!r}"
    group = typer.main.get_command(app)  # typer's own (vendored) click group
    with group.make_context("genrecall", argv[1:]) as ctx:
        sub_name, sub, rest = group.resolve_command(ctx, argv[1:])  # type: ignore[attr-defined]
        assert sub is not None, f"stage {name}: no genrecall command {argv[1]!r}"
        sub.make_context(sub_name or "", list(rest), parent=ctx)  # raises on an unknown option or a bad value
    read = namespaces_read(_cli_functions()[sub.callback.__name__])  # type: ignore[union-attr]
    declared = {key.split(".")[0] for file, key in stage_params(STAGES[name]) if file == DEFAULT_PARAMS_FILE}
    assert read == declared, (
        f"stage {name}: `genrecall {sub_name}` reads params namespaces {sorted(read)}, "
        f"dvc.yaml declares {sorted(declared)}"
    )
