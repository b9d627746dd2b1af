"""How mimirctl is put together: no import cycles, nothing of the daemon but its
wire constants and paths, and the forms it checks are the daemon's own."""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from typing import Final

from mimird.sessions import records
from mimird.wire import formats, types

PACKAGE: Final = Path(__file__).parent.parent / "mimirctl"
#: What mimirctl may import of mimird (the wire types and where things live).
ALLOWED_FROM_MIMIRD: Final = ("mimird.wire", "mimird.paths")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top, in functions or for type checking."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from mimirctl import render` imports the module mimirctl.render.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def mimirctl_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path) & modules.keys() - {name} for name, path in modules.items()}


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, if it has one (depth-first search)."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for imported in sorted(graph[name]):
            if (cycle := visit(imported, [*path, name])) is not None:
                return cycle
        done.add(name)
        return None

    for name in sorted(graph):
        if (cycle := visit(name, [])) is not None:
            return cycle
    return None


def test_mimirctl_modules_import_each_other_without_a_cycle() -> None:
    graph = mimirctl_graph()
    assert {"mimirctl.cli", "mimirctl.ask", "mimirctl.stream"} <= graph.keys()
    assert cycle_in(graph) is None


def test_mimirctl_imports_nothing_of_mimird_but_the_wire_and_paths() -> None:
    outside = {
        (module_name(path), imported)
        for path in PACKAGE.rglob("*.py")
        for imported in imports_of(path)
        if imported.split(".")[0] == "mimird"
        and not any(imported == a or imported.startswith(a + ".") for a in ALLOWED_FROM_MIMIRD)
        and imported != "mimird"
    }
    assert outside == set()


def test_the_forms_mimirctl_checks_are_the_ones_the_daemon_checks() -> None:
    session_ref = typing.get_args(types.SessionRef)[1]
    timestamp = typing.get_args(types.Timestamp)[1]
    assert session_ref.min_length == records.MIN_PREFIX == formats.MIN_ID_PREFIX
    assert timestamp.pattern == formats.TIMESTAMP_PATTERN
