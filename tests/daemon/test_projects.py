"""project.* over the socket: registration, detection, lookup, changes, removal.

Every test talks to an in-process daemon on a real socket and database, with
real git repositories in temporary directories. Sessions are inserted straight
into the SQLite file (WAL) because no API creates them yet.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from mimird.wire.errors import ErrorCode
from tests.support.helpers import DaemonDirs, InProcessDaemon, TrioClient, git, make_repo

CALL_TIMEOUT_S: Final = 10


# ---- helpers ----------------------------------------------------------------------


def make_dir(path: Path, files: dict[str, str] | None = None) -> Path:
    """A directory with the given files; returns its resolved path."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path.resolve()


def insert_sessions(database: Path, project_id: str, count: int) -> list[str]:
    """Session rows for a project, written directly into the daemon's database."""
    now = "2026-01-01T00:00:00.000000Z"
    ids = [f"test-session-{project_id}-{i}" for i in range(count)]
    with contextlib.closing(sqlite3.connect(database, timeout=CALL_TIMEOUT_S)) as db, db:
        db.executemany(
            "INSERT INTO sessions (id, project_id, title, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(sid, project_id, f"session {sid}", "idle", now, now) for sid in ids],
        )
    return ids


def session_rows(database: Path, project_id: str) -> int:
    with contextlib.closing(sqlite3.connect(database, timeout=CALL_TIMEOUT_S)) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM sessions WHERE project_id = ?", (project_id,)
        ).fetchone()
    return int(count)


async def call(client: TrioClient, method: str, params: Any = None) -> Any:
    with trio.fail_after(CALL_TIMEOUT_S):
        return await client.call(method, params)


async def stored_state(client: TrioClient) -> dict[str, Any]:
    """Everything a client can see of what is stored: all projects and the counts."""
    listed = await call(client, "project.list", {"include_archived": True})
    status = await call(client, "daemon.status")
    counts = {k: v for k, v in status["counts"].items() if k != "connections"}
    return {"projects": listed["projects"], "counts": counts}


async def rejected(client: TrioClient, method: str, params: Any) -> dict[str, Any]:
    """The error of a call that must fail, after checking it changed nothing stored."""
    before = await stored_state(client)
    with trio.fail_after(CALL_TIMEOUT_S):
        response = await client.call_raw(method, params)
    assert "result" not in response, response
    error: dict[str, Any] = response["error"]
    assert await stored_state(client) == before
    return error


async def add(client: TrioClient, path: Path, **params: Any) -> dict[str, Any]:
    project: dict[str, Any] = await call(client, "project.add", {"path": str(path), **params})
    return project


async def counts(client: TrioClient) -> dict[str, int]:
    status = await call(client, "daemon.status")
    result: dict[str, int] = status["counts"]
    return result


# ---- project.add: where the root is ----------------------------------------------


async def test_adding_a_subdirectory_registers_the_repository_root(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {"src/pkg/mod.py": ""}, commit=False)
    project = await add(client, root / "src" / "pkg")
    assert project["path"] == str(root)
    assert project["is_git"] is True


async def test_adding_a_repository_root_registers_it_as_git(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {}, commit=False)
    project = await add(client, root)
    assert (project["path"], project["is_git"]) == (str(root), True)


async def test_the_type_is_detected_at_the_root_when_adding_a_subdirectory(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(
        tmp_path / "repo", {"go.mod": "module example.com/x\n", "cmd/x/main.go": ""}, commit=False
    )
    project = await add(client, root / "cmd" / "x")
    assert project["type"] == "go"


async def test_a_directory_outside_git_is_added_with_is_git_false(
    client: TrioClient, tmp_path: Path
) -> None:
    plain = make_dir(tmp_path / "plain", {"notes.txt": "hello\n"})
    project = await add(client, plain)
    assert (project["path"], project["is_git"]) == (str(plain), False)


async def test_a_subdirectory_outside_git_is_registered_as_given(
    client: TrioClient, tmp_path: Path
) -> None:
    sub = make_dir(tmp_path / "plain" / "sub")
    project = await add(client, sub)
    assert project["path"] == str(sub)


async def test_a_symlinked_path_registers_the_directory_it_points_to(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {}, commit=False)
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    project = await add(client, link)
    assert project["path"] == str(root)


async def test_a_linked_worktree_registers_its_own_root(client: TrioClient, tmp_path: Path) -> None:
    main = make_repo(tmp_path / "main", {})
    git(main, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "feature"))
    worktree = (tmp_path / "feature").resolve()
    (worktree / "sub").mkdir()
    project = await add(client, worktree / "sub")
    assert (project["path"], project["is_git"]) == (str(worktree), True)


