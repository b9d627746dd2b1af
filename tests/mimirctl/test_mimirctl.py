"""mimirctl driven as a user would: a real mimird process, `python -m mimirctl` in a
subprocess, output and exit codes checked.

One daemon serves the whole module; every test works on projects with names of
its own, so the order the tests run in does not matter.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

import mimird
from tests.support.helpers import (
    DaemonDirs,
    DaemonProcess,
    add_project_blocking,
    blocking_call,
    module_daemon_fixtures,
    rpc,
    run_mimirctl,
    short_tmpdir,
)

RUN_TIMEOUT_S: Final = 30
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3
EXIT_NOT_FOUND: Final = 4
EXIT_ALREADY_EXISTS: Final = 5
EXIT_INVALID_STATE: Final = 6

#: Where --json goes: before the command words, or after them.
JSON_POSITIONS: Final = ["before", "after"]

_names = itertools.count()


# ---- fixtures and helpers ---------------------------------------------------------


ctl_dirs, mimird_process, dirs = module_daemon_fixtures()


def unique(stem: str) -> str:
    return f"{stem}-{os.getpid()}-{next(_names)}"


def json_args(position: str, *args: str) -> list[str]:
    return ["--json", *args] if position == "before" else [*args, "--json"]


def rpc_error(dirs: DaemonDirs, method: str, params: Any = None) -> dict[str, Any]:
    response = blocking_call(dirs.socket, method, params)
    assert "error" in response, response
    error: dict[str, Any] = response["error"]
    return error


def make_project_dir(parent: Path, stem: str, files: dict[str, str] | None = None) -> Path:
    path = parent / unique(stem)
    path.mkdir(parents=True)
    for name, text in (files or {}).items():
        (path / name).write_text(text)
    return path.resolve()


def add_project(dirs: DaemonDirs, parent: Path, **params: Any) -> dict[str, Any]:
    """A project in a new directory ``parent/proj``, registered over the socket (not
    through mimirctl)."""
    return add_project_blocking(dirs, make_project_dir(parent, "proj"), **params)


def get_project(dirs: DaemonDirs, ref: str) -> dict[str, Any]:
    project: dict[str, Any] = rpc(dirs, "project.get", {"project": ref})
    return project


def insert_sessions(dirs: DaemonDirs, project_id: str, count: int) -> None:
    now = "2026-01-01T00:00:00.000000Z"
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=RUN_TIMEOUT_S)) as db, db:
        db.executemany(
            "INSERT INTO sessions (id, project_id, title, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(f"{project_id}-s{i}", project_id, "", "idle", now, now) for i in range(count)],
        )


def mimirctl_in(
    dirs: DaemonDirs, cwd: Path, *args: str, python_flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Like run_mimirctl, from a working directory of our choosing."""
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "mimirctl", *args],
        cwd=cwd,
        env=dirs.env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (EXIT_OK, ""), result
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one-line message of a command that must fail with this exit code."""
    assert result.returncode == code, result
    assert result.stdout == "", result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mimirctl: "), result.stderr
    return lines[0]


def listed_names(output: str) -> list[str]:
    """The NAME column of `project ls`, header excluded (none when it lists none: the
    module's daemon holds only what the tests run before in this process made)."""
    lines = output.splitlines()
    if lines == ["no projects (use --all to include archived ones)"]:
        return []
    assert lines[0].split()[:5] == ["NAME", "TYPE", "SESSIONS", "PATH", "ID"], output
    return [line.split()[0] for line in lines[1:]]


# ---- status -----------------------------------------------------------------------


def test_status_shows_the_version_and_the_socket(dirs: DaemonDirs) -> None:
    lines = ok(run_mimirctl(dirs, "status")).splitlines()
    assert any(line.startswith("mimird:") and mimird.__version__ in line for line in lines)
    assert any(line.split() == ["socket:", str(dirs.socket)] for line in lines)


def test_status_shows_the_daemon_pid(dirs: DaemonDirs, mimird_process: DaemonProcess) -> None:
    first = ok(run_mimirctl(dirs, "status")).splitlines()[0]
    assert f"pid {mimird_process.proc.pid}" in first


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_status_json_matches_the_wire_result(
    dirs: DaemonDirs, mimird_process: DaemonProcess, position: str
) -> None:
    printed = json.loads(ok(run_mimirctl(dirs, *json_args(position, "status"))))
    wire = rpc(dirs, "daemon.status")
    assert printed.keys() == wire.keys()
    moving = {"uptime_s", "counts", "database_size_bytes"}
    assert {k: v for k, v in printed.items() if k not in moving} == {
        k: v for k, v in wire.items() if k not in moving
    }
    assert printed["pid"] == mimird_process.proc.pid


def test_the_socket_flag_selects_the_daemon(dirs: DaemonDirs) -> None:
    with short_tmpdir() as elsewhere:
        nowhere = DaemonDirs(elsewhere)
        result = run_mimirctl(nowhere, "--socket", str(dirs.socket), "status")
    assert str(dirs.socket) in ok(result)


# ---- project add ------------------------------------------------------------------


def test_project_add_registers_a_directory(dirs: DaemonDirs, tmp_path: Path) -> None:
    path = make_project_dir(tmp_path, "app", {"pyproject.toml": ""})
    output = ok(run_mimirctl(dirs, "project", "add", str(path)))
    project = rpc(dirs, "project.get", {"project": path.name})
    assert output.splitlines() == [
        f"added project {path.name} (python) at {path}",
        f"id: {project['id']}",
    ]


def test_project_add_resolves_a_relative_path_against_the_working_directory(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    path = make_project_dir(tmp_path, "rel")
    ok(mimirctl_in(dirs, tmp_path, "project", "add", path.name))
    assert get_project(dirs, path.name)["path"] == str(path)


def test_project_add_of_dot_registers_the_working_directory(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    path = make_project_dir(tmp_path, "dot")
    ok(mimirctl_in(dirs, path, "project", "add", "."))
    assert get_project(dirs, path.name)["path"] == str(path)


def test_project_add_expands_a_tilde(dirs: DaemonDirs) -> None:
    path = make_project_dir(dirs.root / "home", "tilde")
    ok(run_mimirctl(dirs, "project", "add", f"~/{path.name}"))
    assert get_project(dirs, path.name)["path"] == str(path)


def test_project_add_stores_name_description_and_config(dirs: DaemonDirs, tmp_path: Path) -> None:
    path = make_project_dir(tmp_path, "opts")
    name = unique("named")
    ok(
        run_mimirctl(
            dirs,
            "project",
            "add",
            str(path),
            "--name",
            name,
            "--description",
            "a fine project",
            "--config",
            '{"agent": "opencode", "token_budget": 3}',
        )
    )
    project = get_project(dirs, name)
    assert (project["path"], project["description"], project["config"]) == (
        str(path),
        "a fine project",
        {"agent": "opencode", "token_budget": 3},
    )


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_project_add_json_matches_the_wire_result(
    dirs: DaemonDirs, tmp_path: Path, position: str
) -> None:
    path = make_project_dir(tmp_path, "json")
    printed = json.loads(ok(run_mimirctl(dirs, *json_args(position, "project", "add", str(path)))))
    assert printed == get_project(dirs, path.name)


def test_project_add_of_a_registered_path_exits_5(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    message = failed(
        run_mimirctl(dirs, "project", "add", project["path"], "--name", unique("dup")),
        EXIT_ALREADY_EXISTS,
    )
    assert project["id"] in message


def test_project_add_with_a_taken_name_exits_5(dirs: DaemonDirs, tmp_path: Path) -> None:
    taken = add_project(dirs, tmp_path)
    path = make_project_dir(tmp_path, "other")
    failed(
        run_mimirctl(dirs, "project", "add", str(path), "--name", taken["name"]),
        EXIT_ALREADY_EXISTS,
    )
    assert rpc_error(dirs, "project.get", {"project": path.name})["code"] == -32001


def test_project_add_of_a_missing_path_exits_2(dirs: DaemonDirs, tmp_path: Path) -> None:
    message = failed(run_mimirctl(dirs, "project", "add", str(tmp_path / "missing")), EXIT_USAGE)
    assert "does not exist" in message


@pytest.mark.parametrize(
    "config", ["{not json", "[1, 2]", '"agent"'], ids=["malformed", "array", "string"]
)
def test_project_add_with_a_config_that_is_not_a_json_object_exits_2(
    dirs: DaemonDirs, tmp_path: Path, config: str
) -> None:
    path = make_project_dir(tmp_path, "badcfg")
    message = failed(
        run_mimirctl(dirs, "project", "add", str(path), "--config", config), EXIT_USAGE
    )
    assert "--config" in message
    assert rpc_error(dirs, "project.get", {"project": path.name})["code"] == -32001


# ---- project ls -------------------------------------------------------------------


def test_project_ls_lists_projects_by_name(dirs: DaemonDirs, tmp_path: Path) -> None:
    stem = unique("ls")
    for suffix in ["c", "a", "b"]:
        add_project(dirs, tmp_path, name=f"{stem}-{suffix}")
    names = [n for n in listed_names(ok(run_mimirctl(dirs, "project", "ls"))) if stem in n]
    assert names == [f"{stem}-a", f"{stem}-b", f"{stem}-c"]


def test_project_ls_shows_type_path_and_id(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    rows = ok(run_mimirctl(dirs, "project", "ls")).splitlines()
    assert [project["name"], project["type"], "0", project["path"], project["id"]] in [
        row.split() for row in rows
    ]


def test_project_ls_hides_archived_projects(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    rpc(dirs, "project.update", {"project": project["id"], "archived": True})
    assert project["name"] not in listed_names(ok(run_mimirctl(dirs, "project", "ls")))


def test_project_ls_all_shows_archived_projects_marked(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    rpc(dirs, "project.update", {"project": project["id"], "archived": True})
    rows = [row.split() for row in ok(run_mimirctl(dirs, "project", "ls", "--all")).splitlines()]
    assert rows[0][-1] == "ARCHIVED"
    assert [project["name"], project["type"], "0", project["path"], project["id"], "yes"] in rows


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_project_ls_json_matches_the_wire_result(
    dirs: DaemonDirs, tmp_path: Path, position: str
) -> None:
    add_project(dirs, tmp_path)
    printed = json.loads(ok(run_mimirctl(dirs, *json_args(position, "project", "ls"))))
    assert printed == rpc(dirs, "project.list")


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_project_ls_all_json_matches_the_wire_result(
    dirs: DaemonDirs, tmp_path: Path, position: str
) -> None:
    project = add_project(dirs, tmp_path)
    rpc(dirs, "project.update", {"project": project["id"], "archived": True})
    printed = json.loads(ok(run_mimirctl(dirs, *json_args(position, "project", "ls", "--all"))))
    assert printed == rpc(dirs, "project.list", {"include_archived": True})


# ---- project show -----------------------------------------------------------------


@pytest.mark.parametrize("ref", ["name", "id"])
def test_project_show_prints_the_projects_fields(
    dirs: DaemonDirs, tmp_path: Path, ref: str
) -> None:
    project = add_project(dirs, tmp_path, description="shown", config={"agent": "x"})
    fields = dict(
        line.split(":", 1)
        for line in ok(run_mimirctl(dirs, "project", "show", project[ref])).splitlines()
    )
    shown = {key: value.strip() for key, value in fields.items()}
    assert shown["name"] == project["name"]
    assert shown["id"] == project["id"]
    assert shown["path"] == project["path"]
    assert shown["description"] == "shown"
    assert json.loads(shown["config"]) == {"agent": "x"}
    assert (shown["archived"], shown["sessions"]) == ("no", "0")


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_project_show_json_matches_the_wire_result(
    dirs: DaemonDirs, tmp_path: Path, position: str
) -> None:
    project = add_project(dirs, tmp_path)
    printed = json.loads(
        ok(run_mimirctl(dirs, *json_args(position, "project", "show", project["name"])))
    )
    assert printed == get_project(dirs, project["id"])


def test_project_show_counts_sessions(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    insert_sessions(dirs, project["id"], 2)
    printed = json.loads(ok(run_mimirctl(dirs, "project", "show", project["id"], "--json")))
    assert printed["sessions"] == 2


# ---- project update ---------------------------------------------------------------


def test_project_update_renames_a_project(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    new_name = unique("renamed")
    output = ok(run_mimirctl(dirs, "project", "update", project["name"], "--name", new_name))
    assert f"name:        {new_name}" in output.splitlines()
    assert get_project(dirs, new_name)["id"] == project["id"]


def test_project_update_changes_the_description(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path, description="old")
    ok(run_mimirctl(dirs, "project", "update", project["id"], "--description", "new"))
    assert get_project(dirs, project["id"])["description"] == "new"


def test_project_update_replaces_the_config(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path, config={"agent": "a1"})
    ok(
        run_mimirctl(
            dirs, "project", "update", project["id"], "--config", '{"copy_files": [".env"]}'
        )
    )
    assert get_project(dirs, project["id"])["config"] == {"copy_files": [".env"]}


def test_project_update_leaves_other_fields_alone(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path, description="kept", config={"agent": "v"})
    ok(run_mimirctl(dirs, "project", "update", project["id"], "--name", unique("moved")))
    updated = get_project(dirs, project["id"])
    assert (updated["description"], updated["config"]) == ("kept", {"agent": "v"})


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_project_update_json_matches_the_wire_result(
    dirs: DaemonDirs, tmp_path: Path, position: str
) -> None:
    project = add_project(dirs, tmp_path)
    args = json_args(position, "project", "update", project["id"], "--description", "via json")
    printed = json.loads(ok(run_mimirctl(dirs, *args)))
    assert printed == get_project(dirs, project["id"])
    assert printed["description"] == "via json"


def test_project_update_without_changes_exits_2(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    message = failed(run_mimirctl(dirs, "project", "update", project["id"]), EXIT_USAGE)
    assert "--name" in message
    assert get_project(dirs, project["id"]) == project


def test_project_update_with_invalid_config_json_exits_2_and_changes_nothing(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    project = add_project(dirs, tmp_path, config={"agent": "a1"})
    args = ["project", "update", project["id"], "--description", "no", "--config", "{a: 1}"]
    failed(run_mimirctl(dirs, *args), EXIT_USAGE)
    assert get_project(dirs, project["id"]) == project


def test_project_update_to_a_taken_name_exits_5_and_changes_nothing(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    taken = add_project(dirs, tmp_path)
    project = add_project(dirs, tmp_path)
    failed(
        run_mimirctl(dirs, "project", "update", project["id"], "--name", taken["name"]),
        EXIT_ALREADY_EXISTS,
    )
    assert get_project(dirs, project["id"]) == project


def test_project_update_to_an_invalid_name_exits_2(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    failed(run_mimirctl(dirs, "project", "update", project["id"], "--name", "a/b"), EXIT_USAGE)
    assert get_project(dirs, project["id"]) == project


# ---- project archive --------------------------------------------------------------


def test_project_archive_hides_the_project_from_ls(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    output = ok(run_mimirctl(dirs, "project", "archive", project["name"]))
    assert output == f"archived project {project['name']}\n"
    assert get_project(dirs, project["id"])["archived"] is True
    assert project["name"] not in listed_names(ok(run_mimirctl(dirs, "project", "ls")))


def test_project_archive_undo_brings_the_project_back(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    rpc(dirs, "project.update", {"project": project["id"], "archived": True})
    output = ok(run_mimirctl(dirs, "project", "archive", "--undo", project["name"]))
    assert output == f"unarchived project {project['name']}\n"
    assert get_project(dirs, project["id"])["archived"] is False
    assert project["name"] in listed_names(ok(run_mimirctl(dirs, "project", "ls")))


@pytest.mark.parametrize("position", JSON_POSITIONS)
@pytest.mark.parametrize("undo", [False, True], ids=["archive", "undo"])
def test_project_archive_json_matches_the_wire_result(
    dirs: DaemonDirs, tmp_path: Path, position: str, undo: bool
) -> None:
    project = add_project(dirs, tmp_path)
    rpc(dirs, "project.update", {"project": project["id"], "archived": undo})
    args = ["project", "archive", project["id"], *(["--undo"] if undo else [])]
    printed = json.loads(ok(run_mimirctl(dirs, *json_args(position, *args))))
    assert printed == get_project(dirs, project["id"])
    assert printed["archived"] is not undo


# ---- project rm -------------------------------------------------------------------


def test_project_rm_unregisters_the_project(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    output = ok(run_mimirctl(dirs, "project", "rm", project["name"]))
    assert output == f"removed project {project['name']} (files on disk untouched)\n"
    assert rpc_error(dirs, "project.get", {"project": project["id"]})["code"] == -32001
    assert Path(project["path"]).is_dir()


def test_project_rm_of_a_project_with_sessions_exits_6_and_keeps_it(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    project = add_project(dirs, tmp_path)
    insert_sessions(dirs, project["id"], 1)
    message = failed(run_mimirctl(dirs, "project", "rm", project["id"]), EXIT_INVALID_STATE)
    assert "session" in message
    assert get_project(dirs, project["id"])["sessions"] == 1


def test_project_rm_force_removes_the_project_and_its_sessions(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    project = add_project(dirs, tmp_path)
    insert_sessions(dirs, project["id"], 2)
    output = ok(run_mimirctl(dirs, "project", "rm", "--force", project["id"]))
    assert output == (
        f"removed project {project['name']} and 2 session(s) (files on disk untouched)\n"
    )
    assert rpc_error(dirs, "project.get", {"project": project["id"]})["code"] == -32001


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_project_rm_json_matches_the_wire_result(
    dirs: DaemonDirs, tmp_path: Path, position: str
) -> None:
    project = add_project(dirs, tmp_path)
    printed = json.loads(
        ok(run_mimirctl(dirs, *json_args(position, "project", "rm", project["id"])))
    )
    assert printed == {"id": project["id"], "name": project["name"], "sessions_removed": 0}


@pytest.mark.parametrize("position", JSON_POSITIONS)
def test_project_rm_force_json_matches_the_wire_result(
    dirs: DaemonDirs, tmp_path: Path, position: str
) -> None:
    project = add_project(dirs, tmp_path)
    insert_sessions(dirs, project["id"], 3)
    args = json_args(position, "project", "rm", project["id"], "--force")
    printed = json.loads(ok(run_mimirctl(dirs, *args)))
    assert printed == {"id": project["id"], "name": project["name"], "sessions_removed": 3}


def test_json_between_project_and_its_command_works(dirs: DaemonDirs, tmp_path: Path) -> None:
    project = add_project(dirs, tmp_path)
    printed = json.loads(ok(run_mimirctl(dirs, "project", "--json", "show", project["id"])))
    assert printed == get_project(dirs, project["id"])


# ---- exit codes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-command"),
        pytest.param(["frobnicate"], id="unknown-command"),
        pytest.param(["project"], id="no-project-command"),
        pytest.param(["project", "show"], id="missing-argument"),
        pytest.param(["project", "ls", "--bogus"], id="unknown-option"),
    ],
)
def test_a_usage_error_exits_2_with_the_usage(dirs: DaemonDirs, args: list[str]) -> None:
    result = run_mimirctl(dirs, *args)
    assert (result.returncode, result.stdout) == (EXIT_USAGE, ""), result
    assert "usage: mimirctl" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["project", "show", "ghost"], id="show"),
        pytest.param(["project", "update", "ghost", "--description", "x"], id="update"),
        pytest.param(["project", "archive", "ghost"], id="archive"),
        pytest.param(["project", "rm", "ghost"], id="rm"),
    ],
)
def test_an_unknown_project_exits_4(dirs: DaemonDirs, args: list[str]) -> None:
    message = failed(run_mimirctl(dirs, *args), EXIT_NOT_FOUND)
    assert "ghost" in message


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["status"], id="status"),
        pytest.param(["project", "ls"], id="ls"),
        pytest.param(["project", "show", "x", "--json"], id="show-json"),
        pytest.param(["project", "add", "/tmp"], id="add"),
    ],
)
def test_without_a_daemon_every_command_exits_3_with_one_line_on_how_to_start_it(
    args: list[str],
) -> None:
    with short_tmpdir() as root:
        result = run_mimirctl(DaemonDirs(root), *args)
    message = failed(result, EXIT_NOT_RUNNING)
    assert "mimird is not running" in message
    assert "Start it with 'mimird'" in message
    assert "systemctl --user start mimird.socket" in message


def test_a_stale_socket_exits_3() -> None:
    with short_tmpdir() as root:
        dirs = DaemonDirs(root)
        dirs.runtime.mkdir()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(str(dirs.socket))  # bound, never listening: what a dead daemon leaves
        message = failed(run_mimirctl(dirs, "status"), EXIT_NOT_RUNNING)
    assert "nothing listens" in message


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_socket_path_no_unix_socket_can_have_is_a_usage_error(where: str) -> None:
    with short_tmpdir() as root:
        dirs = DaemonDirs(root)
        long_path = str(root / ("s" * 200))
        if where == "flag":
            result = run_mimirctl(dirs, "--socket", long_path, "status")
        else:
            env = {**dirs.env(), "MIMIR_SOCKET": long_path}
            result = subprocess.run(
                [sys.executable, "-m", "mimirctl", "status"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
    message = failed(result, EXIT_USAGE)
    size = len(long_path.encode())
    assert f"is {size} bytes long, and a Unix socket's path holds at most 107" in message
    assert "None" not in message


# ---- staying light ----------------------------------------------------------------

HEAVY_MODULES: Final = (
    # msgspec alone costs ~45 ms here, half the start-up budget of a short command.
    "msgspec",
    "trio",
    "sqlalchemy",
    "structlog",
    "alembic",
    "git",
    "mimird.store",
    "mimird.rpc",
    "mimird.daemon",
    "mimird.config",
)


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from `python -X importtime` output."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }


@pytest.mark.parametrize(
    "args", [["status"], ["project", "ls", "--json"]], ids=["status", "project-ls"]
)
def test_mimirctl_imports_nothing_of_the_daemons_heavy_machinery(
    dirs: DaemonDirs, tmp_path: Path, args: list[str]
) -> None:
    result = mimirctl_in(dirs, tmp_path, *args, python_flags=("-X", "importtime"))
    assert result.returncode == EXIT_OK, result
    modules = imported_modules(result.stderr)
    assert {"mimirctl.cli", "mimirctl.client", "mimird.wire.codes"} <= modules  # the parse works
    heavy = sorted(
        m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY_MODULES)
    )
    assert heavy == []
