"""The package rule of DESIGN.md, read from the source: who imports whom among the four packages.

An AST walk over ``rag_app/``, ``indexes/``, ``finetune/`` and ``eval/`` collects every import:
module level, inside functions, under ``if TYPE_CHECKING:``, relative ones, and
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name. ``rag_app`` reaches
the other three only through the root CLI's lazy command map (:attr:`rag_app.cli._Group.LAZY`,
names as strings, imported when a command is invoked), and no package cycle exists.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rag_app", "indexes", "finetune", "eval")
ALLOWED = {
    "rag_app": set(),
    "indexes": {"rag_app"},
    "finetune": {"rag_app"},
    "eval": {"rag_app", "indexes", "finetune"},
}
"""Which packages each may import (DESIGN.md, "Packages")."""


@dataclass(frozen=True)
class Edge:
    """One import of ``target`` (a dotted module name) at ``file:line``."""

    source: str
    target: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """Every module name ``path`` (the module ``module``) imports, with its line."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield _resolve(module, is_package, node.level, node.module), node.lineno
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            name = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
            if called in {"import_module", "__import__"} and isinstance(name, str):
                yield name, node.lineno


def _edges() -> list[Edge]:
    edges = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = _module_name(path)
            for target, line in _imports(path, source):
                top = target.split(".")[0]
                if top in PACKAGES and top != package:
                    edges.append(Edge(source, target, str(path.relative_to(ROOT)), line))
    return edges


def _package_graph(edges: list[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for edge in edges:
        graph[edge.source.split(".")[0]].add(edge.target.split(".")[0])
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle, each once, starting at its smallest package name."""
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                found.append([*path, start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Guards the guard: function-level, TYPE_CHECKING, relative and importlib imports all count."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from eval.types import Row\n"
        "def f():\n    import finetune.registry\n"
        "    importlib.import_module('indexes.ingest')\n"
        "from ..store import docstore\n"
    )
    found = {name for name, _ in _imports(source, "rag_app.server.probe")}
    assert {"eval.types", "finetune.registry", "indexes.ingest", "rag_app.store"} <= found


def test_rag_app_imports_only_third_party_code() -> None:
    """``rag_app`` never imports ``indexes``, ``finetune`` or ``eval``: not lazily, not for types."""
    wrong = [str(e) for e in _edges() if e.source.split(".")[0] == "rag_app"]
    assert not wrong, "rag_app imports another package:\n" + "\n".join(wrong)


def test_packages_import_only_what_design_allows() -> None:
    wrong = [str(e) for e in _edges() if e.target.split(".")[0] not in ALLOWED[e.source.split(".")[0]]]
    assert not wrong, "imports DESIGN.md does not allow:\n" + "\n".join(wrong)


def test_no_package_cycles() -> None:
    edges = _edges()
    cycles = _cycles(_package_graph(edges))
    detail = []
    for cycle in cycles:
        for a, b in itertools.pairwise(cycle):
            detail += [str(e) for e in edges if e.source.split(".")[0] == a and e.target.split(".")[0] == b]
    assert not cycles, f"package cycles {[' -> '.join(c) for c in cycles]}:\n" + "\n".join(detail)


def test_the_lazy_command_map_is_the_only_way_in() -> None:
    """The root CLI names the other packages' groups as strings; each names a real click group."""
    from rag_app.cli import _Group

    assert _Group.LAZY, "the lazy command map is empty"
    for command, (module, attr) in _Group.LAZY.items():
        assert module.split(".")[0] in {"indexes", "finetune", "eval"}, (command, module)
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        assert path.is_file(), f"{command}: {module} has no file {path}"
        defined = {
            n.name
            for n in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert attr in defined, f"{command}: {module} defines no {attr}"