async def test_a_linked_worktree_and_its_main_checkout_are_separate_projects(
    client: TrioClient, tmp_path: Path
) -> None:
    main = make_repo(tmp_path / "main", {})
    git(main, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "feature"))
    first = await add(client, main)
    second = await add(client, tmp_path / "feature")
    assert first["id"] != second["id"]
    assert (first["path"], second["path"]) == (str(main), str((tmp_path / "feature").resolve()))


# ---- project.add: type detection --------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"pyproject.toml": "[project]\nname = 'x'\n"}, "python", id="pyproject.toml"),
        pytest.param({"setup.py": "from setuptools import setup\n"}, "python", id="setup.py"),
        pytest.param({"requirements.txt": "requests\n"}, "python", id="requirements.txt"),
        pytest.param({"go.mod": "module example.com/x\n"}, "go", id="go.mod"),
        pytest.param({"Cargo.toml": "[package]\nname = 'x'\n"}, "rust", id="Cargo.toml"),
        pytest.param({"pom.xml": "<project/>\n"}, "java", id="pom.xml"),
        pytest.param({"build.gradle": "plugins {}\n"}, "java", id="build.gradle"),
        pytest.param({"tsconfig.json": "{}\n"}, "typescript", id="tsconfig.json"),
        pytest.param(
            {"package.json": '{"name": "x", "devDependencies": {"typescript": "^5.4.0"}}'},
            "typescript",
            id="package.json-typescript-devDependency",
        ),
        pytest.param(
            {"package.json": '{"name": "x", "dependencies": {"typescript": "^5.4.0"}}'},
            "typescript",
            id="package.json-typescript-dependency",
        ),
        pytest.param(
            {"package.json": '{"name": "x", "dependencies": {"left-pad": "1.3.0"}}'},
            "javascript",
            id="package.json",
        ),
        pytest.param({"package.json": "not json at all"}, "javascript", id="package.json-broken"),
        pytest.param(
            {"pyproject.toml": "", "package.json": '{"devDependencies": {"typescript": "5"}}'},
            "python",
            id="python-wins-over-package.json",
        ),
        pytest.param({"README.md": "# hello\n"}, "unknown", id="no-marker"),
        pytest.param({}, "unknown", id="empty"),
    ],
)
async def test_the_project_type_is_detected_from_marker_files(
    client: TrioClient, tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    root = make_repo(tmp_path / "repo", files, commit=False)
    project = await add(client, root)
    assert project["type"] == expected


async def test_a_marker_that_is_a_directory_does_not_decide_the_type(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_dir(tmp_path / "repo", {"go.mod/README": "not a go module\n"})
    project = await add(client, root)
    assert project["type"] == "unknown"


# ---- project.add: names and fields ------------------------------------------------


async def test_the_name_defaults_to_the_directory_name(client: TrioClient, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "hello-world", {"lib/x.py": ""}, commit=False)
    project = await add(client, root / "lib")
    assert project["name"] == "hello-world"


async def test_a_new_project_has_the_given_name_description_and_config(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {}, commit=False)
    config = {"agent": "opencode", "token_budget": 5000, "env": {"A": "1"}}
    project = await add(client, root, name="My Repo", description="the thing", config=config)
    assert (project["name"], project["description"], project["config"]) == (
        "My Repo",
        "the thing",
        config,
    )


async def test_a_new_project_is_active_without_sessions(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    assert (project["archived"], project["sessions"], project["description"]) == (False, 0, "")
    assert project["config"] == {}
    assert project["created_at"] == project["updated_at"]


async def test_an_added_project_is_returned_by_get_as_added(
    client: TrioClient, tmp_path: Path
) -> None:
    project = await add(
        client,
        make_repo(tmp_path / "repo", {}, commit=False),
        description="d",
        config={"agent": "k1"},
    )
    assert await call(client, "project.get", {"project": project["id"]}) == project


#: Names that would escape a directory, pass for an option, or rewrite a terminal.
HOSTILE_NAMES: Final = [
    pytest.param("..", id="dot-dot"),
    pytest.param(".", id="dot"),
    pytest.param(".hidden", id="leading-dot"),
    pytest.param("-rf", id="leading-dash"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\0b", id="nul"),
    pytest.param("a\x1b]0;owned\x07b", id="esc"),
    pytest.param("a\u202eb", id="bidi-override"),
    pytest.param("a\x7fb", id="del"),
]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a/b", id="slash"),
        pytest.param("", id="empty"),
        pytest.param(" leading", id="leading-space"),
        pytest.param("trailing ", id="trailing-space"),
        pytest.param("\tx", id="leading-tab"),
        pytest.param("x" * 129, id="too-long"),
        *HOSTILE_NAMES,
    ],
)
async def test_an_invalid_name_is_invalid_params(
    client: TrioClient, tmp_path: Path, name: str
) -> None:
    root = make_repo(tmp_path / "repo", {}, commit=False)
    error = await rejected(client, "project.add", {"path": str(root), "name": name})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "name"


async def test_a_name_with_inner_spaces_and_unicode_is_accepted(
    client: TrioClient, tmp_path: Path
) -> None:
    project = await add(
        client, make_repo(tmp_path / "repo", {}, commit=False), name="Mímir — the well"
    )
    assert project["name"] == "Mímir — the well"


async def test_a_directory_name_that_breaks_the_rule_gives_its_slug_as_default_name(
    client: TrioClient, tmp_path: Path
) -> None:
    project = await add(client, make_dir(tmp_path / ".Dot Files"))
    assert project["name"] == "dot-files"


# ---- project.add: refusals --------------------------------------------------------


async def test_a_directory_holding_the_daemons_directories_is_refused(
    client: TrioClient, dirs: DaemonDirs
) -> None:
    # The daemon's data, state and runtime directories live in dirs.root, as Mimir's
    # live in a home directory: registering it would copy them into themselves.
    error = await rejected(client, "project.add", {"path": str(dirs.root)})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"
    assert "contains Mimir's" in error["message"]
    assert error["data"]["detail"]["mimir_dir"] in {
        str(d.resolve()) for d in (dirs.data, dirs.data / "worktrees", dirs.state, dirs.runtime)
    }


@pytest.mark.parametrize("inside", ["data", "state", "data/worktrees"])
async def test_a_directory_inside_the_daemons_directories_is_refused(
    client: TrioClient, dirs: DaemonDirs, inside: str
) -> None:
    nested = make_repo(dirs.root / inside / "nested", {}, commit=False)
    error = await rejected(client, "project.add", {"path": str(nested)})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"
    assert "is inside Mimir's" in error["message"]
    assert error["data"]["detail"]["mimir_dir"] == str((dirs.root / inside).resolve())


# ---- project.add: refusals --------------------------------------------------------


async def test_adding_the_same_path_twice_is_already_exists_with_the_existing_id(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {}, commit=False)
    existing = await add(client, root)
    error = await rejected(client, "project.add", {"path": str(root), "name": "other"})
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert (error["data"]["field"], error["data"]["id"]) == ("path", existing["id"])


async def test_adding_a_subdirectory_of_a_registered_repository_is_already_exists(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {"src/x.py": ""}, commit=False)
    existing = await add(client, root)
    error = await rejected(client, "project.add", {"path": str(root / "src"), "name": "other"})
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert error["data"]["id"] == existing["id"]


async def test_adding_with_a_taken_name_is_already_exists_on_the_name(
    client: TrioClient, tmp_path: Path
) -> None:
    existing = await add(client, make_repo(tmp_path / "one", {}, commit=False), name="shared")
    second = make_repo(tmp_path / "two", {}, commit=False)
    error = await rejected(client, "project.add", {"path": str(second), "name": "shared"})
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert (error["data"]["field"], error["data"]["id"]) == ("name", existing["id"])


async def test_a_default_name_that_is_taken_is_already_exists(
    client: TrioClient, tmp_path: Path
) -> None:
    existing = await add(client, make_repo(tmp_path / "a" / "app", {}, commit=False))
    error = await rejected(
        client, "project.add", {"path": str(make_repo(tmp_path / "b" / "app", {}, commit=False))}
    )
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert error["data"]["id"] == existing["id"]


async def test_a_path_that_does_not_exist_is_invalid_params_on_the_path(
    client: TrioClient, tmp_path: Path
) -> None:
    error = await rejected(client, "project.add", {"path": str(tmp_path / "missing")})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"


async def test_a_path_to_a_file_is_invalid_params_on_the_path(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {"README.md": "hi\n"}, commit=False)
    error = await rejected(client, "project.add", {"path": str(root / "README.md")})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"


@pytest.mark.parametrize("path", ["repo", "./repo", "../repo", "."])
async def test_a_relative_path_is_invalid_params_on_the_path(client: TrioClient, path: str) -> None:
    error = await rejected(client, "project.add", {"path": path})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"
    assert "relative" in error["message"]


async def test_an_empty_path_is_invalid_params_on_the_path(client: TrioClient) -> None:
    error = await rejected(client, "project.add", {"path": ""})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"


@pytest.mark.parametrize("inside", [".", "refs"], ids=["root", "subdirectory"])
async def test_a_bare_repository_is_refused(
    client: TrioClient, tmp_path: Path, inside: str
) -> None:
    bare = make_dir(tmp_path / "bare.git")
    git(bare, "init", "-q", "--bare")
    error = await rejected(client, "project.add", {"path": str(bare / inside)})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"
    assert "bare" in error["message"]


async def test_a_config_that_is_not_an_object_is_invalid_params(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {}, commit=False)
    error = await rejected(client, "project.add", {"path": str(root), "config": ["agent"]})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config"


async def test_a_project_can_be_added_again_after_removal(
    client: TrioClient, tmp_path: Path
) -> None:
    root = make_repo(tmp_path / "repo", {}, commit=False)
    first = await add(client, root)
    await call(client, "project.remove", {"project": first["id"]})
    second = await add(client, root)
    assert second["id"] != first["id"]
    assert (second["name"], second["path"]) == (first["name"], first["path"])


# ---- project.list -----------------------------------------------------------------


async def test_list_is_empty_on_a_fresh_daemon(client: TrioClient) -> None:
    assert await call(client, "project.list") == {"projects": []}


async def test_list_is_ordered_by_name(client: TrioClient, tmp_path: Path) -> None:
    for name in ["mango", "apple", "zucchini", "kiwi"]:
        await add(client, make_repo(tmp_path / name, {}, commit=False))
    listed = await call(client, "project.list")
    assert [p["name"] for p in listed["projects"]] == ["apple", "kiwi", "mango", "zucchini"]


async def test_list_hides_archived_projects(client: TrioClient, tmp_path: Path) -> None:
    kept = await add(client, make_repo(tmp_path / "kept", {}, commit=False))
    hidden = await add(client, make_repo(tmp_path / "hidden", {}, commit=False))
    await call(client, "project.update", {"project": hidden["id"], "archived": True})
    listed = await call(client, "project.list", {"include_archived": False})
    assert [p["id"] for p in listed["projects"]] == [kept["id"]]


async def test_list_includes_archived_projects_when_asked(
    client: TrioClient, tmp_path: Path
) -> None:
    await add(client, make_repo(tmp_path / "kept", {}, commit=False))
    hidden = await add(client, make_repo(tmp_path / "hidden", {}, commit=False))
    await call(client, "project.update", {"project": hidden["id"], "archived": True})
    listed = await call(client, "project.list", {"include_archived": True})
    assert [(p["name"], p["archived"]) for p in listed["projects"]] == [
        ("hidden", True),
        ("kept", False),
    ]


async def test_list_entries_equal_what_get_returns(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    listed = await call(client, "project.list")
    assert listed["projects"] == [await call(client, "project.get", {"project": project["id"]})]


# ---- project.get ------------------------------------------------------------------


async def test_get_finds_a_project_by_id(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    assert await call(client, "project.get", {"project": project["id"]}) == project


async def test_get_finds_a_project_by_name(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False), name="by-name")
    assert await call(client, "project.get", {"project": "by-name"}) == project


async def test_get_finds_a_project_whose_name_looks_like_an_id(
    client: TrioClient, tmp_path: Path
) -> None:
    id_like = "0" * 26
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False), name=id_like)
    assert await call(client, "project.get", {"project": id_like}) == project


async def test_get_finds_archived_projects(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    await call(client, "project.update", {"project": project["id"], "archived": True})
    found = await call(client, "project.get", {"project": project["name"]})
    assert (found["id"], found["archived"]) == (project["id"], True)


async def test_get_of_an_unknown_project_is_not_found(client: TrioClient, tmp_path: Path) -> None:
    await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    error = await rejected(client, "project.get", {"project": "nope"})
    assert error["code"] == ErrorCode.NOT_FOUND
    assert error["data"]["id"] == "nope"


async def test_get_of_a_removed_project_is_not_found(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    await call(client, "project.remove", {"project": project["id"]})
    error = await rejected(client, "project.get", {"project": project["id"]})
    assert error["code"] == ErrorCode.NOT_FOUND


async def test_get_without_a_project_is_invalid_params(client: TrioClient) -> None:
    error = await rejected(client, "project.get", {})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "project"


# ---- project.update ---------------------------------------------------------------


async def test_update_changes_the_name(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    updated = await call(client, "project.update", {"project": project["id"], "name": "renamed"})
    assert updated["name"] == "renamed"
    assert await call(client, "project.get", {"project": "renamed"}) == updated


async def test_update_frees_the_old_name(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False), name="old")
    await call(client, "project.update", {"project": project["id"], "name": "new"})
    other = await add(client, make_repo(tmp_path / "other", {}, commit=False), name="old")
    assert other["name"] == "old"


async def test_update_changes_the_description(client: TrioClient, tmp_path: Path) -> None:
    project = await add(
        client, make_repo(tmp_path / "repo", {}, commit=False), description="before"
    )
    updated = await call(
        client, "project.update", {"project": project["id"], "description": "after"}
    )
    assert updated["description"] == "after"


async def test_update_replaces_the_config_as_a_whole(client: TrioClient, tmp_path: Path) -> None:
    project = await add(
        client,
        make_repo(tmp_path / "repo", {}, commit=False),
        config={"agent": "a1", "token_budget": 2},
    )
    updated = await call(
        client, "project.update", {"project": project["id"], "config": {"copy_files": [".env"]}}
    )
    assert updated["config"] == {"copy_files": [".env"]}


async def test_update_archives_a_project(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    updated = await call(client, "project.update", {"project": project["id"], "archived": True})
    assert updated["archived"] is True


async def test_update_unarchives_a_project(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    await call(client, "project.update", {"project": project["id"], "archived": True})
    updated = await call(client, "project.update", {"project": project["id"], "archived": False})
    assert updated["archived"] is False
    listed = await call(client, "project.list")
    assert [p["id"] for p in listed["projects"]] == [project["id"]]


async def test_update_works_by_name(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False), name="by-name")
    updated = await call(client, "project.update", {"project": "by-name", "description": "x"})
    assert (updated["id"], updated["description"]) == (project["id"], "x")


async def test_update_leaves_fields_that_are_left_out_unchanged(
    client: TrioClient, tmp_path: Path
) -> None:
    project = await add(
        client,
        make_repo(tmp_path / "repo", {}, commit=False),
        name="n",
        description="d",
        config={"agent": "v"},
    )
    updated = await call(client, "project.update", {"project": project["id"], "description": "e"})
    unchanged = {k: v for k, v in project.items() if k not in ("description", "updated_at")}
    assert {k: v for k, v in updated.items() if k not in ("description", "updated_at")} == (
        unchanged
    )


async def test_update_moves_updated_at_but_not_created_at(
    client: TrioClient, tmp_path: Path
) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    updated = await call(client, "project.update", {"project": project["id"], "description": "x"})
    assert updated["created_at"] == project["created_at"]
    assert updated["updated_at"] > project["updated_at"]


async def test_update_with_no_fields_changes_nothing(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    assert await call(client, "project.update", {"project": project["id"]}) == project
    assert await call(client, "project.get", {"project": project["id"]}) == project


async def test_update_to_its_own_name_is_allowed(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False), name="same")
    updated = await call(client, "project.update", {"project": project["id"], "name": "same"})
    assert updated["name"] == "same"


async def test_update_to_a_taken_name_is_already_exists_and_changes_nothing(
    client: TrioClient, tmp_path: Path
) -> None:
    taken = await add(client, make_repo(tmp_path / "one", {}, commit=False), name="taken")
    project = await add(client, make_repo(tmp_path / "two", {}, commit=False), name="mine")
    error = await rejected(
        client,
        "project.update",
        {"project": project["id"], "name": "taken", "description": "not applied"},
    )
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert (error["data"]["field"], error["data"]["id"]) == ("name", taken["id"])
    assert await call(client, "project.get", {"project": project["id"]}) == project


@pytest.mark.parametrize("name", [pytest.param("a/b", id="slash"), *HOSTILE_NAMES])
async def test_update_to_an_invalid_name_is_invalid_params_and_changes_nothing(
    client: TrioClient, tmp_path: Path, name: str
) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    error = await rejected(client, "project.update", {"project": project["id"], "name": name})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "name"
    assert await call(client, "project.get", {"project": project["id"]}) == project


async def test_update_with_a_config_that_is_not_an_object_is_invalid_params(
    client: TrioClient, tmp_path: Path
) -> None:
    project = await add(
        client, make_repo(tmp_path / "repo", {}, commit=False), config={"agent": "k1"}
    )
    error = await rejected(client, "project.update", {"project": project["id"], "config": "k=2"})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config"
    assert await call(client, "project.get", {"project": project["id"]}) == project


async def test_update_with_an_unknown_field_is_invalid_params(
    client: TrioClient, tmp_path: Path
) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    error = await rejected(client, "project.update", {"project": project["id"], "path": "/"})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "path"


async def test_update_of_an_unknown_project_is_not_found(
    client: TrioClient, tmp_path: Path
) -> None:
    await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    error = await rejected(client, "project.update", {"project": "ghost", "description": "x"})
    assert error["code"] == ErrorCode.NOT_FOUND
    assert error["data"]["id"] == "ghost"


# ---- project.remove ---------------------------------------------------------------


async def test_remove_unregisters_the_project(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    removed = await call(client, "project.remove", {"project": project["id"]})
    assert removed == {"id": project["id"], "name": project["name"], "sessions_removed": 0}
    assert await call(client, "project.list", {"include_archived": True}) == {"projects": []}


async def test_remove_leaves_the_files_on_disk(client: TrioClient, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"keep.txt": "data\n"}, commit=False)
    project = await add(client, root)
    await call(client, "project.remove", {"project": project["name"]})
    assert (root / "keep.txt").read_text() == "data\n"
    assert (root / ".git").is_dir()


async def test_remove_works_on_an_archived_project(client: TrioClient, tmp_path: Path) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    await call(client, "project.update", {"project": project["id"], "archived": True})
    removed = await call(client, "project.remove", {"project": project["id"]})
    assert removed["id"] == project["id"]


async def test_sessions_in_the_database_are_counted_on_the_project(
    client: TrioClient, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    insert_sessions(daemon.dirs.database, project["id"], 3)
    found = await call(client, "project.get", {"project": project["id"]})
    assert found["sessions"] == 3


async def test_remove_is_refused_while_the_project_has_sessions(
    client: TrioClient, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    insert_sessions(daemon.dirs.database, project["id"], 2)
    error = await rejected(client, "project.remove", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["id"] == project["id"]
    assert session_rows(daemon.dirs.database, project["id"]) == 2


async def test_remove_with_force_removes_the_project_with_its_sessions(
    client: TrioClient, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project = await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    insert_sessions(daemon.dirs.database, project["id"], 2)
    removed = await call(client, "project.remove", {"project": project["id"], "force": True})
    assert removed == {"id": project["id"], "name": project["name"], "sessions_removed": 2}
    assert session_rows(daemon.dirs.database, project["id"]) == 0
    error = await rejected(client, "project.get", {"project": project["id"]})
    assert error["code"] == ErrorCode.NOT_FOUND


async def test_remove_with_force_leaves_other_projects_sessions_alone(
    client: TrioClient, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    doomed = await add(client, make_repo(tmp_path / "doomed", {}, commit=False))
    kept = await add(client, make_repo(tmp_path / "kept", {}, commit=False))
    insert_sessions(daemon.dirs.database, doomed["id"], 1)
    insert_sessions(daemon.dirs.database, kept["id"], 2)
    await call(client, "project.remove", {"project": doomed["id"], "force": True})
    assert session_rows(daemon.dirs.database, kept["id"]) == 2
    found = await call(client, "project.get", {"project": kept["id"]})
    assert found["sessions"] == 2


async def test_remove_of_an_unknown_project_is_not_found(
    client: TrioClient, tmp_path: Path
) -> None:
    await add(client, make_repo(tmp_path / "repo", {}, commit=False))
    error = await rejected(client, "project.remove", {"project": "ghost", "force": True})
    assert error["code"] == ErrorCode.NOT_FOUND
    assert error["data"]["id"] == "ghost"


# ---- daemon.status counts ---------------------------------------------------------


async def test_status_counts_start_at_zero(client: TrioClient) -> None:
    assert await counts(client) == {
        "projects": 0,
        "archived_projects": 0,
        "sessions": 0,
        "connections": 1,
    }


async def test_status_counts_active_and_archived_projects(
    client: TrioClient, tmp_path: Path
) -> None:
    for name in ["a", "b", "c"]:
        await add(client, make_repo(tmp_path / name, {}, commit=False))
    await call(client, "project.update", {"project": "b", "archived": True})
    found = await counts(client)
    assert (found["projects"], found["archived_projects"]) == (2, 1)


async def test_status_counts_follow_unarchiving(client: TrioClient, tmp_path: Path) -> None:
    await add(client, make_repo(tmp_path / "a", {}, commit=False))
    await call(client, "project.update", {"project": "a", "archived": True})
    await call(client, "project.update", {"project": "a", "archived": False})
    found = await counts(client)
    assert (found["projects"], found["archived_projects"]) == (1, 0)


async def test_status_counts_sessions(
    client: TrioClient, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    first = await add(client, make_repo(tmp_path / "a", {}, commit=False))
    second = await add(client, make_repo(tmp_path / "b", {}, commit=False))
    insert_sessions(daemon.dirs.database, first["id"], 2)
    insert_sessions(daemon.dirs.database, second["id"], 1)
    assert (await counts(client))["sessions"] == 3


async def test_status_counts_drop_after_a_forced_removal(
    client: TrioClient, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    doomed = await add(client, make_repo(tmp_path / "a", {}, commit=False))
    await add(client, make_repo(tmp_path / "b", {}, commit=False))
    insert_sessions(daemon.dirs.database, doomed["id"], 2)
    await call(client, "project.remove", {"project": doomed["id"], "force": True})
    found = await counts(client)
    assert (found["projects"], found["archived_projects"], found["sessions"]) == (1, 0, 0)
