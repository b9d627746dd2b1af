"""Mutation testing of the modules that carry the daemon's invariants (``make mutate``).

mutmut 2 imports this module (it must be named ``mutmut_config`` and be on
``sys.path``: ``.ci/mutate`` puts ``.ci`` there) and calls :func:`pre_mutation`
before each mutant. mutmut 2 mutates the file in place, so the real daemon
subprocesses the tests start run the mutant too (mutmut 3 copies the project into
``mutants/`` and switches mutants inside the test process only).

:data:`TARGETS` is the one table: which file, which of its functions (``None``:
all of it), and the tests that may cover it. What is mutated, and why:

- ``mimird/journal/{writer,events,subscriptions,run_events}.py``, whole: invariants 1-3
  (committed before seen, gapless ``seq``, exactly once in order across the
  replay/live seam, a slow subscriber falls back to catching up). Every line of
  them is on those paths.
- ``mimird/workspaces/git.py``, the snapshot and removal functions only
  (invariant 4: no worktree removed while it holds work no ref reaches). The rest
  of the file (diff stats, drift, provisioning, restore) carries no invariant of
  the list and would triple the run.
- ``mimird/rpc/audit.py``, whole: every mutating call that runs is recorded, its
  secrets masked, a full disk loses at most the documented rows.
- ``mimird/secrets.py``, whole: invariant 9 (no secret in a log or an event).
- ``mimird/rpc/server.py``, the peer check and the refusals around it only
  (invariant 6: only the daemon's uid uses the socket); the framing and dispatch
  are held by the fuzz tests, which are too slow to run per mutant.

Not mutated anywhere: module-level tuning constants (``NAME = <number>``: queue
and batch sizes, retry delays, caps; :func:`tuning_constant`). A change of one
by one (mutmut's only number mutation) is not what an invariant rests on: what
does is that the bound is enforced, and the comparisons that enforce it are
mutated. The tests that pin a bound import the constant, so its mutant could not
be killed anyway, and each one cost a run of every test that starts a daemon.

How a run stays under 30 minutes on 2 cores (the measured figure is in
docs/mutation.md):

1. **One coverage run first** (mutmut's baseline: :func:`runner` is
   ``.ci/mutate --coverage``): the TARGETS tests once, under coverage.py with
   one dynamic context per test (``.ci/mutate_contexts.py``), in the pytest
   process and in every Python subprocess a test starts (daemons, mimirctl:
   ``.ci/coverage-startup/sitecustomize.py``). It writes, per target line, the
   node ids of the tests that ran it, and each test's duration, to
   ``.mutmut-coverage/map.json``.
2. **Per mutant, only the tests that run its line** (:func:`select`), fastest
   first, ``-x``. A line inside a function body runs only when a test calls it,
   so a test that never runs it cannot see the mutant: leaving it out changes no
   verdict. All the lines of the statement count (a statement split over lines
   records only some of them). A line that runs at import (a def's decorators
   and defaults, a class body, a module-level name) is traced to where what it
   defines is used (:func:`_module_level`); when that cannot be told (another
   product module imports the name), every test file of the target runs.
   A mutant on a line no test runs is not skipped: it is reported as a survivor
   marked "no test runs this line".
3. **A fork server** (``.ci/mutate_forkserver.py``) runs each pytest: the
   third-party imports (~1.6 s of a 2 s run of one short test) are paid once.
   The product and the tests are imported fresh in each fork, from disk, with
   ``PYTHONDONTWRITEBYTECODE`` and no cached bytecode of the mutated files, so
   every run sees the mutant. A mutant's tests are shared between :data:`JOBS`
   forks running at once (the same mutant on disk for all; a failure in any
   kills it).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

#: Where the coverage run leaves its map, its data, and the fork server's socket.
WORKDIR = Path(".mutmut-coverage")
MAP = WORKDIR / "map.json"
SOCKET = WORKDIR / "forkserver.sock"
SELECTED = WORKDIR / "selected.txt"
#: The output of the last mutant's test run (not shown: see :func:`command`).
RUN_LOG = WORKDIR / "last-run.log"

#: pytest's options for a mutant's run (the fork server adds nothing).
PYTEST_OPTIONS = (
    "-x -q -p no:cacheprovider -p mutate_timeouts -m 'not agents'"
    " -W ignore::pytest.PytestAssertRewriteWarning"
)
#: A mutant's tests run in this many pytest processes at once (2 cores).
JOBS = 2
#: A mutant's test that takes this much longer than it did in the coverage run
#: (times its duration there, plus the seconds) is stopped and fails: a hang the mutant
#: caused (each test its own, ``.ci/mutate_timeouts.py``; the run's ``--timeout`` is
#: for a test the map has no duration for).
TIMEOUT_FACTOR, TIMEOUT_BASE, TIMEOUT_MAX = 3, 5, 60


class Target(NamedTuple):
    #: Functions (or ``Class.method``) whose lines are mutated; ``None``: the whole file.
    functions: tuple[str, ...] | None
    #: The tests that may cover them (the coverage run runs them all).
    tests: tuple[str, ...]


_JOURNAL_TESTS = (
    "tests/journal/test_journal.py",
    "tests/journal/test_journal_streaming.py",
    "tests/journal/test_delivery_guarantees.py",
    "tests/journal/test_unsubscribe.py",
    "tests/runs/test_run_journal.py",
)

TARGETS: dict[str, Target] = {
    "mimird/journal/writer.py": Target(None, _JOURNAL_TESTS),
    "mimird/journal/events.py": Target(None, _JOURNAL_TESTS),
    "mimird/journal/subscriptions.py": Target(None, _JOURNAL_TESTS),
    "mimird/journal/run_events.py": Target(None, _JOURNAL_TESTS),
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
            "tests/workspaces/test_removal_edges.py",
            "tests/sessions/test_sessions_work_safety.py",
            "tests/sessions/test_project_remove_force.py",
        ),
    ),
    "mimird/rpc/audit.py": Target(
        None,
        (
            "tests/rpc/test_audit.py",
            "tests/rpc/test_audit_log.py",
            "tests/rpc/test_audit_coverage.py",
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


def tests_of(paths: list[str]) -> list[str]:
    """The test files of ``paths``' targets, each once, those that exist."""
    return _existing(tuple(dict.fromkeys(t for p in paths for t in TARGETS[p].tests)))


