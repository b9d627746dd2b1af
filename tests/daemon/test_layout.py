"""The layout shows the architecture (DESIGN.md's owner table): no import cycles
in mimird or mimirctl, mimirctl depends only on the wire types and the paths,
and no module grows past what one concern needs."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mimird", "mimirctl")
#: Lines a module may hold. The git module is one concept and may be longer
#: (trio's _subprocess.py is 1,178 lines); migrations are generated.
MAX_LINES = 650
LONG_ALLOWED = frozenset({"mimird.workspaces.git"})
#: What mimirctl may import from mimird: the wire types and where the socket is.
MIMIRCTL_MAY_IMPORT = ("mimird.wire", "mimird.paths", "mimird")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports, anywhere in it: at module level, inside
    functions (an import moved into a function to dodge a cycle is still a cycle)
    and under ``if TYPE_CHECKING`` (so is one hidden from the interpreter but not
    from the reader). ``from X import Y`` names ``X.Y`` when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in MODULES else base


GRAPH = {
    name: sorted({m for m in _imported(name, path) if m in MODULES})
    for name, path in MODULES.items()
}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_the_module_list_is_found() -> None:
    assert "mimird.daemon" in MODULES
    assert "mimirctl.client" in MODULES
    assert "mimird.daemon" in GRAPH["mimird.cli"]


def test_no_import_cycles_in_mimird_or_mimirctl() -> None:
    assert _cycles() == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("mimirctl")))
def test_mimirctl_imports_only_the_wire_types_and_paths_from_mimird(name: str) -> None:
    foreign = [
        target
        for target in GRAPH[name]
        if target.startswith("mimird")
        and not any(target == a or target.startswith(a + ".") for a in MIMIRCTL_MAY_IMPORT[:2])
        and target != "mimird"
    ]
    assert foreign == [], f"{name} imports {foreign}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_holds_more_than_one_concern_needs(name: str) -> None:
    if name in LONG_ALLOWED:
        return
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_the_wire_package_needs_nothing_but_the_standard_library_and_msgspec() -> None:
    allowed = {"msgspec", "__future__", *sys.stdlib_module_names}
    for name, path in MODULES.items():
        if name.startswith("mimird.wire"):
            foreign = [
                module
                for module in _imported(name, path)
                if module.split(".")[0] not in allowed and not module.startswith("mimird.wire")
            ]
            assert foreign == [], f"{name} imports {foreign}"
