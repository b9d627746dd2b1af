"""`mimirctl session ...` and `mimirctl worktree ...` driven as a user would: a real
mimird process, real git repositories made in temporary directories, `python -m
mimirctl` in a subprocess, output and exit codes checked.

One daemon serves the whole module; every test works in projects of its own, so
the order the tests run in does not matter.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Final

import pytest

from mimirctl import render
from mimirctl.commands.session import time_arg
from tests.mimirctl.test_mimirctl import (
    EXIT_ERROR,
    EXIT_INVALID_STATE,
    EXIT_NOT_FOUND,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    HEAVY_MODULES,
    RUN_TIMEOUT_S,
    failed,
    imported_modules,
    ok,
)
from tests.support.helpers import (
    DaemonDirs,
    add_project_blocking,
    daemon_process,
    git,
    make_repo,
    module_daemon_fixtures,
    rpc,
    run_mimirctl,
    short_tmpdir,
)

#: Where --json goes: before the command words, between them, or after them.
JSON_POSITIONS: Final = ["before", "between", "after"]
#: What the project of most tests holds: one line each (the diff tests count them).
FILES: Final = {"README.md": "hello\n", "src/app.py": "print('hi')\n"}
SESSION_LS_HEADERS: Final = ["ID", "PROJECT", "STATUS", "WORKSPACE", "BRANCH", "TITLE", "UPDATED"]


# ---- fixtures and helpers ---------------------------------------------------------


ctl_dirs, mimird_process, dirs = module_daemon_fixtures()


@pytest.fixture
def project(dirs: DaemonDirs, tmp_path: Path) -> dict[str, Any]:
    """A git repository with one commit, registered."""
    return add_project(dirs, make_repo(tmp_path / "repo", FILES))


def json_args(position: str, *args: str) -> list[str]:
    """--json placed before the command words, after the noun, or at the end."""
    if position == "before":
        return ["--json", *args]
    if position == "between":
        return [args[0], "--json", *args[1:]]
    return [*args, "--json"]


def ctl(dirs: DaemonDirs, *args: str) -> subprocess.CompletedProcess[str]:
    return run_mimirctl(dirs, *args, timeout=RUN_TIMEOUT_S)


def add_project(dirs: DaemonDirs, path: Path) -> dict[str, Any]:
    """``path`` registered under a name unique to the test (its parent's and its own)."""
    return add_project_blocking(dirs, path, name=f"{path.parent.name}-{path.name}")


def new_session(dirs: DaemonDirs, project: dict[str, Any], **params: Any) -> dict[str, Any]:
    """A session made over the socket (not through mimirctl)."""
    session: dict[str, Any] = rpc(dirs, "session.create", {"project": project["id"], **params})
    return session


def get_session(dirs: DaemonDirs, ref: str) -> dict[str, Any]:
    session: dict[str, Any] = rpc(dirs, "session.get", {"session": ref})
    return session


def field_lines(output: str) -> dict[str, str]:
    """`key: value` lines of a fields block (continuation lines are left out)."""
    pairs = {}
    for line in output.splitlines():
        if line and not line.startswith(" ") and ":" in line:
            key, value = line.split(":", 1)
            pairs[key] = value.strip()
    return pairs


def ls_rows(output: str) -> dict[str, list[str]]:
    """`session ls` rows by short id: the columns before TITLE (titles in these
    tests have no spaces), TITLE, and UPDATED ("5s ago")."""
    lines = output.splitlines()
    assert lines[0].split() == SESSION_LS_HEADERS, output
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        rows[cells[0]] = [*cells[:6], " ".join(cells[6:])]
    return rows


def worktree_rows(output: str) -> dict[str, list[str]]:
    """`worktree ls` table rows by PATH (the last column)."""
    lines = output.split("\n\n")[0].splitlines()
    assert lines[0].split() == ["SESSION", "STATUS", "PROJECT", "STATE", "BRANCH", "PATH"]
    return {line.split()[-1]: line.split() for line in lines[1:]}


def without_git(session: dict[str, Any]) -> dict[str, Any]:
    """The session without what only session.get computes: its git status and usage."""
    return {k: v for k, v in session.items() if k not in ("git", "usage")}


def files_in(workspace: Path) -> dict[str, bytes]:
    """Every file of a worktree, by relative path, but git's own pointer file."""
    return {
        str(p.relative_to(workspace)): p.read_bytes()
        for p in workspace.rglob("*")
        if p.is_file() and p.name != ".git"
    }


def make_work(session: dict[str, Any]) -> Path:
    """Uncommitted work in a session's worktree: a changed file and a new one."""
    workspace = Path(session["workspace"]["path"])
    (workspace / "README.md").write_text("hello\nchanged by the session\n")
    (workspace / "notes.txt").write_text("one\ntwo\nthree\n")
    return workspace


# ---- session new ------------------------------------------------------------------


def test_session_new_prints_the_id_branch_and_workspace(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    shown = field_lines(ok(ctl(dirs, "session", "new", project["name"], "--title", "Fix bug")))
    session = get_session(dirs, shown["id"])
    assert shown["project"] == project["name"]
    assert shown["status"] == "created"
    assert shown["branch"] == session["workspace"]["branch"]
    assert shown["workspace"] == f"{session['workspace']['path']} (worktree)"
    assert Path(session["workspace"]["path"]).is_dir()
    assert git(Path(project["path"]), "branch", "--list", shown["branch"]).strip()


def test_session_new_takes_title_task_branch_and_base(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    root = Path(project["path"])
    first = git(root, "rev-parse", "HEAD").strip()
    (root / "later.txt").write_text("later\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "later")
    args = ["--title", "T", "--task", "do it", "--branch", "feature/x", "--base", first]
    shown = field_lines(ok(ctl(dirs, "session", "new", project["id"], *args)))
    session = get_session(dirs, shown["id"])
    assert (session["title"], session["task"]) == ("T", "do it")
    assert session["workspace"]["branch"] == shown["branch"] == "feature/x"
    assert session["workspace"]["base_commit"] == first
    assert not (Path(session["workspace"]["path"]) / "later.txt").exists()


def test_session_new_in_place_works_in_the_project_directory(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    shown = field_lines(ok(ctl(dirs, "session", "new", project["name"], "--in-place")))
    assert shown["workspace"] == f"{project['path']} (in_place)"
    assert get_session(dirs, shown["id"])["workspace"]["kind"] == "in_place"


def test_session_new_passes_agent_and_config(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    args = ["--agent", "goose", "--config", '{"token_budget": 1234}']
    shown = field_lines(ok(ctl(dirs, "session", "new", project["name"], *args)))
    session = get_session(dirs, shown["id"])
    assert (session["agent"], session["config"]) == ("goose", {"token_budget": 1234})


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_session_new_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], position: str
) -> None:
    printed = json.loads(ok(ctl(dirs, *json_args(position, "session", "new", project["id"]))))
    assert without_git(printed) == without_git(get_session(dirs, printed["id"]))


def test_session_new_whose_setup_fails_prints_the_failure_and_exits_1(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    config = json.dumps({"setup_command": "echo 'no such tool' >&2; exit 3"})
    result = ctl(dirs, "session", "new", project["name"], "--config", config)
    assert result.returncode == EXIT_ERROR, result
    shown = field_lines(result.stdout)
    assert shown["status"] == "failed"
    assert result.stderr.startswith(f"mimirctl: session {shown['id']} was created but its setup")
    assert "no such tool" in result.stderr
    session = get_session(dirs, shown["id"])
    assert session["status"] == "failed"
    assert "no such tool" in session["failure"]


def test_session_new_whose_setup_fails_exits_1_with_json_too(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    result = ctl(
        dirs, "session", "new", project["id"], "--json", "--config", '{"setup_command": "false"}'
    )
    assert result.returncode == EXIT_ERROR, result
    printed = json.loads(result.stdout)
    assert printed["status"] == "failed"
    assert without_git(printed) == without_git(get_session(dirs, printed["id"]))


def test_session_new_whose_setup_succeeds_exits_0(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    config = json.dumps({"setup_command": "touch made-by-setup"})
    shown = field_lines(ok(ctl(dirs, "session", "new", project["name"], "--config", config)))
    session = get_session(dirs, shown["id"])
    assert session["status"] == "created"
    assert (Path(session["workspace"]["path"]) / "made-by-setup").is_file()


def test_session_new_in_an_unknown_project_exits_4(dirs: DaemonDirs) -> None:
    assert "ghost" in failed(ctl(dirs, "session", "new", "ghost"), EXIT_NOT_FOUND)


def test_session_new_with_invalid_config_json_exits_2(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    failed(ctl(dirs, "session", "new", project["id"], "--config", "{nope"), EXIT_USAGE)
    assert rpc(dirs, "session.list", {"project": project["id"]})["sessions"] == []


def test_session_new_in_a_dirty_project_exits_6(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    (Path(project["path"]) / "README.md").write_text("uncommitted\n")
    message = failed(ctl(dirs, "session", "new", project["id"]), EXIT_INVALID_STATE)
    assert "uncommitted" in message


# ---- session ls -------------------------------------------------------------------


def test_session_ls_shows_a_row_per_session(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project, title="listed")
    rows = ls_rows(ok(ctl(dirs, "session", "ls", "--project", project["name"])))
    assert rows == {
        session["id"][:10]: [
            session["id"][:10],
            project["name"],
            "created",
            "ok",
            session["workspace"]["branch"],
            "listed",
            rows[session["id"][:10]][6],
        ]
    }
    assert rows[session["id"][:10]][6].endswith("ago")


def test_session_ls_shows_the_tasks_first_line_when_there_is_no_title(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    new_session(dirs, project, task="first-line\nsecond line")
    output = ok(ctl(dirs, "session", "ls", "--project", project["id"]))
    assert [row[5] for row in ls_rows(output).values()] == ["first-line"]


def test_session_ls_truncates_long_titles(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    new_session(dirs, project, title="x" * 100)
    output = ok(ctl(dirs, "session", "ls", "--project", project["id"]))
    assert [row[5] for row in ls_rows(output).values()] == ["x" * 39 + "…"]


def test_session_ls_lists_newest_first(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    ids = [new_session(dirs, project)["id"] for _ in range(3)]
    output = ok(ctl(dirs, "session", "ls", "--project", project["id"]))
    assert list(ls_rows(output)) == [i[:10] for i in reversed(ids)]


def test_session_ls_offset_skips_and_total_counts(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    ids = [new_session(dirs, project)["id"] for _ in range(3)]
    base = ["session", "ls", "--project", project["id"]]
    result = ctl(dirs, *base, "--offset", "1", "--limit", "1", "--total")
    assert result.returncode == EXIT_OK, result
    assert list(ls_rows(result.stdout)) == [ids[1][:10]]
    assert "3 sessions match" in result.stderr
    # --all-pages skips once, not before every page.
    paged = ok(ctl(dirs, *base, "--offset", "1", "--limit", "1", "--all-pages"))
    assert list(ls_rows(paged)) == [i[:10] for i in reversed(ids[:2])]


def test_session_ls_filters_by_status(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    kept = new_session(dirs, project)
    failed_one = new_session(dirs, project, config={"setup_command": "false"})
    base = ["session", "ls", "--project", project["id"]]
    assert list(ls_rows(ok(ctl(dirs, *base, "--status", "failed")))) == [failed_one["id"][:10]]
    assert list(ls_rows(ok(ctl(dirs, *base, "-s", "created")))) == [kept["id"][:10]]
    both = ls_rows(ok(ctl(dirs, *base, "--status", "created,failed")))
    assert set(both) == {kept["id"][:10], failed_one["id"][:10]}
    repeated = ls_rows(ok(ctl(dirs, *base, "--status", "created", "--status", "failed")))
    assert repeated == both


def test_session_ls_with_an_unknown_status_exits_2(dirs: DaemonDirs) -> None:
    failed(ctl(dirs, "session", "ls", "--status", "sleeping"), EXIT_USAGE)


def test_session_ls_filters_by_text_and_agent(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    wanted = new_session(dirs, project, title="needle-here", agent="goose")
    new_session(dirs, project, title="other", agent="goose")
    new_session(dirs, project, title="needle-too", agent="opencode")
    base = ["session", "ls", "--project", project["id"]]
    rows = ls_rows(ok(ctl(dirs, *base, "--text", "needle", "--agent", "goose")))
    assert list(rows) == [wanted["id"][:10]]


def test_session_ls_hides_archived_and_deleted_sessions_unless_all(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    live = new_session(dirs, project)
    archived = new_session(dirs, project)
    deleted = new_session(dirs, project)
    rpc(dirs, "session.archive", {"session": archived["id"]})
    rpc(dirs, "session.delete", {"session": deleted["id"]})
    base = ["session", "ls", "--project", project["id"]]
    assert list(ls_rows(ok(ctl(dirs, *base)))) == [live["id"][:10]]
    rows = ls_rows(ok(ctl(dirs, *base, "--all")))
    assert {short: row[2] for short, row in rows.items()} == {
        live["id"][:10]: "created",
        archived["id"][:10]: "archived",
        deleted["id"][:10]: "deleted",
    }
    assert rows[deleted["id"][:10]][3] == "removed"


def test_session_ls_of_no_sessions_says_so(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    output = ok(ctl(dirs, "session", "ls", "--project", project["id"]))
    assert output == "no sessions (use --all to include archived and deleted ones)\n"


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_session_ls_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], position: str
) -> None:
    new_session(dirs, project)
    new_session(dirs, project, title="two")
    args = json_args(position, "session", "ls", "--project", project["id"], "--all")
    printed = json.loads(ok(ctl(dirs, *args)))
    wire = rpc(
        dirs,
        "session.list",
        {"project": project["id"], "include_archived": True, "include_deleted": True},
    )
    assert printed == wire
    assert len(printed["sessions"]) == 2


def test_session_ls_with_more_pages_prints_the_next_cursor_on_stderr(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    ids = [new_session(dirs, project)["id"] for _ in range(3)]
    base = ["session", "ls", "--project", project["id"], "--limit", "2"]
    result = ctl(dirs, *base)
    assert result.returncode == EXIT_OK, result
    assert list(ls_rows(result.stdout)) == [ids[2][:10], ids[1][:10]]
    assert result.stderr == (
        f"more: mimirctl session ls --cursor {ids[1]} (same filters), or --all-pages\n"
    )
    rest = ok(ctl(dirs, *base, "--cursor", ids[1]))
    assert list(ls_rows(rest)) == [ids[0][:10]]


def test_session_ls_json_with_more_pages_keeps_stdout_and_stderr_clean(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    ids = [new_session(dirs, project)["id"] for _ in range(2)]
    printed = json.loads(
        ok(ctl(dirs, "session", "ls", "--json", "--project", project["id"], "--limit", "1"))
    )
    assert [s["id"] for s in printed["sessions"]] == [ids[1]]
    assert printed["next_cursor"] == ids[1]


@pytest.mark.parametrize("json_flag", [False, True], ids=["table", "json"])
def test_session_ls_all_pages_follows_every_cursor(
    dirs: DaemonDirs, project: dict[str, Any], json_flag: bool
) -> None:
    ids = [new_session(dirs, project)["id"] for _ in range(5)]
    args = ["session", "ls", "--project", project["id"], "--limit", "2", "--all-pages"]
    output = ok(ctl(dirs, *args, *(["--json"] if json_flag else [])))
    if json_flag:
        printed = json.loads(output)
        assert [s["id"] for s in printed["sessions"]] == list(reversed(ids))
        assert printed["next_cursor"] is None
    else:
        assert list(ls_rows(output)) == [i[:10] for i in reversed(ids)]


@pytest.mark.parametrize(
    ("flag", "value", "listed"),
    [
        pytest.param("--since", "1h", True, id="since-1h"),
        pytest.param("--since", "2000-01-01", True, id="since-date"),
        pytest.param("--until", "1h", False, id="until-1h"),
        pytest.param("--until", "2999-01-01T00:00Z", True, id="until-future"),
        pytest.param("--created-since", "30m", True, id="created-since-30m"),
        pytest.param("--created-until", "1d", False, id="created-until-1d"),
        pytest.param("--since", "2999-01-01T00:00:00+02:00", False, id="since-offset"),
    ],
)
def test_session_ls_filters_by_time(
    dirs: DaemonDirs, project: dict[str, Any], flag: str, value: str, listed: bool
) -> None:
    session = new_session(dirs, project)
    output = ok(ctl(dirs, "session", "ls", "--project", project["id"], "--json", flag, value))
    assert [s["id"] for s in json.loads(output)["sessions"]] == ([session["id"]] if listed else [])


@pytest.mark.parametrize("value", ["yesterday", "5x", "2026-13-45", "2 h", "2026-02-30T10:00Z"])
def test_session_ls_with_a_bad_time_exits_2_with_the_usage(dirs: DaemonDirs, value: str) -> None:
    result = ctl(dirs, "session", "ls", "--since", value)
    assert (result.returncode, result.stdout) == (EXIT_USAGE, ""), result
    assert "is not a time" in result.stderr


# ---- time arguments (no daemon needed) ---------------------------------------------

NOW: Final = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", "2026-03-01T11:59:30Z"),
        ("30m", "2026-03-01T11:30:00Z"),
        ("2h", "2026-03-01T10:00:00Z"),
        ("3d", "2026-02-26T12:00:00Z"),
        ("1w", "2026-02-22T12:00:00Z"),
        ("2026-01-31", "2026-01-31"),
        ("2026-01-31T10:00", "2026-01-31T10:00"),
        ("2026-01-31T10:00:05.25Z", "2026-01-31T10:00:05.25Z"),
        ("2026-01-31T10:00+02:00", "2026-01-31T08:00:00Z"),
        ("2026-01-31 10:00:00", "2026-01-31T10:00:00Z"),
        ("2026-01-31T10:00:00.5-01:00", "2026-01-31T11:00:00.500000Z"),
    ],
)
def test_times_become_the_daemons_utc_timestamps(text: str, expected: str) -> None:
    assert time_arg(text, now=NOW) == expected


# ---- session show -----------------------------------------------------------------


@pytest.mark.parametrize("length", [26, 10, 14], ids=["full-id", "short-id", "prefix"])
def test_session_show_takes_the_id_or_a_unique_prefix(
    dirs: DaemonDirs, project: dict[str, Any], length: int
) -> None:
    session = new_session(dirs, project, title="shown")
    shown = field_lines(ok(ctl(dirs, "session", "show", session["id"][:length])))
    assert shown["id"] == session["id"]
    assert shown["title"] == "shown"


def test_session_show_prints_workspace_and_git_status(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project, task="line one\nline two")
    make_work(session)
    output = ok(ctl(dirs, "session", "show", session["id"]))
    shown = field_lines(output)
    w = session["workspace"]
    assert shown["project"] == project["name"]
    assert shown["status"] == "created"
    assert shown["workspace"] == f"{w['path']} (worktree, ok)"
    assert shown["branch"] == w["branch"]
    assert shown["base"] == f"main @ {w['base_commit'][:7]}"
    assert shown["head"] == w["base_commit"][:7]
    assert shown["dirty"] == "yes"
    assert shown["ahead/behind"] == "0/0"
    assert shown["changes"] == "2 file(s), +4 -0"
    assert shown["task"] == "line one"
    assert " " * 14 + "line two" in output.splitlines()  # continued under the value column


def test_session_show_of_a_clean_session_says_it_is_clean(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    shown = field_lines(ok(ctl(dirs, "session", "show", session["id"])))
    assert (shown["dirty"], shown["changes"]) == ("no", "0 file(s), +0 -0")


def test_session_show_prints_the_failure(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project, config={"setup_command": "echo broken-setup; exit 7"})
    output = ok(ctl(dirs, "session", "show", session["id"]))
    assert field_lines(output)["status"] == "failed"
    assert "broken-setup" in output
    assert "7" in field_lines(output)["failure"]


def test_session_show_prints_drift(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    git(Path(session["workspace"]["path"]), "switch", "-q", "-c", "elsewhere")
    shown = field_lines(ok(ctl(dirs, "session", "show", session["id"])))
    assert shown["workspace"] == (
        f"{session['workspace']['path']} (worktree, wrong_branch); elsewhere is checked out"
    )


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_session_show_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], position: str
) -> None:
    session = new_session(dirs, project)
    make_work(session)
    printed = json.loads(ok(ctl(dirs, *json_args(position, "session", "show", session["id"]))))
    assert printed == get_session(dirs, session["id"])
    assert printed["git"]["dirty"] is True


# ---- session diff -----------------------------------------------------------------


def test_session_diff_lists_changed_files(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    workspace = make_work(session)
    (workspace / "src" / "app.py").unlink()
    lines = ok(ctl(dirs, "session", "diff", session["id"][:10])).splitlines()
    assert lines[0].split() == ["STATUS", "PATH", "+", "-"]
    assert sorted(line.split() for line in lines[1:-1]) == [
        ["added", "notes.txt", "+3", "-0"],
        ["deleted", "src/app.py", "+0", "-1"],
        ["modified", "README.md", "+1", "-0"],
    ]
    base = session["workspace"]["base_commit"][:7]
    assert lines[-1] == f"3 file(s) changed, +4 -1 against {base}"


def test_session_diff_of_an_untouched_session_says_so(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    output = ok(ctl(dirs, "session", "diff", session["id"]))
    assert output == f"no changes against {session['workspace']['base_commit'][:7]}\n"


def test_session_diff_patch_applies_to_the_base(
    dirs: DaemonDirs, project: dict[str, Any], tmp_path: Path
) -> None:
    session = new_session(dirs, project)
    workspace = make_work(session)
    git(workspace, "add", "notes.txt")
    git(workspace, "commit", "-q", "-m", "notes")  # committed and uncommitted work both count
    patch = ok(ctl(dirs, "session", "diff", session["id"], "--patch"))
    assert patch.startswith("diff --git")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", project["path"], str(clone))
    subprocess.run(
        ["git", "apply"], cwd=clone, input=patch, text=True, check=True, timeout=RUN_TIMEOUT_S
    )
    assert (clone / "README.md").read_text() == (workspace / "README.md").read_text()
    assert (clone / "notes.txt").read_text() == "one\ntwo\nthree\n"


@pytest.mark.parametrize("patch", [False, True], ids=["files", "patch"])
def test_session_diff_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], patch: bool
) -> None:
    session = new_session(dirs, project)
    make_work(session)
    args = ["session", "diff", session["id"], "--json", *(["--patch"] if patch else [])]
    printed = json.loads(ok(ctl(dirs, *args)))
    assert printed == rpc(dirs, "session.diff", {"session": session["id"], "patch": patch})
    assert printed["files_changed"] == 2


def test_session_diff_of_an_in_place_session_works(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project, workspace="in_place")
    (Path(project["path"]) / "in-place.txt").write_text("x\n")
    lines = ok(ctl(dirs, "session", "diff", session["id"])).splitlines()
    assert ["added", "in-place.txt", "+1", "-0"] in [line.split() for line in lines]


def test_session_diff_of_a_removed_worktree_exits_6(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    rpc(dirs, "session.delete", {"session": session["id"]})
    assert "restore" in failed(ctl(dirs, "session", "diff", session["id"]), EXIT_INVALID_STATE)


# ---- session config ---------------------------------------------------------------


def test_session_config_prints_effective_values_as_toml(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project, config={"token_budget": 5000, "env": {"A": "1"}})
    output = ok(ctl(dirs, "session", "config", session["id"]))
    lines = output.splitlines()
    assert "token_budget = 5000" in lines
    assert "[env]" in lines
    assert 'A = "1"' in lines
    assert "# setup_command is not set" in lines
    effective = rpc(dirs, "session.config", {"session": session["id"]})["effective"]
    assert tomllib.loads(output) == {k: v for k, v in effective.items() if v is not None}


def test_session_config_masks_secrets(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    secret = {"env": {"API_KEY": {"value": "sk-very-secret", "secret": True}}}
    session = new_session(dirs, project, config=secret)
    for args in ([], ["--explain"], ["--json"]):
        output = ok(ctl(dirs, "session", "config", session["id"], *args))
        assert "sk-very-secret" not in output
        assert "***" in output


def test_session_config_explain_names_each_values_layer(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    rpc(dirs, "project.update", {"project": project["id"], "config": {"agent": "goose"}})
    session = new_session(dirs, project, config={"token_budget": 5000})
    lines = ok(ctl(dirs, "session", "config", session["id"], "--explain")).splitlines()
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["agent"] == ["agent", '"goose"', "project"]
    assert rows["token_budget"] == ["token_budget", "5000", "session"]
    assert rows["setup_command"] == ["setup_command", "null", "builtin"]
    assert rows["tool_policy.execute"] == ["tool_policy.execute", '"ask"', "builtin"]


@pytest.mark.parametrize("explain", [False, True], ids=["values", "explain"])
def test_session_config_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], explain: bool
) -> None:
    session = new_session(dirs, project, config={"copy_files": [".env"]})
    args = ["session", "config", session["id"], "--json", *(["--explain"] if explain else [])]
    printed = json.loads(ok(ctl(dirs, *args)))
    assert printed == rpc(dirs, "session.config", {"session": session["id"]})


# ---- session update ---------------------------------------------------------------


def test_session_update_changes_title_task_and_config(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project, title="old", config={"token_budget": 1})
    args = ["--title", "new", "--task", "the task", "--config", '{"agent": "goose"}']
    shown = field_lines(ok(ctl(dirs, "session", "update", session["id"][:12], *args)))
    assert (shown["id"], shown["title"], shown["task"]) == (session["id"], "new", "the task")
    updated = get_session(dirs, session["id"])
    assert (updated["title"], updated["task"], updated["config"]) == (
        "new",
        "the task",
        {"agent": "goose"},
    )


def test_session_update_leaves_other_fields_alone(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project, title="kept", task="kept too", config={"token_budget": 1})
    ok(ctl(dirs, "session", "update", session["id"], "--title", "changed"))
    updated = get_session(dirs, session["id"])
    assert (updated["task"], updated["config"]) == ("kept too", {"token_budget": 1})


def test_session_update_without_changes_exits_2(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    assert "--title" in failed(ctl(dirs, "session", "update", session["id"]), EXIT_USAGE)


def test_session_update_with_an_invalid_config_exits_2_and_changes_nothing(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project, config={"token_budget": 1})
    args = ["session", "update", session["id"], "--config", '{"no_such_key": 1}']
    assert "no_such_key" in failed(ctl(dirs, *args), EXIT_USAGE)
    assert get_session(dirs, session["id"])["config"] == {"token_budget": 1}


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_session_update_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], position: str
) -> None:
    session = new_session(dirs, project)
    args = json_args(position, "session", "update", session["id"], "--title", "json")
    printed = json.loads(ok(ctl(dirs, *args)))
    assert without_git(printed) == without_git(get_session(dirs, session["id"]))
    assert printed["title"] == "json"


# ---- session archive, rm, restore ---------------------------------------------------


def test_session_archive_hides_the_session_and_keeps_its_workspace(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    output = ok(ctl(dirs, "session", "archive", session["id"][:10]))
    assert output.startswith(f"archived session {session['id']} (workspace kept;")
    assert get_session(dirs, session["id"])["status"] == "archived"
    assert Path(session["workspace"]["path"]).is_dir()
    assert ls_rows(ok(ctl(dirs, "session", "ls", "-p", project["id"], "-a")))
    assert "no sessions" in ok(ctl(dirs, "session", "ls", "-p", project["id"]))


def test_session_archive_twice_exits_6(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    ok(ctl(dirs, "session", "archive", session["id"]))
    failed(ctl(dirs, "session", "archive", session["id"]), EXIT_INVALID_STATE)


def test_session_rm_snapshots_the_work_and_says_how_to_restore(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    workspace = make_work(session)
    lines = ok(ctl(dirs, "session", "rm", session["id"][:10])).splitlines()
    ref = f"refs/mimir/snapshots/{session['id']}"
    commit = git(Path(project["path"]), "rev-parse", ref).strip()
    assert lines == [
        f"deleted session {session['id']}",
        f"work saved in {ref} (commit {commit[:7]}, 2 uncommitted file(s))",
        f"workspace {workspace} removed",
        f"branch {session['workspace']['branch']} kept",
        f"restore it with: mimirctl session restore {session['id']}",
    ]
    assert not workspace.exists()
    assert get_session(dirs, session["id"])["status"] == "deleted"


def test_session_rm_delete_branch_deletes_the_branch(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    branch = session["workspace"]["branch"]
    output = ok(ctl(dirs, "session", "rm", session["id"], "--delete-branch"))
    assert f"branch {branch} deleted" in output.splitlines()
    assert git(Path(project["path"]), "branch", "--list", branch).strip() == ""


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_session_rm_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], position: str
) -> None:
    session = new_session(dirs, project)
    make_work(session)
    printed = json.loads(ok(ctl(dirs, *json_args(position, "session", "rm", session["id"]))))
    assert without_git(printed["session"]) == without_git(get_session(dirs, session["id"]))
    ref = f"refs/mimir/snapshots/{session['id']}"
    assert printed["snapshot"] == {
        "ref": ref,
        "commit": git(Path(project["path"]), "rev-parse", ref).strip(),
        "files": 2,
    }


def test_session_restore_brings_the_work_back(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    workspace = make_work(session)
    (workspace / "binary.bin").write_bytes(bytes(range(256)))
    before = files_in(workspace)
    ok(ctl(dirs, "session", "rm", session["id"]))
    lines = ok(ctl(dirs, "session", "restore", session["id"][:10])).splitlines()
    assert lines == [
        f"restored session {session['id']} (created)",
        f"workspace: {workspace} (worktree, ok)",
    ]
    assert files_in(workspace) == before
    assert get_session(dirs, session["id"])["status"] == "created"


def test_session_restore_of_a_clean_deleted_session_brings_the_worktree_back(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    ok(ctl(dirs, "session", "rm", session["id"]))
    ok(ctl(dirs, "session", "restore", session["id"]))
    assert (Path(session["workspace"]["path"]) / "README.md").read_text() == "hello\n"


def test_session_restore_of_an_archived_session_unarchives_it(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    rpc(dirs, "session.archive", {"session": session["id"]})
    ok(ctl(dirs, "session", "restore", session["id"]))
    assert get_session(dirs, session["id"])["status"] == "created"


def test_session_restore_of_a_live_session_exits_6(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    failed(ctl(dirs, "session", "restore", session["id"]), EXIT_INVALID_STATE)


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_session_restore_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], position: str
) -> None:
    session = new_session(dirs, project)
    rpc(dirs, "session.delete", {"session": session["id"]})
    printed = json.loads(ok(ctl(dirs, *json_args(position, "session", "restore", session["id"]))))
    assert without_git(printed) == without_git(get_session(dirs, session["id"]))


# ---- session repair ---------------------------------------------------------------


def test_session_repair_recreates_a_missing_worktree(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    workspace = Path(session["workspace"]["path"])
    subprocess.run(["rm", "-rf", str(workspace)], check=True)
    output = ok(ctl(dirs, "session", "repair", session["id"]))
    assert output == f"session {session['id']}: workspace {workspace} (worktree, ok)\n"
    assert (workspace / "README.md").is_file()


def test_session_repair_of_a_healthy_session_changes_nothing(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    printed = json.loads(ok(ctl(dirs, "session", "repair", session["id"], "--json")))
    assert without_git(printed) == without_git(get_session(dirs, session["id"]))
    assert printed["workspace"]["state"] == "ok"


# ---- session log ------------------------------------------------------------------


def test_session_log_prints_one_line_per_event(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    rpc(dirs, "session.update", {"session": session["id"], "title": "x"})
    lines = ok(ctl(dirs, "session", "log", session["id"][:10])).splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "KIND", "DATA"]
    events = rpc(dirs, "session.events", {"session": session["id"]})["events"]
    assert len(lines) == len(events) + 1
    for line, event in zip(lines[1:], events, strict=True):
        assert line.split(maxsplit=3)[:3] == [str(event["seq"]), event["created_at"], event["kind"]]
    kinds = [line.split()[2] for line in lines[1:]]
    assert kinds[:2] == ["session_created", "workspace_created"]
    assert "session_updated" in kinds
    updated = next(line for line in lines if "session_updated" in line)
    assert updated.endswith('fields=["title"]')
    created = next(line for line in lines if "session_created" in line)
    assert created.endswith("status=created")


def test_session_log_after_skips_earlier_events(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    rpc(dirs, "session.update", {"session": session["id"], "title": "x"})
    lines = ok(ctl(dirs, "session", "log", session["id"], "--after", "1")).splitlines()
    assert [line.split()[0] for line in lines[1:]] == [
        str(seq) for seq in range(2, get_session(dirs, session["id"])["last_seq"] + 1)
    ]


def test_session_log_after_the_last_event_says_so(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    output = ok(ctl(dirs, "session", "log", session["id"], "--after", "999"))
    assert output == "no events after 999\n"


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_session_log_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], position: str
) -> None:
    session = new_session(dirs, project, config={"setup_command": "echo set up"})
    printed = json.loads(ok(ctl(dirs, *json_args(position, "session", "log", session["id"]))))
    assert printed == rpc(dirs, "session.events", {"session": session["id"]})
    assert "setup_output" in [e["kind"] for e in printed["events"]]


def test_session_log_limit_caps_the_events(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    printed = json.loads(ok(ctl(dirs, "session", "log", session["id"], "--limit", "1", "--json")))
    assert [e["seq"] for e in printed["events"]] == [1]


# ---- ids ----------------------------------------------------------------------------


def common_prefix(a: str, b: str) -> str:
    length = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    return a[:length]


@pytest.mark.parametrize(
    "command",
    [["show"], ["diff"], ["config"], ["update", "--title", "x"], ["archive"], ["rm"], ["log"]],
    ids=lambda c: c[0],
)
def test_an_ambiguous_id_prefix_exits_2_and_names_the_matches(
    dirs: DaemonDirs, project: dict[str, Any], command: list[str]
) -> None:
    first, second = new_session(dirs, project), new_session(dirs, project)
    prefix = common_prefix(first["id"], second["id"])
    assert len(prefix) >= 4  # ids begin with their creation time
    message = failed(ctl(dirs, "session", command[0], prefix[:8], *command[1:]), EXIT_USAGE)
    assert "ambiguous" in message
    assert get_session(dirs, first["id"])["status"] == "created"


@pytest.mark.parametrize(
    "command",
    [
        ["show"],
        ["diff"],
        ["config"],
        ["update", "--title", "x"],
        ["archive"],
        ["rm"],
        ["restore"],
        ["repair"],
        ["log"],
    ],
    ids=lambda c: c[0],
)
def test_an_unknown_session_exits_4(dirs: DaemonDirs, command: list[str]) -> None:
    message = failed(ctl(dirs, "session", command[0], "zzzzzzzz", *command[1:]), EXIT_NOT_FOUND)
    assert "zzzzzzzz" in message


@pytest.mark.parametrize("command", [["show"], ["rm", "--force"], ["log"]], ids=lambda c: c[0])
def test_a_prefix_shorter_than_4_characters_exits_2(dirs: DaemonDirs, command: list[str]) -> None:
    message = failed(ctl(dirs, "session", command[0], "01m", *command[1:]), EXIT_USAGE)
    assert "at least 4 characters" in message


def test_ids_are_case_insensitive(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    shown = field_lines(ok(ctl(dirs, "session", "show", session["id"].upper())))
    assert shown["id"] == session["id"]


# ---- worktree ls / prune ------------------------------------------------------------


def make_orphan(dirs: DaemonDirs, project: dict[str, Any], name: str) -> Path:
    """A worktree of the project under the daemon's worktrees dir that no session owns."""
    path: Path = dirs.data / "worktrees" / project["name"] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    git(Path(project["path"]), "worktree", "add", "-q", "-b", f"orphan/{name}", str(path))
    return path


def test_worktree_ls_shows_each_sessions_worktree(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    deleted = new_session(dirs, project)
    rpc(dirs, "session.delete", {"session": deleted["id"]})
    rows = worktree_rows(ok(ctl(dirs, "worktree", "ls", "--project", project["name"])))
    assert rows[session["workspace"]["path"]] == [
        session["id"][:10],
        "created",
        project["name"],
        "ok",
        session["workspace"]["branch"],
        session["workspace"]["path"],
    ]
    assert rows[deleted["workspace"]["path"]][1:4] == ["deleted", project["name"], "removed"]


def test_worktree_ls_shows_the_state_checked_now(dirs: DaemonDirs, project: dict[str, Any]) -> None:
    session = new_session(dirs, project)
    subprocess.run(["rm", "-rf", session["workspace"]["path"]], check=True)
    rows = worktree_rows(ok(ctl(dirs, "worktree", "ls", "-p", project["id"])))
    assert rows[session["workspace"]["path"]][3] == "missing"


def test_worktree_ls_lists_orphans_after_the_table(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    new_session(dirs, project)
    orphan = make_orphan(dirs, project, "ls-orphan")
    try:
        output = ok(ctl(dirs, "worktree", "ls"))
        table, orphans = output.split("\n\n")
        assert orphans.splitlines()[0].startswith("orphans (no session owns them;")
        assert f"  {orphan}" in orphans.splitlines()
        assert str(orphan) not in table
    finally:
        git(Path(project["path"]), "worktree", "remove", "--force", str(orphan))


def test_worktree_ls_of_one_project_does_not_call_other_projects_worktrees_orphans(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    mine = add_project(dirs, make_repo(tmp_path / "mine", FILES))
    other = add_project(dirs, make_repo(tmp_path / "other", FILES))
    theirs = new_session(dirs, other)
    printed = json.loads(ok(ctl(dirs, "worktree", "ls", "-p", mine["id"], "--json")))
    assert theirs["workspace"]["path"] not in printed["orphans"]


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_worktree_ls_json_matches_the_wire_result(
    dirs: DaemonDirs, project: dict[str, Any], position: str
) -> None:
    new_session(dirs, project)
    printed = json.loads(ok(ctl(dirs, *json_args(position, "worktree", "ls"))))
    assert printed == rpc(dirs, "worktree.list")


def test_worktree_prune_dry_run_names_orphans_and_removes_nothing(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    orphan = make_orphan(dirs, project, "dry-orphan")
    try:
        output = ok(ctl(dirs, "worktree", "prune", "--dry-run"))
        assert output.startswith("would remove ")
        assert str(orphan) in output
        assert orphan.is_dir()
    finally:
        git(Path(project["path"]), "worktree", "remove", "--force", str(orphan))


def test_worktree_prune_removes_orphans_and_saves_their_work(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project)
    orphan = make_orphan(dirs, project, "pruned-orphan")
    (orphan / "precious.txt").write_text("keep me\n")
    output = ok(ctl(dirs, "worktree", "prune"))
    assert output.startswith("removed ")
    assert str(orphan) in output
    assert not orphan.exists()
    refs = git(Path(project["path"]), "for-each-ref", "--format=%(refname)", "refs/mimir/orphans/")
    (ref,) = [r for r in refs.split() if r.startswith("refs/mimir/orphans/pruned-orphan-")]
    assert f"  {ref} (commit " in output
    assert git(Path(project["path"]), "show", f"{ref}:precious.txt") == "keep me\n"
    assert Path(session["workspace"]["path"]).is_dir()  # a live session's worktree stays


def test_worktree_prune_with_nothing_to_do_says_so(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    new_session(dirs, project)
    ok(ctl(dirs, "worktree", "prune"))  # whatever earlier tests left
    assert ok(ctl(dirs, "worktree", "prune")) == "nothing to prune\n"


def test_worktree_prune_of_one_project_leaves_other_projects_alone(tmp_path: Path) -> None:
    # A daemon of its own: were this broken, it would remove other sessions' worktrees.
    with short_tmpdir() as root:
        own = DaemonDirs(root)
        own.config.write_text("")
        with daemon_process(own) as process:
            mine = add_project(own, make_repo(tmp_path / "mine", FILES))
            other = add_project(own, make_repo(tmp_path / "other", FILES))
            theirs = new_session(own, other)
            ok(ctl(own, "worktree", "prune", "--project", mine["id"]))
            assert Path(theirs["workspace"]["path"]).is_dir()
            process.terminate()


def test_worktree_prune_json_matches_the_wire_shape(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    orphan = make_orphan(dirs, project, "json-orphan")
    try:
        printed = json.loads(ok(ctl(dirs, "worktree", "prune", "--dry-run", "--json")))
        assert printed == rpc(dirs, "worktree.prune", {"dry_run": True})
        assert str(orphan) in [w["path"] for w in printed["removed"]]
    finally:
        git(Path(project["path"]), "worktree", "remove", "--force", str(orphan))


# ---- exit codes and staying light ----------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["session"], id="no-session-command"),
        pytest.param(["session", "show"], id="missing-id"),
        pytest.param(["session", "new"], id="missing-project"),
        pytest.param(["session", "ls", "--limit", "many"], id="bad-limit"),
        pytest.param(["worktree"], id="no-worktree-command"),
    ],
)
def test_a_usage_error_exits_2_with_the_usage(dirs: DaemonDirs, args: list[str]) -> None:
    result = ctl(dirs, *args)
    assert (result.returncode, result.stdout) == (EXIT_USAGE, ""), result
    assert "usage: mimirctl" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["session", "ls"], ["session", "show", "abcd"], ["worktree", "ls", "--json"]],
    ids=["session-ls", "session-show", "worktree-ls"],
)
def test_without_a_daemon_session_commands_exit_3(args: list[str]) -> None:
    with short_tmpdir() as root:
        message = failed(run_mimirctl(DaemonDirs(root), *args), EXIT_NOT_RUNNING)
    assert "mimird is not running" in message


@pytest.mark.parametrize(
    "args",
    [["session", "ls"], ["session", "ls", "--json", "--since", "2h"], ["worktree", "ls"]],
    ids=["session-ls", "session-ls-json", "worktree-ls"],
)
def test_session_commands_import_nothing_of_the_daemons_heavy_machinery(
    dirs: DaemonDirs, args: list[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mimirctl", *args],
        env=dirs.env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == EXIT_OK, result
    modules = imported_modules(result.stderr)
    assert {"mimirctl.cli", "mimirctl.client", "mimird.wire.codes"} <= modules
    heavy = sorted(
        m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY_MODULES)
    )
    assert heavy == []


# ---- rendering (no daemon needed) ----------------------------------------------------


def test_toml_lines_is_valid_toml_of_every_set_value() -> None:
    values = {
        "agent": "open code",
        "token_budget": None,
        "copy_files": [".env", 'a "quoted" name'],
        "env": {"A": "1", "WEIRD KEY": "x", "S": {"value": "***", "secret": True}},
        "tool_policy": {},
        "flag": True,
    }
    assert tomllib.loads(render.toml_lines(values)) == {
        k: v for k, v in values.items() if v is not None
    }


def test_compact_data_keeps_plain_words_bare_and_quotes_the_rest() -> None:
    data = {"status": "created", "text": "two words\n", "n": 3, "files": ["a"], "empty": ""}
    assert render.compact(data) == 'status=created text="two words\\n" n=3 files=["a"] empty=""'


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(5, "5s ago"), (125, "2m ago"), (3 * 3600, "3h ago"), (6 * 86400, "6d ago"), (-3, "just now")],
)
def test_age_says_how_long_ago(seconds: int, expected: str) -> None:
    when = NOW - dt.timedelta(seconds=seconds)
    assert render.age(when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), now=NOW) == expected


def test_age_of_an_old_time_is_its_date() -> None:
    assert render.age("2025-01-02T03:04:05.000000Z", now=NOW) == "2025-01-02"


# ---- session done -----------------------------------------------------------------


def test_session_done_completes_with_a_note_and_show_prints_the_durations(
    dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = new_session(dirs, project, title="finished")
    output = ok(ctl(dirs, "session", "done", session["id"][:12], "--note", "all tests pass"))
    assert output.startswith(f"completed session {session['id']} (workspace and branch kept")
    shown = field_lines(ok(ctl(dirs, "session", "show", session["id"])))
    assert shown["status"] == "completed"
    assert shown["completed"] == get_session(dirs, session["id"])["completed_at"]
    assert shown["active"] == "0.0s"
    assert shown["wall"].endswith("s")
    events = rpc(dirs, "session.events", {"session": session["id"], "kind": "session_completed"})
    assert [e["data"] for e in events["events"]] == [{"by": "client", "note": "all tests pass"}]
    rows = ls_rows(ok(ctl(dirs, "session", "ls", "--by-completion", "-p", project["id"])))
    assert list(rows) == [render.short_id(session["id"])]
    again = failed(ctl(dirs, "session", "done", session["id"]), EXIT_INVALID_STATE)
    assert "it is completed" in again