def runner(paths: list[str]) -> str:
    """mutmut's runner, which mutmut runs once unmutated as its baseline: the
    coverage run over ``paths``' tests (it fails when a test fails). Each mutant's
    command is set by :func:`pre_mutation`. (mutmut splits it with shlex.)"""
    return shlex.join([".venv/bin/python", ".ci/mutate", "--coverage", *paths])


def fingerprint(paths: list[str]) -> str:
    """What the coverage map depends on: the targets' sources and every test file."""
    digest = hashlib.sha256(repr(sorted(paths)).encode())
    for path in sorted({*paths, *map(str, Path("tests").rglob("*.py"))}):
        digest.update(path.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


@functools.cache
def _map() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MAP.read_text())
    return data


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


@functools.cache
def _statements(path: str) -> dict[int, tuple[range, bool]]:
    """For each 1-based line of ``path``: the lines of the innermost statement (or
    clause header) it belongs to, and whether that runs only inside a function call."""
    tree = ast.parse(Path(path).read_text())
    spans: dict[int, tuple[range, bool]] = {}

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt | ast.ExceptHandler | ast.match_case):
                start = child.pattern.lineno if isinstance(child, ast.match_case) else child.lineno
                end = getattr(child, "end_lineno", None) or start
                body = getattr(child, "body", None)
                if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                    # A compound statement owns its header; its body's lines belong
                    # to the statements in it (visited next, so they overwrite).
                    end = body[0].lineno - 1
                span = range(start, max(start, end) + 1)
                for line in span:
                    spans[line] = (span, in_function)
                inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                # A def's header (decorators, defaults) runs where the def is.
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    for line in range(
                        min([start, *(d.lineno for d in child.decorator_list)]), start
                    ):
                        spans[line] = (span, in_function)
                visit(child, inner)
            else:
                visit(child, in_function)

    visit(tree, False)
    return spans


