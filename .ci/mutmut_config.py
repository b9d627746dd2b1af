"""Mutation testing of the modules that carry the daemon's invariants (``make mutate``).

mutmut 2 imports this module (it must be named ``mutmut_config`` and be on
``sys.path``: ``.ci/mutate`` puts ``.ci`` there) and calls :func:`pre_mutation`
before each mutant. mutmut 2 mutates the file in place, so the real daemon
subprocesses the tests start run the mutant too (mutmut 3 copies the project into
``mutants/`` and switches mutants inside the test process only).

:data:`TARGETS` is the one table: which file, which of its functions (``None``:
all of it), and the tests that cover it. Each mutant runs only its file's tests,
with ``-x``, which keeps a full run bounded.
"""

from __future__ import annotations

import ast
import functools
import shlex
from pathlib import Path
from typing import Any, NamedTuple

#: pytest for one mutant: stop at the first failure; a hung test fails after 60 s.
PYTEST = ".venv/bin/python -m pytest -x -q -p no:cacheprovider -m 'not agents' --timeout=60"


class Target(NamedTuple):
    #: Functions (or ``Class.method``) whose lines are mutated; ``None``: the whole file.
    functions: tuple[str, ...] | None
    #: The tests that cover them.
    tests: tuple[str, ...]


_JOURNAL_TESTS = (
    "tests/journal/test_journal.py",
    "tests/journal/test_journal_streaming.py",
)

TARGETS: dict[str, Target] = {
    "mimird/journal/writer.py": Target(None, _JOURNAL_TESTS),
    "mimird/journal/events.py": Target(None, _JOURNAL_TESTS),
    "mimird/journal/subscriptions.py": Target(None, _JOURNAL_TESTS),
    "mimird/workspaces/git.py": Target(
        (
            "_everything_added",
            "_parse_raw",
            "_check_snapshot_ref",
            "snapshot",
            "remove_worktree",
            "_remove_admin_entry",
            "_branch_tip",
            "_save_branch_tip",
            "_check_branch_deletable",
            "_delete_branch",
        ),
        (
            "tests/workspaces/test_worktrees.py",
            "tests/workspaces/test_snapshot_removal.py",
            "tests/sessions/test_sessions_work_safety.py",
        ),
    ),
    "mimird/rpc/audit.py": Target(
        None,
        (
            "tests/rpc/test_audit.py",
            "tests/rpc/test_audit_log.py",
            "tests/sessions/test_sessions_audit.py",
        ),
    ),
    "mimird/secrets.py": Target(
        None,
        (
            "tests/daemon/test_scrub.py",
            "tests/daemon/test_chunk_mask.py",
            "tests/daemon/test_secret_masking.py",
            "tests/agents/test_agent_secrets.py",
            "tests/sessions/test_sessions_secrets.py",
        ),
    ),
    "mimird/rpc/server.py": Target(
        ("peer_credentials", "RpcServer._refuse", "RpcServer._serve_connection"),
        ("tests/rpc/test_socket_security.py", "tests/rpc/test_rpc_flooding.py"),
    ),
}


def _existing(tests: tuple[str, ...]) -> list[str]:
    return [test for test in tests if Path(test).exists()]


def runner(tests: list[str]) -> str:
    """The command for ``tests``. mutmut 2 counts only exit status 1 as a killed
    mutant: one that breaks the import (pytest's 2, errors during collection) would
    count as surviving, so any failure exits 1. (mutmut splits it with shlex.)"""
    pytest = " ".join([PYTEST, *_existing(tuple(dict.fromkeys(tests)))])
    return f"sh -c {shlex.quote(pytest + ' || exit 1')}"


def test_command(path: str) -> str:
    return runner(list(TARGETS[path].tests))


@functools.cache
def _lines_of(path: str, functions: tuple[str, ...]) -> frozenset[int]:
    """0-based line indexes of the bodies of ``functions`` in ``path``."""
    tree = ast.parse(Path(path).read_text())
    lines: set[int] = set()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif (
                isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                and f"{prefix}{child.name}" in functions
            ):
                end = child.end_lineno or child.lineno
                lines.update(range(child.lineno - 1, end))

    visit(tree, "")
    missing = [f for f in functions if not _defined(tree, f)]
    if missing:
        raise SystemExit(f"mutmut_config: {path} has no {', '.join(missing)}")
    return frozenset(lines)


def _defined(tree: ast.Module, qualname: str) -> bool:
    parts = qualname.split(".")
    scope: list[ast.stmt] = tree.body
    for i, part in enumerate(parts):
        found = [
            n
            for n in scope
            if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and n.name == part
        ]
        if not found:
            return False
        if i < len(parts) - 1:
            scope = found[0].body
    return True


def _relative(filename: str) -> str:
    path = Path(filename)
    return str(path.resolve().relative_to(Path.cwd())) if path.is_absolute() else str(path)


def pre_mutation(context: Any) -> None:
    """mutmut's hook: skip lines outside the chosen functions, and run only the
    mutated file's tests."""
    path = _relative(context.filename)
    target = TARGETS[path]
    if target.functions is not None and context.current_line_index not in _lines_of(
        path, target.functions
    ):
        context.skip = True
        return
    context.config.test_command = test_command(path)
