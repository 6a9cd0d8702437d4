"""The house rules of issue #19 that ruff and mypy do not check, measured on the code as committed.

- no function in ``src/`` longer than 80 lines (split into named steps instead);
- no import circle between genrecall's modules (module-level imports, ``TYPE_CHECKING`` blocks
  included: a circle in the types is a circle in the design; a function-level import is a deliberate
  late binding and is allowed);
- every ``# fmt: skip`` says why;
- tests import the project's own modules plainly: ``pytest.importorskip("genrecall...")`` would turn a
  broken import into a skip.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted((SRC / "genrecall").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _top_level_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """genrecall modules ``name`` imports in its module body (try/if blocks and TYPE_CHECKING included)."""
    found: set[str] = set()
    package = name if (SRC / Path(*name.split(".")) / "__init__.py").exists() else name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    found.add(target if target in known else base)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return {m for m in found if m in known and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


def test_no_import_circles_between_genrecall_modules() -> None:
    modules = _modules()
    known = set(modules)
    # a package importing its own submodules (re-exports in __init__) is not a circle of design
    graph = {
        name: {m for m in _top_level_imports(name, tree, known) if not m.startswith(name + ".")}
        for name, tree in modules.items()
    }
    assert _cycles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_in_src_is_longer_than_80_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_every_fmt_skip_says_why() -> None:
    bare = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("src", "tests", "flows", "bento", "benchmarks", "feature_repo")
        for path in sorted((ROOT / top).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"#\s*fmt:\s*skip\s*$", line)
    ]
    assert bare == []


def test_tests_import_the_projects_own_modules_plainly() -> None:
    needle = "importorskip(" + '"genrecall'
    here = Path(__file__).name  # this file names the pattern it looks for
    skipping = [p.name for p in sorted((ROOT / "tests").rglob("*.py")) if p.name != here and needle in p.read_text()]
    assert skipping == []