def _covered(path: str, lines: Iterable[int]) -> set[str]:
    """The tests of ``path``'s target (its TARGETS test files) that ran ``lines``.
    (The coverage run runs every target's tests: a daemon test of one target runs
    the journal too, but the journal's mutants are judged by the journal's tests.)"""
    covered = _map()["lines"].get(path, {})
    own = set(TARGETS[path].tests)
    return {node for n in lines for node in covered.get(str(n), ()) if node.split("::")[0] in own}


def _body_lines(node: ast.AST) -> range:
    """The lines of a def's or a class's body (not its header or decorators)."""
    body = node.body  # type: ignore[attr-defined]
    return range(body[0].lineno, (node.end_lineno or body[0].lineno) + 1)  # type: ignore[attr-defined]


@functools.cache
def _tree(path: str) -> ast.Module:
    return ast.parse(Path(path).read_text())


def _chain(tree: ast.Module, line: int) -> list[ast.AST]:
    """The nodes around ``line``, outermost first, down to its innermost statement."""
    chain: list[ast.AST] = []
    scope: ast.AST = tree
    while True:
        inner = [
            child
            for child in ast.iter_child_nodes(scope)
            if isinstance(child, ast.stmt | ast.ExceptHandler | ast.match_case)
            and _first_line(child) <= line <= (getattr(child, "end_lineno", None) or 0)
        ]
        if not inner:
            return chain
        scope = inner[0]
        chain.append(scope)


def _first_line(node: ast.AST) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", [])
    if isinstance(node, ast.match_case):
        return node.pattern.lineno
    first: int = getattr(node, "lineno", 0)
    return min([first, *(d.lineno for d in decorators)])


@functools.cache
def _imports_of(module: str, name: str) -> tuple[frozenset[str], frozenset[str]]:
    """The product modules and the test files that import ``name`` from ``module``
    (or from its package, when the package re-exports it), or use it as
    ``module.name``."""
    package, _, leaf = module.rpartition(".")
    sources = [module]
    init = Path(package.replace(".", "/")) / "__init__.py"
    if init.exists() and _imports(ast.parse(init.read_text()), module, leaf, name):
        sources.append(package)
    product: set[str] = set()
    tests: set[str] = set()
    for file in [*Path("mimird").rglob("*.py"), *Path("tests").rglob("*.py")]:
        text = file.read_text()
        if name not in text or str(file) == module.replace(".", "/") + ".py":
            continue
        tree = ast.parse(text)
        if any(_imports(tree, source, leaf, name) for source in sources):
            (tests if file.parts[0] == "tests" else product).add(str(file))
    return frozenset(product), frozenset(tests)


def _imports(tree: ast.Module, module: str, leaf: str, name: str) -> bool:
    package = module.rpartition(".")[0]
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == module
            and any(a.name == name for a in node.names)
        ):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == package:
            aliases |= {a.asname or a.name for a in node.names if a.name == leaf}
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == name
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        for node in ast.walk(tree)
    )


def _module_level(path: str, line: int, seen: frozenset[str] = frozenset()) -> set[str] | None:
    """The tests that can see a mutant of a line that runs at import (``None``: no
    way to tell, run every test file of the target). Such a line's effect shows
    only where what it defines is used: a def's header (decorators, defaults) in
    calls of the def, so in the tests that ran its body; a class's header and
    class-level lines in the tests that ran its methods or used its name; a
    module-level name in the tests that ran a line reading it, and in the test
    files that import it. A name other product modules import: ``None``."""
    tree = _tree(path)
    chain = _chain(tree, line)
    for node in reversed(chain):  # innermost def or class around the line
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return _covered(path, _body_lines(node))
        if isinstance(node, ast.ClassDef):
            methods = [
                n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
            used = _readers(path, tree, {node.name}, seen)
            if used is None:
                return None
            return used | {t for m in methods for t in _covered(path, _body_lines(m))}
    if not chain or not isinstance(chain[0], ast.Assign | ast.AnnAssign):
        return None
    statement = chain[0]
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    names = {t.id for t in targets if isinstance(t, ast.Name)}
    if len(names) != len(targets):
        return None
    return _readers(path, tree, names, seen)


def _readers(path: str, tree: ast.Module, names: set[str], seen: frozenset[str]) -> set[str] | None:
    """The tests that read ``names`` (see :func:`_module_level`)."""
    names -= seen
    seen |= names
    module = path.removesuffix(".py").replace("/", ".")
    found: set[str] = set()
    for name in names:
        product, tests = _imports_of(module, name)
        if product:
            return None
        found |= set(tests)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load):
            span, in_function = _statements(path).get(node.lineno, (range(0), False))
            if in_function:
                found |= _covered(path, span)
            else:
                around = _module_level(path, node.lineno, seen)
                if around is None:
                    return None
                found |= around
    return found


