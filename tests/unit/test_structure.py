"""The size and shape rules of the code base (issue 10), checked so they cannot drift back:
no import circle inside a package, no class over 30 methods and no function over 60 lines
in `src/` unless a comment right above it says why it is long."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGES = ("cli", "client", "gateway", "schema", "shared", "tui", "workers")
MAX_METHODS = 30
MAX_LINES = 60


def _cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """The import circles (strongly connected modules) among `package`'s own modules."""
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    edges = {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            circle = []
            while True:
                member = stack.pop()
                circle.append(member)
                if member == module:
                    break
            if len(circle) > 1:
                circles.append(sorted(circle))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle_inside_a_package():
    """Imports that run (not those under `if TYPE_CHECKING:`) never loop back inside one of
    the layers: each module of `tui/`, `gateway/`, ... can be read and changed bottom-up."""
    graph = grimp.build_graph("gatewaytui", exclude_type_checking_imports=True, cache_dir=None)
    circles = {p: _cycles(graph, f"gatewaytui.{p}") for p in PACKAGES}
    assert {p: c for p, c in circles.items() if c} == {}


def test_no_import_circle_even_in_type_annotations():
    """The same with the imports under `if TYPE_CHECKING:` (the panel's layers contract
    checks those too): a circle of annotations is a circle a reader follows."""
    graph = grimp.build_graph("gatewaytui", exclude_type_checking_imports=False, cache_dir=None)
    circles = {p: _cycles(graph, f"gatewaytui.{p}") for p in PACKAGES}
    assert {p: c for p, c in circles.items() if c} == {}


def test_the_circle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph, "pkg") == [["pkg.a", "pkg.b"]]


def _sources() -> Iterator[tuple[str, list[str], ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        yield path.relative_to(SRC).as_posix(), text.splitlines(), ast.parse(text)


def _reason_above(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A comment block right above the def (or its decorators) that says why it is long."""
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    above = first - 2  # 0-based index of the line above
    comment = []
    while above >= 0 and lines[above].strip().startswith("#"):
        comment.append(lines[above].lower())
        above -= 1
    return any("lines" in line for line in comment)


def test_no_class_over_30_methods():
    big = [
        f"{path}:{node.name} ({count})"
        for path, _lines, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and (count := sum(isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef) for b in node.body))
        > MAX_METHODS
    ]
    assert big == []


def test_no_function_over_60_lines_without_a_reason():
    long = [
        f"{path}:{node.name} ({length} lines)"
        for path, lines, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_LINES
        and not _reason_above(lines, node)
    ]
    assert long == []
