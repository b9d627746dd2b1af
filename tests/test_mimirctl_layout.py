"""How mimirctl is put together: no import cycles, nothing of the daemon but its
wire constants and paths, and the forms it checks are the daemon's own."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Final

from mimirctl.cli import WORDS
from mimird.sessions import records
from mimird.wire import formats, types
from tests.helpers import short_tmpdir

PACKAGE: Final = Path(__file__).parent.parent / "mimirctl"
RUN_TIMEOUT_S: Final = 30
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


# ---- what a short command loads -------------------------------------------------------

#: Modules a short command does without: each costs start-up time (msgspec ~26 ms,
#: typing ~3.4 ms, socket's Python wrapper ~2.7 ms, shutil ~2 ms, datetime ~1.8 ms).
NOT_ON_SHORT_PATHS: Final = ("msgspec", "typing", "socket", "shutil", "datetime", "mimirctl.ask")


def modules_loaded_by(*args: str) -> set[str]:
    """The modules loaded by ``mimirctl ARGS`` run with no daemon to answer."""
    with short_tmpdir() as root:
        code = (
            "import json, sys\n"
            "from mimirctl.cli import main\n"
            f"code = main({list(args)!r})\n"
            "print(json.dumps(sorted(sys.modules)))\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIMIR_")}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "MIMIR_SOCKET": str(root / "none.sock")},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=True,
        )
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return set(loaded)


def test_status_loads_only_its_own_command_module_and_nothing_heavy() -> None:
    loaded = modules_loaded_by("status")
    commands = {m for m in loaded if m.startswith("mimirctl.commands.")}
    assert commands == {"mimirctl.commands.daemon"}
    assert sorted(m for m in NOT_ON_SHORT_PATHS if m in loaded) == []


def test_session_ls_loads_the_session_commands_only() -> None:
    loaded = modules_loaded_by("session", "ls")
    commands = {m for m in loaded if m.startswith("mimirctl.commands.")}
    assert commands == {"mimirctl.commands.session"}
    assert "msgspec" not in loaded


def test_help_lists_every_command_word() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mimirctl", "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    assert set(WORDS) <= set(result.stdout.split())