def select(path: str, line: int) -> list[str] | None:
    """The tests to run against a mutant on ``line`` (1-based) of ``path``, fastest
    first: the node ids that ran that statement (or, for a line that runs at
    import, see :func:`_module_level`), test files whole after them. ``[]``: no
    test runs it. ``None``: no coverage map."""
    if not MAP.exists():
        return None
    span, in_function = _statements(path).get(line, (range(line, line + 1), False))
    tests = _covered(path, span) if in_function else _module_level(path, line)
    if tests is None:
        return _existing(TARGETS[path].tests)
    durations: dict[str, float] = _map()["durations"]
    return sorted(tests, key=lambda t: ("::" not in t, durations.get(t, 0.0), t))


def command(tests: list[str]) -> str:
    """The shell command for one mutant: ``tests`` through the fork server. mutmut 2
    counts only exit status 1 as killed: one that breaks the import (pytest's 2,
    errors during collection) would count as surviving, so any failure exits 1."""
    if not tests:
        return "sh -c 'echo no test runs this line'"
    durations: dict[str, float] = _map()["durations"] if MAP.exists() else {}
    # A whole file (no "::"): its slowest test.
    longest = max(
        (
            d
            for node, d in durations.items()
            if any(node.partition("::")[0] == t or node == t for t in tests)
        ),
        default=TIMEOUT_MAX,
    )
    timeout = min(TIMEOUT_MAX, int(TIMEOUT_BASE + TIMEOUT_FACTOR * longest))
    SELECTED.write_text("".join(f"{t}\n" for t in tests))
    run = f".venv/bin/python .ci/mutate_forkserver.py run {SOCKET} {JOBS} {SELECTED} --"
    pytest = f"{run} {PYTEST_OPTIONS} --timeout={timeout}"
    # Not on mutmut's terminal: mutmut runs the command on a pty, and a test's output to a
    # terminal (coloured, its log lines rendered for people) changes its timing enough to
    # let a mutant through that the same tests kill off a terminal, as CI runs them.
    return f"sh -c {shlex.quote(pytest + f' > {RUN_LOG} 2>&1 || exit 1')}"


def _mutant_source(context: Any) -> str:
    """The source of the mutant ``context`` names (mutmut's own mutation, on a copy)."""
    return mutant_source(context.source, context.mutation_id, context.config)


def mutation_id(text: str, nth: int, line: int) -> Any:
    """mutmut's id of the mutation ``nth`` of ``line`` (0-based), which reads ``text``."""
    import mutmut

    return mutmut.RelativeMutationID(line=text, index=nth, line_number=line)


def mutant_source(source: str, mutation_id: Any, config: Any = None) -> str:
    """``source`` with the mutation ``mutation_id`` (mutmut's) applied."""
    import mutmut  # the mutate extra; imported only where mutmut runs

    copy = mutmut.Context(source=source, mutation_id=mutation_id, config=config)
    mutated, _count = mutmut.mutate(copy)
    return str(mutated)


def _relative(filename: str) -> str:
    path = Path(filename)
    return str(path.resolve().relative_to(Path.cwd())) if path.is_absolute() else str(path)


def _number(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.BinOp):
        return _number(node.left) and _number(node.right)
    return False


