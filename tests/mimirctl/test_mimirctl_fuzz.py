"""mimirctl driven with random command lines against a real mimird: every command
of its parser, options and arguments drawn from values a user (or a glob, or a
script) may give: empty, huge, negative, NaN, JSON that is not an object, paths,
terminal escapes, id prefixes of real objects. Whatever comes, mimirctl ends with
one of its documented exit codes, never a traceback, and nothing it prints holds a
raw terminal escape. Runs ``mimirctl.cli.main`` in this process (a command line
costs milliseconds, not a Python start)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mimirctl import cli
from tests.support.helpers import (
    DaemonDirs,
    add_project_blocking,
    make_repo,
    module_daemon_fixtures,
    rpc,
)

ctl_dirs, mimird_process, dirs = module_daemon_fixtures()

EXIT_CODES: Final = frozenset(range(7))
#: Commands left out: interactive (top, attach, the acp bridge), or that reach the
#: network (agent install/update fetch from npm and PyPI).
LEFT_OUT: Final = {("top",), ("attach",), ("acp",), ("agent", "install"), ("agent", "update")}
#: Longest a command line may take (a hang fails the test, naming it).
CALL_LIMIT_S: Final = 20
VALUES: Final = [
    "",
    "0",
    "-1",
    "7",
    "99999999999999999999999",
    "nan",
    "-Infinity",
    "1e309",
    "..",
    "sub/../../x",
    "out.jsonl",
    "x" * 300,
    "ü\u202e\x1b[31m",
    "{}",
    "[]",
    '{"a":',
    '{"token_budget": NaN}',
    '{"agent": "nope"}',
    "null",
    "main",
    "HEAD~999",
    "-",
    "--",
    "2026-02-30",
    "30m",
    "-3d",
    "99999999w",
    "zzzz",
    "a b",
    "%s%n",
    "😀",
]


def _commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
                return
        if path[:1] not in LEFT_OUT and path[:2] not in LEFT_OUT:
            found.append((path, parser))

    walk(cli.full_parser(), ())
    return found


COMMANDS: Final = _commands()


@st.composite
def command_lines(draw: st.DrawFn, refs: list[str]) -> list[str]:
    path, parser = draw(st.sampled_from(COMMANDS))
    value = st.sampled_from(VALUES + refs)
    argv = list(path)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or "--socket" in action.option_strings:
            continue
        if action.option_strings and action.dest in ("follow",):
            continue
        choice = st.sampled_from([str(c) for c in action.choices]) if action.choices else value
        if action.option_strings:
            if draw(st.booleans()):
                argv.append(draw(st.sampled_from(action.option_strings)))
                if action.nargs != 0:
                    argv.append(draw(st.one_of(choice, value)))
        else:
            low, high = {"?": (0, 1), "*": (0, 2), "+": (1, 2)}.get(str(action.nargs), (1, 1))
            argv.extend(draw(st.lists(st.one_of(choice, value), min_size=low, max_size=high)))
    return argv


class _Hung(Exception):
    pass


@contextlib.contextmanager
def _limited(argv: list[str]) -> Iterator[None]:
    def hung(signum: int, frame: FrameType | None) -> None:
        raise _Hung(f"mimirctl {argv} took more than {CALL_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(CALL_LIMIT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def refs(ctl_dirs: DaemonDirs, mimird_process: Any, tmp_path_factory: Any) -> list[str]:
    """Ids (and prefixes of them) of a real project and sessions, for the commands to name."""
    repo = make_repo(tmp_path_factory.mktemp("fuzz") / "repo")
    project = add_project_blocking(ctl_dirs, repo, name="fuzzed")
    found = [project["id"], "fuzzed"]
    for title in ("one", "two"):
        made = rpc(ctl_dirs, "session.create", {"project": project["id"], "title": title})
        found += [made["id"], made["id"][:12]]
    return found


def test_the_fuzz_draws_every_command_but_those_left_out() -> None:
    words = {path[0] for path, _ in COMMANDS}
    assert {"project", "session", "run", "status", "export", "import", "doctor"} <= words
    assert not any(path[:1] in LEFT_OUT or path[:2] in LEFT_OUT for path, _ in COMMANDS)


@pytest.mark.slow  # about 15 s
@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_command_line_ends_with_a_documented_code_and_prints_nothing_raw(
    dirs: DaemonDirs,
    refs: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: st.DataObject,
) -> None:
    argv = data.draw(command_lines(refs))
    for name, value in dirs.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # exports and backups with relative names land here
    out, err = io.StringIO(), io.StringIO()
    # stdin empty (import -), and a real file whatever pytest made it (xdist: none).
    with open(os.devnull) as nothing, _limited(argv):
        monkeypatch.setattr(sys, "stdin", nothing)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exit_:  # argparse
                code = exit_.code if isinstance(exit_.code, int) else 1
    printed = out.getvalue() + err.getvalue()
    event(f"exit {code}")
    assert code in EXIT_CODES, (argv, code, printed)
    assert "Traceback" not in printed, (argv, printed)
    assert "\x1b" not in printed, (argv, printed)
    assert "\u202e" not in printed, (argv, printed)
    # The daemon is still there, and answers.
    assert rpc(dirs, "daemon.status")["pid"] > 0


def test_the_daemon_survived_and_its_database_is_whole(dirs: DaemonDirs) -> None:
    assert rpc(dirs, "db.check", {"full": True})["ok"] is True