def tuning_constant(path: str, line: int) -> bool:
    """Whether ``line`` (1-based) is in a module-level ``NAME = <number>`` (or
    ``NAME: Final = 16 * 1024``): a size, a count or a delay, not mutated (see the
    module's docstring)."""
    chain = _chain(_tree(path), line)
    if len(chain) != 1 or not isinstance(chain[0], ast.Assign | ast.AnnAssign):
        return False
    statement = chain[0]
    target = statement.targets[0] if isinstance(statement, ast.Assign) else statement.target
    return (
        isinstance(target, ast.Name)
        and target.id.lstrip("_").isupper()
        and statement.value is not None
        and _number(statement.value)
    )


#: Calls whose positional string arguments are an error's message: exceptions
#: (``...Error``, ``...Failed``, ``...Exception``, the classes of mimird/errors.py)
#: and ``_git_errors``.
_MESSAGE_CALLS = ("Error", "Failed", "Exception", "_git_errors")


@functools.cache
def _error_classes() -> frozenset[str]:
    tree = ast.parse(Path("mimird/errors.py").read_text())
    return frozenset(node.name for node in tree.body if isinstance(node, ast.ClassDef))


class _Normalised(ast.NodeTransformer):
    """Blanks what a mutant may change without changing behaviour a test should
    hold: every annotation (under ``from __future__ import annotations`` none is
    evaluated), and the text of error messages (the positional string arguments of
    an exception or ``_git_errors``: what an error means is its class, code and
    ``field``, which stay mutated; its wording is reviewed, not mutation-tested)."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AsyncFunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AnnAssign:
        node.annotation = ast.Constant(None)
        self.generic_visit(node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.Call:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name.endswith(_MESSAGE_CALLS) or name in _error_classes():
            for arg in node.args:
                for inner in ast.walk(arg):
                    if isinstance(inner, ast.JoinedStr):  # only what is formatted in
                        inner.values = [v for v in inner.values if not isinstance(v, ast.Constant)]
                    elif isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                        inner.value = ""
        self.generic_visit(node)
        return node


def _normalised(source: str) -> str | None:
    """``source``'s AST as :class:`_Normalised` leaves it, or None when annotations
    are evaluated there (no ``from __future__ import annotations``) or it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    postponed = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )
    return ast.dump(_Normalised().visit(tree)) if postponed else None


def unobservable(source: str, mutated: str) -> bool:
    """Whether ``mutated`` differs from ``source`` only in annotations that are
    never evaluated (``str | None`` → ``str & None``) or in the text of an error
    message (see :class:`_Normalised`)."""
    before = _normalised(source)
    return before is not None and before == _normalised(mutated)


class Judged(NamedTuple):
    """A surviving mutant judged by hand (docs/mutation.md gives each in full): it
    is not run again while its line reads the same. A changed line runs again and
    is judged again."""

    path: str
    #: The def or class around the line (``Class.method``; "" at module level).
    scope: str
    #: The line as it reads, stripped of its indentation.
    line: str
    #: mutmut's index of the mutation among those of the line.
    nth: int
    #: "equivalent" (nothing observable changes) or "accepted" (what changes is
    #: not something the daemon promises).
    verdict: str


def scope_of(path: str, line: int) -> str:
    """The qualified name of the defs and classes around ``line`` (1-based)."""
    chain = _chain(_tree(path), line)
    return ".".join(
        node.name
        for node in chain
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    )


#: The survivors judged by hand: docs/mutation.md ("Survivors") says why each one is
#: equivalent or accepted. Keyed by the line's text, not its number, so that an
#: edit elsewhere keeps them; a changed line is tested again.
JUDGED: tuple[Judged, ...] = (
    Judged(
        "mimird/journal/subscriptions.py", "", "Encoder = Callable[[Any], bytes]", 0, "equivalent"
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "Subscription.run",
        "if self._by_seq and batch[0].seq > self.cursor + 1:",
        2,
        "accepted",
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "Subscription.run",
        "if self._by_seq and batch[0].seq > self.cursor + 1:",
        4,
        "accepted",
    ),
    Judged(
        "mimird/journal/run_events.py", "RunCommitted", "@dataclass(slots=True)", 0, "equivalent"
    ),
    Judged(
        "mimird/journal/run_events.py",
        "RunCommitted",
        "_wire: bytes | None = field(default=None, repr=False)",
        1,
        "equivalent",
    ),
    Judged(
        "mimird/journal/run_events.py",
        "RunCommitted",
        "_wire: bytes | None = field(default=None, repr=False)",
        2,
        "equivalent",
    ),
    Judged(
        "mimird/journal/writer.py",
        "",
        'log = structlog.get_logger("mimird.journal")',
        0,
        "equivalent",
    ),
    Judged(
        "mimird/journal/writer.py", "Journal.__init__", "self._closing = False", 1, "equivalent"
    ),
    Judged(
        "mimird/journal/writer.py",
        "Journal.__init__",
        "self._sub_ids = itertools.count(1)",
        0,
        "equivalent",
    ),
    Judged("mimird/journal/writer.py", "Journal.__init__", "self._untrimmed = 0", 0, "accepted"),
    Judged(
        "mimird/journal/writer.py",
        "Journal._write",
        'log.error("journal_events_lost", events=len(batch), error=str(exc))',
        0,
        "accepted",
    ),
    Judged(
        "mimird/journal/writer.py",
        "Journal._write",
        'log.error("journal_write_failed", error=str(exc), events=len(batch))',
        0,
        "accepted",
    ),
    Judged(
        "mimird/journal/writer.py",
        "Journal._write_all",
        "and self._receive.statistics().current_buffer_used == 0",
        0,
        "accepted",
    ),
    Judged(
        "mimird/journal/writer.py",
        "Journal._write_all",
        "and self._receive.statistics().current_buffer_used == 0",
        1,
        "accepted",
    ),
    Judged(
        "mimird/journal/writer.py",
        "Journal._write_all",
        "and self._receive.statistics().current_buffer_used == 0",
        2,
        "accepted",
    ),
    Judged("mimird/journal/writer.py", "Journal._write_all", "self._untrimmed = 0", 0, "accepted"),
    Judged("mimird/journal/writer.py", "Journal._write_all", "self._untrimmed = 0", 1, "accepted"),
    Judged(
        "mimird/journal/writer.py",
        "Journal._write_all",
        "self._untrimmed >= TRIM_AFTER",
        0,
        "accepted",
    ),
    Judged(
        "mimird/journal/writer.py",
        "Journal.publish",
        "self._untrimmed += sum(len(event.data) for event in batch)",
        0,
        "accepted",
    ),
    Judged(
        "mimird/journal/writer.py",
        "Journal.publish",
        "self._untrimmed += sum(len(event.data) for event in batch)",
        1,
        "accepted",
    ),
    Judged(
        "mimird/journal/events.py", "", "Fact: TypeAlias = EventData | Verbatim", 1, "equivalent"
    ),
    Judged(
        "mimird/journal/events.py",
        "",
        'log = structlog.get_logger("mimird.journal")',
        0,
        "equivalent",
    ),
    Judged("mimird/journal/events.py", "Committed", "@dataclass(slots=True)", 0, "equivalent"),
    Judged(
        "mimird/journal/events.py",
        "Committed",
        "_wire: bytes | None = field(default=None, repr=False)",
        1,
        "equivalent",
    ),
    Judged(
        "mimird/journal/events.py",
        "Committed",
        "_wire: bytes | None = field(default=None, repr=False)",
        2,
        "equivalent",
    ),
    Judged("mimird/journal/events.py", "Pending", "@dataclass(slots=True)", 0, "equivalent"),
    Judged("mimird/journal/events.py", "Pending", "text: str | None = None", 1, "equivalent"),
    Judged(
        "mimird/journal/events.py",
        "Verbatim",
        "@dataclass(frozen=True, slots=True)",
        0,
        "equivalent",
    ),
    Judged(
        "mimird/journal/events.py",
        "Verbatim",
        "@dataclass(frozen=True, slots=True)",
        1,
        "equivalent",
    ),
    Judged("mimird/journal/events.py", "_insert", "@functools.cache", 0, "equivalent"),
    Judged(
        "mimird/journal/events.py", "_insert_rows", "if len(row[3]) < LARGE_VALUE:", 0, "accepted"
    ),
    Judged(
        "mimird/journal/events.py", "_insert_rows", "if len(row[3]) < LARGE_VALUE:", 1, "accepted"
    ),
    Judged(
        "mimird/journal/events.py",
        "append_batch",
        "for event_id, (item, encoded), row in zip(ids, kept, rows, strict=True):",
        0,
        "equivalent",
    ),
    Judged(
        "mimird/journal/events.py",
        "append_batch",
        'log.warning("events_dropped_for_missing_session", session_id=session_id, count=count)',
        0,
        "accepted",
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "",
        "Encoder = Callable[[Committed], bytes]",
        0,
        "equivalent",
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "",
        "Sender = Callable[[list[bytes]], Awaitable[None]]",
        0,
        "equivalent",
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "Subscription.__init__",
        "self._closed = False",
        1,
        "equivalent",
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "Subscription.__init__",
        "self._live = False",
        1,
        "equivalent",
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "Subscription.offer",
        "if len(self._queue) + len(batch) > self._queue_size:",
        1,
        "accepted",
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "Subscription.offer",
        "self._live = False",
        1,
        "equivalent",
    ),
    Judged(
        "mimird/journal/subscriptions.py",
        "Subscription.offer",
        "self.caught_up += 1",
        0,
        "accepted",
    ),
    Judged(
        "mimird/journal/subscriptions.py", "Subscription.run", "self._live = False", 1, "equivalent"
    ),
    Judged(
        "mimird/workspaces/git.py",
        "_delete_branch",
        "if status == 0 or not branch_exists(root, branch):",
        3,
        "equivalent",
    ),
    Judged(
        "mimird/workspaces/git.py",
        "_delete_branch",
        'status, _, err = _run(root, ["branch", "-D", "--", branch])',
        2,
        "equivalent",
    ),
    Judged(
        "mimird/workspaces/git.py",
        "_everything_added",
        'env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}',
        1,
        "equivalent",
    ),
    Judged(
        "mimird/workspaces/git.py",
        "_everything_added",
        'with tempfile.TemporaryDirectory(prefix="mimir-index-") as tmp:',
        0,
        "equivalent",
    ),
    Judged(
        "mimird/workspaces/git.py",
        "_save_branch_tip",
        '_git(root, "update-ref", "--create-reflog", "-m", "mimir snapshot", ref, tip)',
        3,
        "accepted",
    ),
    Judged("mimird/workspaces/git.py", "remove_worktree", 'message: str = "",', 0, "accepted"),
    Judged("mimird/workspaces/git.py", "snapshot", '"mimir snapshot",', 0, "accepted"),
    Judged(
        "mimird/workspaces/git.py",
        "snapshot",
        "f\"{what}: {', '.join(nested[:5])} \"",
        1,
        "accepted",
    ),
    Judged(
        "mimird/workspaces/git.py",
        "snapshot",
        "head = lines[1].strip() if status == 0 and len(lines) > 1 else None",
        3,
        "equivalent",
    ),
    Judged(
        "mimird/workspaces/git.py",
        "snapshot",
        "head = lines[1].strip() if status == 0 and len(lines) > 1 else None",
        5,
        "equivalent",
    ),
    Judged(
        "mimird/workspaces/git.py",
        "snapshot",
        "if status not in (0, 1) or not lines:",
        4,
        "equivalent",
    ),
    Judged(
        "mimird/rpc/audit.py",
        "",
        "ConfigMasker = Callable[[dict[str, Any]], dict[str, Any]]",
        0,
        "equivalent",
    ),
    Judged(
        "mimird/rpc/audit.py",
        "",
        "SecretsOf = Callable[[Any], Awaitable[set[str]]]",
        0,
        "equivalent",
    ),
    Judged(
        "mimird/rpc/audit.py", "", 'log = structlog.get_logger("mimird.audit")', 0, "equivalent"
    ),
    Judged("mimird/rpc/audit.py", "AuditLog._write", "keep = False", 1, "equivalent"),
    Judged(
        "mimird/rpc/audit.py",
        "AuditLog._write",
        'log.error("audit_write_failed", method=batch[-1]["method"], error=repr(exc))',
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/audit.py",
        "AuditLog.record",
        'log.error("audit_write_failed", method=method, error=reason)',
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/audit.py",
        "AuditLog.record",
        "reason = exc.message if isinstance(exc, MimirError) else repr(exc)",
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/audit.py",
        "_params_text",
        'return raw_params.decode("utf-8", errors="replace")',
        1,
        "equivalent",
    ),
    Judged("mimird/secrets.py", "", 'T = TypeVar("T")', 0, "equivalent"),
    Judged("mimird/secrets.py", "_Held", "@dataclass(slots=True)", 0, "equivalent"),
    Judged("mimird/secrets.py", "_forms", "@functools.lru_cache(maxsize=64)", 0, "equivalent"),
    Judged("mimird/secrets.py", "_forms", "@functools.lru_cache(maxsize=64)", 1, "equivalent"),
    Judged("mimird/secrets.py", "_json_forms", "@functools.lru_cache(maxsize=64)", 0, "equivalent"),
    Judged("mimird/secrets.py", "_json_forms", "@functools.lru_cache(maxsize=64)", 1, "equivalent"),
    Judged(
        "mimird/secrets.py",
        "_json_forms",
        "return tuple(_ENCODER.encode(form)[1:-1] for form in _forms(secrets))",
        0,
        "equivalent",
    ),
    Judged(
        "mimird/secrets.py",
        "_json_forms",
        "return tuple(_ENCODER.encode(form)[1:-1] for form in _forms(secrets))",
        2,
        "equivalent",
    ),
    Judged(
        "mimird/rpc/server.py",
        "RpcServer._refuse",
        '"rpc_connection_refused", pid=peer.pid, suppressed=held_back, **detail',
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/server.py",
        "RpcServer._refuse",
        "if (held_back := self._refusals.allow()) is not None:",
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/server.py",
        "RpcServer._refuse",
        "with trio.move_on_after(REFUSAL_TIMEOUT_S, shield=True):",
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/server.py",
        "RpcServer._serve_connection",
        "conn_id = next(self._conn_ids)",
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/server.py",
        "RpcServer._serve_connection",
        'log.exception("rpc_connection_crashed", conn_id=conn_id)',
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/server.py",
        "RpcServer._serve_connection",
        'log.warning("rpc_peer_unknown", conn_id=conn_id, error=str(exc))',
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/server.py",
        "RpcServer._serve_connection",
        "with trio.move_on_after(1, shield=True):",
        0,
        "accepted",
    ),
    Judged(
        "mimird/rpc/server.py",
        "RpcServer._serve_connection",
        "with trio.move_on_after(1, shield=True):",
        1,
        "accepted",
    ),
)


def judged(path: str, line: int, text: str, index: int) -> Judged | None:
    """The entry of :data:`JUDGED` for the mutant ``index`` of ``line`` (1-based),
    which reads ``text``."""
    key = (path, scope_of(path, line), text.strip(), index)
    return next((j for j in JUDGED if (j.path, j.scope, j.line, j.nth) == key), None)


def skip_reason(path: str, line: int, text: str, nth: int, source: str, mutant: Any) -> str | None:
    """Why the mutant ``nth`` of ``line`` (0-based; it reads ``text``) is not tested,
    or None: "outside" the chosen functions, a tuning "constant", "unobservable"
    (:func:`unobservable`; ``mutant()`` makes its source) or "judged" (:data:`JUDGED`)."""
    target = TARGETS[path]
    if target.functions is not None and line not in _lines_of(path, target.functions):
        return "outside"
    if tuning_constant(path, line + 1):
        return "constant"
    if judged(path, line + 1, text, nth) is not None:
        return "judged"
    if unobservable(source, mutant()):
        return "unobservable"
    return None


def pre_mutation(context: Any) -> None:
    """mutmut's hook: skip what :func:`skip_reason` says, and run only the tests that
    run the mutated line."""
    path = _relative(context.filename)
    mutation = context.mutation_id
    reason = skip_reason(
        path,
        context.current_line_index,
        mutation.line,
        mutation.index,
        context.source,
        lambda: _mutant_source(context),
    )
    if reason is not None:
        context.skip = True
        return
    tests = select(path, context.current_line_index + 1)
    if tests is None:
        raise SystemExit("mutmut_config: no coverage map; run make mutate (.ci/mutate)")
    context.config.test_command = command(tests)
