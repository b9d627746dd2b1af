"""session.* and worktree.* over the socket, against real git repositories.

Every test talks to an in-process daemon on a real socket and database; projects
are git repositories made in temporary directories, and what git and the disk
hold afterwards is checked with git itself. The git layer has its own unit tests
(tests/test_worktrees.py) and mimirctl its own (tests/test_mimirctl_sessions.py);
these prove the behaviour a client of the API sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import trio

from mimird.processes import group_alive
from mimird.wire.errors import ErrorCode
from tests.helpers import (
    GIT_ENV,
    GIT_IDENTITY,
    GIT_TIMEOUT_S,
    README,
    DaemonDirs,
    InProcessDaemon,
    TrioClient,
    blocking_call,
    daemon_process,
    git,
    in_process_daemon,
    make_repo,
    run_mimirctl,
    write,
)

pytestmark = pytest.mark.timeout(60)

CALL_TIMEOUT_S: Final = 30
#: A secret that must never show itself, and one for the session layer.
PROJECT_SECRET: Final = "hunter2-project-7f3a9c"
SESSION_SECRET: Final = "swordfish-session-4b1e8d"
CONCURRENT_CREATES: Final = 10
POLL_S: Final = 0.05


# ---- git -------------------------------------------------------------------------------------


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return head(root)


def git_exit_code(cwd: Path, *args: str) -> int:
    return subprocess.run(
        ["git", *GIT_IDENTITY, *args],
        cwd=cwd,
        env=GIT_ENV,
        capture_output=True,
        check=False,
        timeout=GIT_TIMEOUT_S,
    ).returncode


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def branch_tip(root: Path, branch: str) -> str | None:
    if git_exit_code(root, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}") != 0:
        return None
    return git(root, "rev-parse", f"refs/heads/{branch}").strip()


def branches(root: Path) -> list[str]:
    return sorted(git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def git_worktrees(root: Path) -> list[Path]:
    """The paths `git worktree list` shows, the main checkout first."""
    return [
        Path(line.removeprefix("worktree "))
        for line in git(root, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def files_of(root: Path) -> dict[str, bytes]:
    """Every file and symlink under ``root`` (``.git`` left out): path -> bytes (a link's
    target, prefixed so that it cannot equal a file's content) and mode."""
    found: dict[str, bytes] = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        links = [d for d in dirs if os.path.islink(os.path.join(directory, d))]
        for name in [*(n for n in names if n != ".git"), *links]:
            path = Path(directory, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = b"symlink -> " + os.fsencode(os.readlink(path))
            else:
                mode = stat.S_IMODE(path.stat().st_mode) & 0o111
                found[rel] = path.read_bytes() + f"\n[exec bits {mode:o}]".encode()
    return found


def main_checkout_state(root: Path) -> tuple[dict[str, bytes], bytes, str, str]:
    """The user's checkout: its files, its index file, its status and HEAD."""
    return (
        files_of(root),
        (root / ".git" / "index").read_bytes(),
        git(root, "status", "--porcelain=v2", "--branch", "--untracked-files=all"),
        head(root),
    )


# ---- the daemon ------------------------------------------------------------------------------


async def call(client: TrioClient, method: str, params: Any = None) -> Any:
    with trio.fail_after(CALL_TIMEOUT_S):
        return await client.call(method, params)


async def error_of(client: TrioClient, method: str, params: Any) -> dict[str, Any]:
    with trio.fail_after(CALL_TIMEOUT_S):
        response = await client.call_raw(method, params)
    assert "result" not in response, response
    error: dict[str, Any] = response["error"]
    return error


@contextlib.asynccontextmanager
async def daemon_with_config(dirs: DaemonDirs, config: str) -> AsyncIterator[TrioClient]:
    """An in-process daemon started with this config file, and a client of it."""
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(config)
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as client:
        yield client


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
async def project(client: TrioClient, repo: Path) -> dict[str, Any]:
    result: dict[str, Any] = await call(client, "project.add", {"path": str(repo)})
    return result


async def add_project(client: TrioClient, path: Path, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await call(client, "project.add", {"path": str(path), **params})
    return result


async def create(client: TrioClient, project: dict[str, Any], **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await call(
        client, "session.create", {"project": project["id"], **params}
    )
    return result


async def get(client: TrioClient, session: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await call(client, "session.get", {"session": session["id"]})
    return result


async def events(client: TrioClient, session: dict[str, Any]) -> list[dict[str, Any]]:
    result = await call(client, "session.events", {"session": session["id"]})
    found: list[dict[str, Any]] = result["events"]
    return found


async def all_sessions(client: TrioClient, **params: Any) -> list[dict[str, Any]]:
    """Every session the filters select, following every cursor."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await call(
            client, "session.list", {**params, **({"cursor": cursor} if cursor else {})}
        )
        found += page["sessions"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def workspace(session: dict[str, Any]) -> Path:
    return Path(session["workspace"]["path"])


def without_git(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if k != "git"}


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return [event["kind"] for event in found]


# ---- session.create --------------------------------------------------------------------------


async def test_create_makes_a_worktree_on_a_new_branch_from_head(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project, title="Fix the login bug")
    path = workspace(session)
    assert session["status"] == "created"
    assert session["workspace"]["kind"] == "worktree"
    assert session["workspace"]["state"] == "ok"
    assert session["workspace"]["base_commit"] == head(repo)
    assert session["workspace"]["base_ref"] == "main"
    branch = session["workspace"]["branch"]
    assert branch.startswith("mimir/fix-the-login-bug-")
    assert git(path, "symbolic-ref", "--short", "HEAD").strip() == branch
    assert head(path) == head(repo)
    assert files_of(path) == files_of(repo)
    assert path in git_worktrees(repo)


async def test_create_from_a_base_ref_starts_the_branch_at_that_commit(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    first = head(repo)
    git(repo, "tag", "v1")
    write(repo, {"later.txt": "later\n"})
    commit_all(repo, "later")
    session = await create(client, project, base_ref="v1")
    assert session["workspace"]["base_ref"] == "v1"
    assert session["workspace"]["base_commit"] == first
    assert head(workspace(session)) == first
    assert not (workspace(session) / "later.txt").exists()


async def test_create_with_an_explicit_branch_uses_that_name(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project, branch="feature/explicit")
    assert session["workspace"]["branch"] == "feature/explicit"
    assert branch_tip(repo, "feature/explicit") == head(repo)
    assert git(workspace(session), "symbolic-ref", "--short", "HEAD").strip() == "feature/explicit"


async def test_create_in_place_works_in_the_project_directory(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project, workspace="in_place")
    assert session["workspace"]["kind"] == "in_place"
    assert workspace(session) == repo
    assert session["workspace"]["branch"] == "main"
    assert session["workspace"]["base_commit"] == head(repo)
    assert git_worktrees(repo) == [repo]
    assert branches(repo) == ["main"]


async def test_create_in_a_project_outside_git_makes_a_private_copy(
    client: TrioClient, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n", "sub/data.bin": b"\x00\x01\xff"})
    project = await add_project(client, plain)
    session = await create(client, project)
    copy = workspace(session)
    assert session["workspace"]["kind"] == "private"
    assert session["workspace"]["branch"] is None
    assert copy != plain.resolve()
    assert files_of(copy) == files_of(plain)
    (copy / "notes.txt").write_text("changed in the copy\n")
    assert (plain / "notes.txt").read_text() == "mine\n"


async def test_a_worktree_in_a_project_outside_git_is_invalid_params(
    client: TrioClient, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n"})
    project = await add_project(client, plain)
    error = await error_of(
        client, "session.create", {"project": project["id"], "workspace": "worktree"}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "workspace"


async def test_create_in_a_dirty_project_with_a_base_ref_succeeds_without_the_dirt(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    (repo / "README.md").write_text("uncommitted\n")
    session = await create(client, project, base_ref="main")
    assert (workspace(session) / "README.md").read_text() == README
    assert (repo / "README.md").read_text() == "uncommitted\n"


# ---- session.list ----------------------------------------------------------------------------


async def test_list_filters_by_project(client: TrioClient, tmp_path: Path) -> None:
    first = await add_project(client, make_repo(tmp_path / "first"))
    second = await add_project(client, make_repo(tmp_path / "second"))
    mine = await create(client, first, title="mine")
    await create(client, second, title="theirs")
    listed = await all_sessions(client, project=first["name"])
    assert [s["id"] for s in listed] == [mine["id"]]


async def test_list_of_an_unknown_project_is_not_found(client: TrioClient) -> None:
    error = await error_of(client, "session.list", {"project": "no-such-project"})
    assert error["code"] == ErrorCode.NOT_FOUND


async def test_list_filters_by_status(client: TrioClient, project: dict[str, Any]) -> None:
    kept = await create(client, project, workspace="in_place")
    archived = await create(client, project, workspace="in_place")
    await call(client, "session.archive", {"session": archived["id"]})
    assert [s["id"] for s in await all_sessions(client, status=["archived"])] == [archived["id"]]
    assert [s["id"] for s in await all_sessions(client, status=["created"])] == [kept["id"]]


async def test_list_filters_by_agent(client: TrioClient, project: dict[str, Any]) -> None:
    claude = await create(client, project, workspace="in_place", agent="claude")
    await create(client, project, workspace="in_place", agent="gemini")
    assert [s["id"] for s in await all_sessions(client, agent="claude")] == [claude["id"]]


async def test_list_filters_by_text_in_the_title_or_the_task(
    client: TrioClient, project: dict[str, Any]
) -> None:
    by_title = await create(client, project, workspace="in_place", title="Fix the Parser")
    by_task = await create(client, project, workspace="in_place", task="the parser chokes on %")
    await create(client, project, workspace="in_place", title="unrelated")
    found = await all_sessions(client, text="parser")
    assert {s["id"] for s in found} == {by_title["id"], by_task["id"]}
    # LIKE wildcards in the text are taken literally.
    assert [s["id"] for s in await all_sessions(client, text="%")] == [by_task["id"]]


async def test_list_filters_by_creation_time(client: TrioClient, project: dict[str, Any]) -> None:
    older = await create(client, project, workspace="in_place")
    newer = await create(client, project, workspace="in_place")
    assert older["created_at"] < newer["created_at"]
    assert [s["id"] for s in await all_sessions(client, created_before=newer["created_at"])] == [
        older["id"]
    ]
    assert [s["id"] for s in await all_sessions(client, created_after="2000-01-01")] == [
        newer["id"],
        older["id"],
    ]
    assert await all_sessions(client, created_after="2999-01-01T00:00:00Z") == []


async def test_list_created_after_a_sessions_own_time_leaves_that_session_out(
    client: TrioClient, project: dict[str, Any]
) -> None:
    older = await create(client, project, workspace="in_place")
    newer = await create(client, project, workspace="in_place")
    found = await all_sessions(client, created_after=older["created_at"])
    assert [s["id"] for s in found] == [newer["id"]]


async def test_list_filters_by_update_time(client: TrioClient, project: dict[str, Any]) -> None:
    touched = await create(client, project, workspace="in_place")
    untouched = await create(client, project, workspace="in_place")
    updated = await call(client, "session.update", {"session": touched["id"], "title": "again"})
    assert updated["updated_at"] > untouched["updated_at"]
    found = await all_sessions(client, updated_before=updated["updated_at"])
    assert [s["id"] for s in found] == [untouched["id"]]
    found = await all_sessions(client, updated_after="2000-01-01T00:00")
    assert {s["id"] for s in found} == {touched["id"], untouched["id"]}


async def test_list_hides_archived_and_deleted_sessions_unless_asked(
    client: TrioClient, project: dict[str, Any]
) -> None:
    live = await create(client, project, workspace="in_place")
    archived = await create(client, project, workspace="in_place")
    deleted = await create(client, project, workspace="in_place")
    await call(client, "session.archive", {"session": archived["id"]})
    await call(client, "session.delete", {"session": deleted["id"]})
    assert [s["id"] for s in await all_sessions(client)] == [live["id"]]
    assert [s["id"] for s in await all_sessions(client, include_archived=True)] == [
        archived["id"],
        live["id"],
    ]
    assert [s["id"] for s in await all_sessions(client, include_deleted=True)] == [
        deleted["id"],
        live["id"],
    ]
    everything = await all_sessions(client, include_archived=True, include_deleted=True)
    assert [s["id"] for s in everything] == [deleted["id"], archived["id"], live["id"]]


async def test_list_is_newest_first_and_the_same_every_time(
    client: TrioClient, project: dict[str, Any]
) -> None:
    made = [await create(client, project, workspace="in_place") for _ in range(5)]
    # An update does not reorder: the order is by creation.
    await call(client, "session.update", {"session": made[0]["id"], "title": "touched"})
    first = await all_sessions(client)
    assert [s["id"] for s in first] == [s["id"] for s in reversed(made)]
    assert [s["id"] for s in await all_sessions(client)] == [s["id"] for s in first]


async def test_list_pages_cover_every_session_exactly_once(
    client: TrioClient, project: dict[str, Any]
) -> None:
    made = {(await create(client, project, workspace="in_place"))["id"] for _ in range(7)}
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await call(client, "session.list", params)
        pages.append([s["id"] for s in page["sessions"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [sid for p in pages for sid in p]
    assert sorted(seen) == sorted(made)
    assert seen == sorted(seen, reverse=True)


async def test_list_entries_equal_what_get_returns_without_git_status(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    [listed] = await all_sessions(client)
    got = await get(client, session)
    assert listed.get("git") is None
    assert got["git"] is not None
    assert without_git(got) == without_git(listed)


# ---- session.get, update, diff, events -------------------------------------------------------


async def test_get_reports_the_workspace_and_a_clean_git_status(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    got = await get(client, session)
    assert got["workspace"] == session["workspace"]
    assert got["git"] == {
        "head": head(repo),
        "dirty": False,
        "ahead": 0,
        "behind": 0,
        "files_changed": 0,
        "insertions": 0,
        "deletions": 0,
    }


async def test_get_counts_modified_and_untracked_files_as_dirty(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    path = workspace(session)
    (path / "README.md").write_text("hello\nworld\n")  # +1
    write(path, {"new/untracked.txt": "a\nb\nc\n"})  # +3
    (path / "src" / "app.py").write_text("def main():\n")  # -1
    status = (await get(client, session))["git"]
    assert status["dirty"] is True
    assert (status["files_changed"], status["insertions"], status["deletions"]) == (3, 4, 1)
    assert status["ahead"] == 0


async def test_get_counts_commits_ahead_of_and_behind_the_base(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    write(repo, {"second.txt": "2\n"})
    commit_all(repo, "second")
    session = await create(client, project)
    path = workspace(session)
    git(path, "reset", "-q", "--hard", "HEAD~1")
    write(path, {"mine.txt": "mine\n"})
    new_head = commit_all(path, "mine")
    status = (await get(client, session))["git"]
    assert (status["head"], status["ahead"], status["behind"], status["dirty"]) == (
        new_head,
        1,
        1,
        False,
    )


async def test_get_counts_commits_behind_the_base_branch_as_it_moves_on(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    write(repo, {"upstream.txt": "new on main\n"})
    commit_all(repo, "main moves on")
    status = (await get(client, session))["git"]
    assert (status["ahead"], status["behind"]) == (0, 1)
    # The diff stats stay those of the session's own work, against its base commit.
    assert status["files_changed"] == 0


async def test_update_changes_title_task_and_config(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project, title="old", task="old task")
    updated = await call(
        client,
        "session.update",
        {
            "session": session["id"],
            "title": "new",
            "task": "new task",
            "config": {"token_budget": 5000},
        },
    )
    assert (updated["title"], updated["task"], updated["config"]) == (
        "new",
        "new task",
        {"token_budget": 5000},
    )
    assert without_git(await get(client, session)) == without_git(updated)
    config = await call(client, "session.config", {"session": session["id"]})
    assert config["effective"]["token_budget"] == 5000
    assert kinds(await events(client, session))[-1] == "session_updated"


async def test_update_with_an_invalid_config_names_the_key_and_layer_and_changes_nothing(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project, config={"token_budget": 10})
    before = await get(client, session)
    error = await error_of(
        client,
        "session.update",
        {"session": session["id"], "title": "x", "config": {"tool_policy": {"execute": "maybe"}}},
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config.tool_policy.execute"
    assert error["data"]["detail"]["layer"] == "session"
    assert error["data"]["detail"]["key"] == "tool_policy.execute"
    assert "session config" in error["message"]
    assert "tool_policy.execute" in error["message"]
    assert await get(client, session) == before


async def test_create_with_an_invalid_config_names_the_key_and_layer(
    client: TrioClient, project: dict[str, Any]
) -> None:
    error = await error_of(
        client, "session.create", {"project": project["id"], "config": {"agnet": "claude"}}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["detail"]["layer"] == "session"
    assert error["data"]["detail"]["key"] == "agnet"
    assert "did you mean 'agent'" in error["message"]
    assert await all_sessions(client, include_deleted=True) == []


async def test_diff_lists_every_changed_file_with_its_stats(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "one\ntwo\n"})
    commit_all(path, "committed")
    (path / "README.md").write_text("hello\nmore\n")
    (path / "src" / "app.py").unlink()
    write(path, {"untracked.txt": "u\n", "image.bin": b"\x00\x01\x02\xff"})
    diff = await call(client, "session.diff", {"session": session["id"]})
    files = {
        f["path"]: (f["status"], f["insertions"], f["deletions"], f["binary"])
        for f in diff["files"]
    }
    assert files == {
        "committed.txt": ("added", 2, 0, False),
        "README.md": ("modified", 1, 0, False),
        "src/app.py": ("deleted", 0, 2, False),
        "untracked.txt": ("added", 1, 0, False),
        "image.bin": ("added", 0, 0, True),
    }
    assert (diff["files_changed"], diff["insertions"], diff["deletions"]) == (5, 4, 2)
    assert diff["base_commit"] == head(repo)
    assert diff["patch"] is None


async def test_diff_with_patch_gives_a_patch_that_applies_to_the_base(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    (path / "README.md").write_text("hello\nmore\n")
    write(path, {"untracked.txt": "u\n"})
    diff = await call(client, "session.diff", {"session": session["id"], "patch": True})
    assert "+more" in diff["patch"]
    patch_file = tmp_path / "work.patch"
    patch_file.write_text(diff["patch"])
    git(repo, "apply", str(patch_file))
    assert (repo / "README.md").read_text() == "hello\nmore\n"
    assert (repo / "untracked.txt").read_text() == "u\n"


async def test_diff_leaves_the_worktree_index_alone(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"untracked.txt": "u\n"})
    status = git(path, "status", "--porcelain")
    await call(client, "session.diff", {"session": session["id"], "patch": True})
    await get(client, session)
    assert git(path, "status", "--porcelain") == status == "?? untracked.txt\n"


async def test_every_status_change_is_journaled_with_gapless_seq_from_1(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    ref = {"session": session["id"]}
    await call(client, "session.archive", ref)
    await call(client, "session.restore", ref)
    await call(client, "session.delete", ref)
    await call(client, "session.restore", ref)
    await call(client, "session.update", {**ref, "title": "renamed"})
    found = await events(client, session)
    assert [e["seq"] for e in found] == list(range(1, len(found) + 1))
    assert {e["session_id"] for e in found} == {session["id"]}
    ids = [e["id"] for e in found]
    assert ids == sorted(ids)
    changes = [(e["data"]["from"], e["data"]["to"]) for e in found if e["kind"] == "status_changed"]
    assert changes == [
        ("created", "archived"),
        ("archived", "created"),
        ("created", "deleted"),
        ("deleted", "created"),
    ]
    assert found[0]["kind"] == "session_created"
    assert (await get(client, session))["last_seq"] == len(found)


async def test_events_after_a_seq_are_the_rest_in_order(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    await call(client, "session.archive", {"session": session["id"]})
    every = await events(client, session)
    rest = await call(client, "session.events", {"session": session["id"], "after_seq": 1})
    assert rest["events"] == every[1:]
    page = await call(client, "session.events", {"session": session["id"], "limit": 1})
    assert page["events"] == every[:1]


# ---- never lose work (Invariant 4) -----------------------------------------------------------


def make_work(path: Path) -> None:
    """Every kind of change a session's worktree can hold."""
    (path / "README.md").write_text("hello\nchanged by the agent\n")  # modified
    (path / "src" / "app.py").unlink()  # deleted
    write(path, {"staged.txt": "staged\n"})
    git(path, "add", "staged.txt")  # new, in the index
    write(
        path,
        {
            "notes/untracked.md": "untracked\n",  # new, untracked, in a new directory
            "blob.bin": bytes(range(256)) * 4,  # binary
            "crlf.txt": b"windows\r\nline endings\r\n",
        },
    )
    (path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (path / "run.sh").chmod(0o755)  # executable
    (path / "link").symlink_to("README.md")  # a symlink


async def test_delete_and_restore_bring_back_every_file_byte_for_byte(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    before = files_of(path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert not path.exists()
    assert removed["session"]["status"] == "deleted"
    assert removed["session"]["workspace"]["state"] == "removed"
    assert removed["snapshot"]["ref"] == f"refs/mimir/snapshots/{session['id']}"
    assert removed["snapshot"]["files"] == 8
    restored = await call(client, "session.restore", {"session": session["id"]})
    assert restored["status"] == "created"
    assert restored["workspace"]["state"] == "ok"
    assert files_of(path) == before
    assert (await get(client, session))["git"]["dirty"] is True


async def test_delete_does_not_move_the_sessions_branch(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "c\n"})
    tip = commit_all(path, "committed work")
    make_work(path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert branch_tip(repo, session["workspace"]["branch"]) == tip
    assert git(repo, "rev-parse", f"{removed['snapshot']['commit']}^").strip() == tip


async def test_delete_and_restore_leave_the_main_checkout_and_its_index_untouched(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    write(repo, {"user-untracked.txt": "the user's\n", "user-staged.txt": "staged\n"})
    git(repo, "add", "user-staged.txt")
    before = main_checkout_state(repo)
    session = await create(client, project, base_ref="main")
    make_work(workspace(session))
    await call(client, "session.delete", {"session": session["id"]})
    assert main_checkout_state(repo) == before
    await call(client, "session.restore", {"session": session["id"]})
    assert main_checkout_state(repo) == before


async def test_ignored_files_are_not_in_the_snapshot(client: TrioClient, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": "*.log\nbuild/\n", "README.md": README})
    project = await add_project(client, repo)
    session = await create(client, project)
    path = workspace(session)
    write(path, {"debug.log": "noise\n", "build/out.o": b"\x7fELF", "kept.txt": "kept\n"})
    removed = await call(client, "session.delete", {"session": session["id"]})
    listed = git(repo, "ls-tree", "-r", "--name-only", removed["snapshot"]["commit"]).split()
    assert sorted(listed) == [".gitignore", "README.md", "kept.txt"]


async def test_delete_with_delete_branch_keeps_the_work_reachable_from_the_snapshot_ref(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    branch = session["workspace"]["branch"]
    write(path, {"committed.txt": "committed\n"})
    commit_all(path, "committed work")
    write(path, {"untracked.txt": "untracked\n"})
    await call(client, "session.delete", {"session": session["id"], "delete_branch": True})
    assert branch_tip(repo, branch) is None
    ref = f"refs/mimir/snapshots/{session['id']}"
    assert git(repo, "show", f"{ref}:committed.txt") == "committed\n"
    assert git(repo, "show", f"{ref}:untracked.txt") == "untracked\n"


async def test_restore_after_delete_branch_brings_back_branch_and_work(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    branch = session["workspace"]["branch"]
    write(path, {"committed.txt": "committed\n"})
    tip = commit_all(path, "committed work")
    make_work(path)
    before = files_of(path)
    await call(client, "session.delete", {"session": session["id"], "delete_branch": True})
    await call(client, "session.restore", {"session": session["id"]})
    assert branch_tip(repo, branch) == tip
    assert files_of(path) == before


def block_snapshot_ref(repo: Path, session_id: str) -> Path:
    """A stale lock file: git's update of the snapshot ref fails (even for root)."""
    lock = repo / ".git" / "refs" / "mimir" / "snapshots" / f"{session_id}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    return lock


async def test_a_delete_whose_snapshot_fails_is_refused_and_removes_nothing(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    before = files_of(path)
    stored = without_git(await get(client, session))
    block_snapshot_ref(repo, session["id"])
    error = await error_of(client, "session.delete", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert "nothing was removed" in error["message"]
    assert files_of(path) == before
    assert path in git_worktrees(repo)
    assert branch_tip(repo, session["workspace"]["branch"]) == head(repo)
    assert without_git(await get(client, session)) == stored


async def test_force_removes_a_worktree_whose_snapshot_fails(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    block_snapshot_ref(repo, session["id"])
    removed = await call(client, "session.delete", {"session": session["id"], "force": True})
    assert removed["snapshot"] is None
    assert removed["session"]["status"] == "deleted"
    assert not path.exists()
    assert path not in git_worktrees(repo)
    assert branch_tip(repo, session["workspace"]["branch"]) == head(repo)


async def test_restoring_a_force_deleted_worktree_session_is_invalid_state(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    await call(client, "session.delete", {"session": session["id"], "force": True})
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert (await get(client, session))["status"] == "deleted"


async def test_deleting_twice_is_invalid_state(client: TrioClient, project: dict[str, Any]) -> None:
    session = await create(client, project)
    await call(client, "session.delete", {"session": session["id"]})
    error = await error_of(client, "session.delete", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"]["status"] == "deleted"


async def test_restoring_a_session_that_is_not_deleted_is_invalid_state(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"]["status"] == "created"


async def test_restore_onto_a_path_that_is_taken_is_already_exists_and_keeps_the_snapshot(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    path.mkdir()
    (path / "someone-elses.txt").write_text("theirs\n")
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert files_of(path) == {"someone-elses.txt": b"theirs\n\n[exec bits 0]"}
    assert (await get(client, session))["status"] == "deleted"
    assert (
        git(repo, "rev-parse", removed["snapshot"]["ref"]).strip() == removed["snapshot"]["commit"]
    )


async def test_deleting_an_in_place_session_leaves_the_project_directory_alone(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project, workspace="in_place")
    write(repo, {"user-work.txt": "the user's\n"})
    before = main_checkout_state(repo)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert removed["snapshot"] is None
    assert main_checkout_state(repo) == before


def fail_post_checkout(repo: Path) -> Path:
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    return hook


async def test_a_restore_that_fails_keeps_the_session_deleted_and_its_snapshot(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    before = files_of(path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    hook = fail_post_checkout(repo)
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert not path.exists()
    assert git_worktrees(repo) == [repo]
    assert (await get(client, session))["status"] == "deleted"
    hook.unlink()
    await call(client, "session.restore", {"session": session["id"]})
    assert files_of(path) == before
    assert (
        git(repo, "rev-parse", removed["snapshot"]["ref"]).strip()
        == (removed["snapshot"]["commit"])
    )


# ---- a create that fails leaves nothing behind -----------------------------------------------


async def leftovers(client: TrioClient, dirs: DaemonDirs, repo: Path) -> dict[str, Any]:
    """Everything a create could leave behind: sessions, branches, worktrees, directories."""
    worktrees_dir = dirs.data / "worktrees"
    return {
        "sessions": await all_sessions(client, include_archived=True, include_deleted=True),
        "branches": branches(repo),
        "worktrees": git_worktrees(repo),
        "admin": sorted(os.listdir(repo / ".git" / "worktrees"))
        if (repo / ".git" / "worktrees").exists()
        else [],
        # Sessions' directories, two levels down (the per-project parent may stay).
        "directories": sorted(str(p) for p in worktrees_dir.glob("*/*")),
        "checkout": main_checkout_state(repo),
    }


async def test_create_on_an_existing_branch_is_already_exists_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    git(repo, "branch", "taken")
    before = await leftovers(client, dirs, repo)
    error = await error_of(client, "session.create", {"project": project["id"], "branch": "taken"})
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert error["data"]["field"] == "branch"
    assert await leftovers(client, dirs, repo) == before
    assert branch_tip(repo, "taken") == head(repo)


async def test_create_on_an_invalid_branch_name_is_invalid_params_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    before = await leftovers(client, dirs, repo)
    error = await error_of(
        client, "session.create", {"project": project["id"], "branch": "bad..name"}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "branch"
    assert await leftovers(client, dirs, repo) == before


async def test_create_from_a_bad_base_ref_is_invalid_params_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    before = await leftovers(client, dirs, repo)
    error = await error_of(
        client, "session.create", {"project": project["id"], "base_ref": "no-such-ref"}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "base_ref"
    assert await leftovers(client, dirs, repo) == before


async def test_create_in_a_dirty_project_without_a_base_ref_is_invalid_state_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    (repo / "README.md").write_text("uncommitted\n")
    write(repo, {"untracked.txt": "u\n"})
    before = await leftovers(client, dirs, repo)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert "base_ref" in error["message"]
    assert await leftovers(client, dirs, repo) == before


@pytest.mark.parametrize("pattern", ["../outside.txt", "/etc/hostname", "sub/../../outside.txt"])
async def test_create_with_a_copy_files_pattern_escaping_the_repo_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path, pattern: str
) -> None:
    before = await leftovers(client, dirs, repo)
    error = await error_of(
        client,
        "session.create",
        {"project": project["id"], "config": {"copy_files": [".env", pattern]}},
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["detail"]["key"] == "copy_files.1"
    assert await leftovers(client, dirs, repo) == before


async def test_create_whose_copy_files_match_leads_outside_through_a_symlink_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    write(outside, {"secret.txt": "not yours\n"})
    repo = make_repo(tmp_path / "repo", {".gitignore": "escape\n", "README.md": README})
    (repo / "escape").symlink_to(outside)
    project = await add_project(client, repo, config={"copy_files": ["escape/*"]})
    before = await leftovers(client, dirs, repo)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "copy_files"
    assert await leftovers(client, dirs, repo) == before


async def test_copy_files_copies_ignored_files_into_the_new_worktree(
    client: TrioClient, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": ".env\n", "README.md": README})
    write(repo, {".env": "TOKEN=local\n"})
    project = await add_project(client, repo, config={"copy_files": [".env"]})
    session = await create(client, project)
    assert (workspace(session) / ".env").read_text() == "TOKEN=local\n"


@pytest.mark.parametrize(
    "target", ["mimird.workspaces.git.copy_files", "mimird.sessions.records.insert"]
)
async def test_create_that_fails_after_the_worktree_was_made_leaves_nothing(
    client: TrioClient,
    dirs: DaemonDirs,
    project: dict[str, Any],
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
) -> None:
    made: list[Path] = []

    def fail(*args: Any, **kwargs: Any) -> Any:
        # Only once git has made the worktree: the failure must undo it.
        made.extend(p for p in (dirs.data / "worktrees").glob("*/*") if (p / ".git").exists())
        raise RuntimeError("injected failure")

    before = await leftovers(client, dirs, repo)
    monkeypatch.setattr(target, fail)
    error = await error_of(client, "session.create", {"project": project["id"]})
    monkeypatch.undo()
    assert error["code"] == ErrorCode.INTERNAL_ERROR
    assert len(made) == 1
    assert await leftovers(client, dirs, repo) == before


async def test_create_whose_post_checkout_hook_fails_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    fail_post_checkout(repo)
    before = await leftovers(client, dirs, repo)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert "hook says no" in error["message"]
    assert await leftovers(client, dirs, repo) == before


# ---- drift -----------------------------------------------------------------------------------


def drift(kind: str, repo: Path, path: Path, tmp_path: Path) -> dict[str, Any]:
    """Make the session's worktree drift in one way; returns what session.get must show."""
    if kind == "missing":
        shutil.rmtree(path)
        return {"state": "missing"}
    if kind == "moved":
        moved = tmp_path / "moved-here"
        git(repo, "worktree", "move", str(path), str(moved))
        return {"state": "moved", "actual_path": str(moved.resolve())}
    if kind == "wrong_branch":
        git(path, "switch", "-q", "-c", "someone-elses")
        return {"state": "wrong_branch", "actual_branch": "someone-elses"}
    if kind == "detached":
        git(path, "switch", "-q", "--detach")
        return {"state": "wrong_branch", "actual_branch": "HEAD"}
    assert kind == "not_a_worktree"
    shutil.rmtree(path)
    path.mkdir()
    (path / "unrelated.txt").write_text("not a worktree\n")
    return {"state": "not_a_worktree"}


DRIFTS: Final = ["missing", "moved", "wrong_branch", "detached", "not_a_worktree"]


@pytest.mark.parametrize("kind", DRIFTS)
async def test_drift_is_reported_by_get_and_journaled(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    expected = drift(kind, repo, workspace(session), tmp_path)
    got = await get(client, session)
    shown = {k: got["workspace"][k] for k in ("state", "actual_path", "actual_branch")}
    assert shown == {"actual_path": None, "actual_branch": None, **expected}
    assert got["git"] is None
    [changed] = [e for e in await events(client, session) if e["kind"] == "workspace_state_changed"]
    assert changed["data"] == {"from": "ok", "to": expected["state"]} | {
        k: v for k, v in expected.items() if k != "state"
    }
    # Seen again: no new event for a state that did not change.
    await get(client, session)
    assert kinds(await events(client, session)).count("workspace_state_changed") == 1


@pytest.mark.parametrize("kind", DRIFTS)
async def test_worktree_list_reports_drift(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    expected = drift(kind, repo, workspace(session), tmp_path)
    listed = await call(client, "worktree.list", {"project": project["id"]})
    [info] = listed["worktrees"]
    assert (info["session_id"], info["state"]) == (session["id"], expected["state"])


@pytest.mark.parametrize("kind", DRIFTS)
async def test_diff_of_a_drifted_session_is_invalid_state(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    expected = drift(kind, repo, workspace(session), tmp_path)
    error = await error_of(client, "session.diff", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"] == {"workspace_state": expected["state"]}


@pytest.mark.parametrize("kind", ["moved", "wrong_branch", "detached", "not_a_worktree"])
async def test_delete_of_a_drifted_session_without_force_is_invalid_state_and_removes_nothing(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    path = workspace(session)
    expected = drift(kind, repo, path, tmp_path)
    where = Path(expected.get("actual_path", path))
    before = files_of(where)
    worktrees_before = git_worktrees(repo)
    error = await error_of(client, "session.delete", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"] == {"workspace_state": expected["state"]}
    assert files_of(where) == before
    assert git_worktrees(repo) == worktrees_before
    assert (await get(client, session))["status"] == "created"


async def test_delete_of_a_session_whose_worktree_is_missing_keeps_its_branch(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "c\n"})
    tip = commit_all(path, "committed")
    drift("missing", repo, path, tmp_path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert removed["session"]["status"] == "deleted"
    assert branch_tip(repo, session["workspace"]["branch"]) == tip
    assert git_worktrees(repo) == [repo]


async def test_force_delete_never_removes_a_directory_that_is_not_a_worktree(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    drift("not_a_worktree", repo, path, tmp_path)
    error = await error_of(client, "session.delete", {"session": session["id"], "force": True})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert (path / "unrelated.txt").read_text() == "not a worktree\n"


async def test_repair_adopts_a_moved_worktree(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    write(workspace(session), {"work.txt": "work\n"})
    expected = drift("moved", repo, workspace(session), tmp_path)
    repaired = await call(client, "session.repair", {"session": session["id"]})
    assert repaired["workspace"]["state"] == "ok"
    assert repaired["workspace"]["path"] == expected["actual_path"]
    got = await get(client, session)
    assert (got["workspace"]["state"], got["workspace"]["path"]) == ("ok", expected["actual_path"])
    diff = await call(client, "session.diff", {"session": session["id"]})
    assert [f["path"] for f in diff["files"]] == ["work.txt"]
    assert kinds(await events(client, session))[-1] == "workspace_repaired"


async def test_repair_recreates_a_missing_worktree_from_its_branch(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "c\n"})
    tip = commit_all(path, "committed")
    drift("missing", repo, path, tmp_path)
    repaired = await call(client, "session.repair", {"session": session["id"]})
    assert repaired["workspace"]["state"] == "ok"
    assert head(path) == tip
    assert (path / "committed.txt").read_text() == "c\n"
    assert git(path, "status", "--porcelain") == ""
    assert (await get(client, session))["workspace"]["state"] == "ok"


@pytest.mark.parametrize("kind", ["wrong_branch", "not_a_worktree"])
async def test_repair_of_drift_it_cannot_fix_is_invalid_state_and_changes_nothing(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    path = workspace(session)
    drift(kind, repo, path, tmp_path)
    before = files_of(path)
    error = await error_of(client, "session.repair", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert files_of(path) == before


async def test_switching_back_to_the_sessions_branch_returns_the_state_to_ok(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    drift("wrong_branch", repo, path, tmp_path)
    assert (await get(client, session))["workspace"]["state"] == "wrong_branch"
    git(path, "switch", "-q", session["workspace"]["branch"])
    got = await get(client, session)
    assert got["workspace"]["state"] == "ok"
    assert got["git"] is not None
    changes = [
        (e["data"]["from"], e["data"]["to"])
        for e in await events(client, session)
        if e["kind"] == "workspace_state_changed"
    ]
    assert changes == [("ok", "wrong_branch"), ("wrong_branch", "ok")]
    assert (await call(client, "session.diff", {"session": session["id"]}))["files"] == []


async def test_a_rebase_in_progress_is_not_drift(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    (path / "README.md").write_text("ours\n")
    commit_all(path, "ours")
    git(path, "switch", "-q", "-c", "other", "HEAD~1")
    (path / "README.md").write_text("theirs\n")
    commit_all(path, "theirs")
    git(path, "switch", "-q", session["workspace"]["branch"])
    # A conflict: the rebase stops with HEAD detached.
    assert git_exit_code(path, "rebase", "other") != 0
    assert (await get(client, session))["workspace"]["state"] == "ok"


async def test_a_session_deleted_while_its_worktree_was_missing_can_be_restored_from_its_branch(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "c\n"})
    tip = commit_all(path, "committed")
    drift("missing", repo, path, tmp_path)
    await call(client, "session.delete", {"session": session["id"]})
    restored = await call(client, "session.restore", {"session": session["id"]})
    assert restored["workspace"]["state"] == "ok"
    assert head(path) == tip


async def test_a_private_copy_is_kept_by_delete_and_brought_back_by_restore(
    client: TrioClient, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n"})
    project = await add_project(client, plain)
    session = await create(client, project)
    copy = workspace(session)
    write(copy, {"work.txt": "the agent's work\n", "bin/tool": b"\x00\xff"})
    before = files_of(copy)
    await call(client, "session.delete", {"session": session["id"]})
    assert not copy.exists()
    await call(client, "session.restore", {"session": session["id"]})
    assert files_of(copy) == before


# ---- configuration: every value names its layer ----------------------------------------------

DEFAULTS_CONFIG: Final = """
[defaults]
token_budget = 1000
branch_template = "work/{project}/{slug}"

[defaults.env]
D = "from-defaults"
A = "from-defaults-too"
"""


async def test_session_config_names_the_layer_of_every_value(dirs: DaemonDirs, repo: Path) -> None:
    async with daemon_with_config(dirs, DEFAULTS_CONFIG) as client:
        project = await add_project(
            client, repo, config={"agent": "claude", "env": {"A": "from-project"}}
        )
        session = await create(
            client,
            project,
            config={"env": {"B": "from-session"}, "tool_policy": {"execute": "allow"}},
        )
        config = await call(client, "session.config", {"session": session["id"]})
    sources = {e["key"]: (e["value"], e["source"]) for e in config["entries"]}
    builtin_kinds = [
        "delete",
        "edit",
        "fetch",
        "move",
        "other",
        "read",
        "search",
        "switch_mode",
        "think",
    ]
    assert sources == {
        "agent": ("claude", "project"),
        "branch_template": ("work/{project}/{slug}", "defaults"),
        "copy_files": ([], "builtin"),
        "env.A": ("from-project", "project"),
        "env.B": ("from-session", "session"),
        "env.D": ("from-defaults", "defaults"),
        "prompt_templates": ({}, "builtin"),
        "setup_command": (None, "builtin"),
        "token_budget": (1000, "defaults"),
        "tool_policy.execute": ("allow", "session"),
        **{f"tool_policy.{kind}": ("ask", "builtin") for kind in builtin_kinds},
        "worktree_location": ("{project}/{slug}-{short_id}", "builtin"),
    }
    assert config["effective"]["env"] == {
        "A": "from-project",
        "B": "from-session",
        "D": "from-defaults",
    }
    assert session["agent"] == "claude"


async def test_a_session_value_beats_the_project_and_the_defaults(
    dirs: DaemonDirs, repo: Path
) -> None:
    async with daemon_with_config(dirs, DEFAULTS_CONFIG) as client:
        project = await add_project(client, repo, config={"token_budget": 2000})
        inherits = await create(client, project, title="inherits")
        overrides = await create(client, project, title="overrides", config={"token_budget": 3000})
        inherited = await call(client, "session.config", {"session": inherits["id"]})
        overridden = await call(client, "session.config", {"session": overrides["id"]})
    assert inherited["effective"]["token_budget"] == 2000
    assert overridden["effective"]["token_budget"] == 3000
    [entry] = [e for e in overridden["entries"] if e["key"] == "token_budget"]
    assert entry["source"] == "session"


async def test_the_branch_template_from_the_defaults_shapes_the_branch_name(
    dirs: DaemonDirs, repo: Path
) -> None:
    async with daemon_with_config(dirs, DEFAULTS_CONFIG) as client:
        project = await add_project(client, repo, name="api")
        session = await create(client, project, title="Fix it!")
    assert session["workspace"]["branch"] == "work/api/fix-it"
    assert branch_tip(repo, "work/api/fix-it") == head(repo)


async def test_the_agent_param_beats_every_config_layer(dirs: DaemonDirs, repo: Path) -> None:
    async with daemon_with_config(dirs, '[defaults]\nagent = "goose"\n') as client:
        project = await add_project(client, repo, config={"agent": "claude"})
        default = await create(client, project, workspace="in_place")
        chosen = await create(client, project, workspace="in_place", agent="codex")
    assert (default["agent"], chosen["agent"]) == ("claude", "codex")


async def test_a_project_config_change_reaches_its_existing_sessions(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    await call(client, "project.update", {"project": project["id"], "config": {"agent": "x"}})
    config = await call(client, "session.config", {"session": session["id"]})
    assert [(e["value"], e["source"]) for e in config["entries"] if e["key"] == "agent"] == [
        ("x", "project")
    ]


# ---- secrets (Invariant 9) -------------------------------------------------------------------

#: Echoes both secrets, and writes their hashes where the test can check them.
ECHO_SECRETS: Final = (
    'echo "project=$SECRET_P session=$SECRET_S"; '
    'printf %s "$SECRET_P" | sha256sum > p.sha; '
    'printf %s "$SECRET_S" | sha256sum > s.sha'
)


def sha256_line(text: str) -> str:
    return f"{hashlib.sha256(text.encode()).hexdigest()}  -\n"


def secret_env(name: str, value: str) -> dict[str, Any]:
    return {"env": {name: {"value": value, "secret": True}}}


async def secret_session(
    client: TrioClient, repo: Path, command: str = ECHO_SECRETS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A project and a session with a secret env value each, whose setup command runs."""
    project = await add_project(
        client,
        repo,
        config={**secret_env("SECRET_P", PROJECT_SECRET), "setup_command": command},
    )
    session = await create(client, project, config=secret_env("SECRET_S", SESSION_SECRET))
    return project, session


def assert_no_secret(text: str) -> None:
    assert PROJECT_SECRET not in text
    assert SESSION_SECRET not in text


async def raw(client: TrioClient, method: str, params: Any) -> str:
    with trio.fail_after(CALL_TIMEOUT_S):
        response = await client.call_raw(method, params)
    return msgspec.json.encode(response).decode()


async def test_the_setup_command_receives_the_secrets_in_clear(
    client: TrioClient, repo: Path
) -> None:
    _, session = await secret_session(client, repo)
    assert session["status"] == "created"
    assert (workspace(session) / "p.sha").read_text() == sha256_line(PROJECT_SECRET)
    assert (workspace(session) / "s.sha").read_text() == sha256_line(SESSION_SECRET)


READS: Final = [
    "session.get",
    "session.list",
    "session.config",
    "session.events",
    "project.get",
    "project.list",
    "worktree.list",
]


@pytest.mark.parametrize("method", READS)
async def test_secrets_never_appear_in_an_answer(
    client: TrioClient, repo: Path, method: str
) -> None:
    project, session = await secret_session(client, repo)
    params = {
        "session.get": {"session": session["id"]},
        "session.list": {},
        "session.config": {"session": session["id"]},
        "session.events": {"session": session["id"]},
        "project.get": {"project": project["id"]},
        "project.list": {},
        "worktree.list": {},
    }[method]
    text = await raw(client, method, params)
    assert_no_secret(text)
    assert "***" in text or method == "worktree.list"


async def test_the_create_answer_shows_secrets_masked(client: TrioClient, repo: Path) -> None:
    _, session = await secret_session(client, repo)
    assert_no_secret(msgspec.json.encode(session).decode())
    assert session["config"]["env"] == {"SECRET_S": "***"}


async def test_setup_output_is_journaled_with_secrets_replaced(
    client: TrioClient, repo: Path
) -> None:
    _, session = await secret_session(client, repo)
    output = "".join(
        e["data"]["text"] for e in await events(client, session) if e["kind"] == "setup_output"
    )
    assert output == "project=*** session=***\n"


async def test_a_secret_written_in_two_pieces_is_still_not_journaled(
    client: TrioClient, repo: Path
) -> None:
    # The pause makes the daemon read the first half before the second is written.
    command = 'printf %s "$SECRET_P" | head -c 7; sleep 1; printf "%s\\n" "$SECRET_P" | tail -c +8'
    _, session = await secret_session(client, repo, command)
    output = "".join(
        e["data"]["text"] for e in await events(client, session) if e["kind"] == "setup_output"
    )
    assert_no_secret(output)


async def test_secrets_never_reach_the_audit_log(
    client: TrioClient, dirs: DaemonDirs, repo: Path
) -> None:
    _, session = await secret_session(client, repo)
    await call(
        client,
        "session.update",
        {"session": session["id"], "config": secret_env("SECRET_S", SESSION_SECRET + "-v2")},
    )
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=CALL_TIMEOUT_S)) as db:
        rows = db.execute("SELECT * FROM audit_log").fetchall()
        stored_events = db.execute("SELECT kind, data FROM events").fetchall()
    assert {row[4] for row in rows} >= {"project.add", "session.create", "session.update"}
    assert_no_secret(repr(rows))
    assert (SESSION_SECRET + "-v2") not in repr(rows)
    assert_no_secret(repr(stored_events))


async def test_a_masked_secret_sent_back_keeps_its_value(
    client: TrioClient, dirs: DaemonDirs, repo: Path
) -> None:
    _, session = await secret_session(client, repo)
    shown = (await get(client, session))["config"]
    await call(
        client,
        "session.update",
        {"session": session["id"], "config": {**shown, "token_budget": 7}},
    )
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=CALL_TIMEOUT_S)) as db:
        [(stored,)] = db.execute(
            "SELECT config FROM sessions WHERE id = ?", (session["id"],)
        ).fetchall()
    assert msgspec.json.decode(stored) == {
        **secret_env("SECRET_S", SESSION_SECRET),
        "token_budget": 7,
    }


@pytest.mark.parametrize(
    "env",
    [
        {"X": {"value": SESSION_SECRET, "secret": "yes"}},
        {"X": {"value": SESSION_SECRET, "secret": True, "extra": 1}},
        {"X": {"value": SESSION_SECRET + "\0", "secret": True}},
        {"X": {"value": SESSION_SECRET * 10_000, "secret": True}},
    ],
)
async def test_secrets_never_appear_in_error_messages(
    client: TrioClient, project: dict[str, Any], env: dict[str, Any]
) -> None:
    text = await raw(client, "session.create", {"project": project["id"], "config": {"env": env}})
    assert '"error"' in text
    assert_no_secret(text)


async def test_a_failing_setup_commands_failure_shows_secrets_masked(
    client: TrioClient, repo: Path
) -> None:
    _, session = await secret_session(client, repo, ECHO_SECRETS + "; exit 9")
    assert session["status"] == "failed"
    assert "project=*** session=***" in session["failure"]
    assert_no_secret(session["failure"])


def test_secrets_never_reach_the_daemons_log(dirs: DaemonDirs, repo: Path) -> None:
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text("")
    with daemon_process(dirs, "--log-level", "debug") as daemon:

        def rpc(method: str, params: Any) -> Any:
            response = blocking_call(dirs.socket, method, params, timeout=CALL_TIMEOUT_S)
            assert_no_secret(msgspec.json.encode(response).decode())
            return response

        project = rpc(
            "project.add",
            {
                "path": str(repo),
                "config": {**secret_env("SECRET_P", PROJECT_SECRET), "setup_command": "exit 3"},
            },
        )["result"]
        session = rpc(
            "session.create",
            {"project": project["id"], "config": secret_env("SECRET_S", SESSION_SECRET)},
        )["result"]
        rpc("session.create", {"project": project["id"], "config": {"env": {"X": 1}}})
        rpc("session.get", {"session": session["id"]})
        rpc("session.delete", {"session": session["id"]})
        assert daemon.terminate() == 0
        log = daemon.stderr
    assert "session_setup_failed" in log
    assert_no_secret(log)


async def test_a_secret_from_the_config_files_defaults_is_masked_and_reaches_the_setup_command(
    dirs: DaemonDirs, repo: Path
) -> None:
    config = f"""
[defaults]
setup_command = 'printf %s "$TOKEN" | sha256sum > token.sha; echo "token=$TOKEN"'

[defaults.env.TOKEN]
value = "{PROJECT_SECRET}"
secret = true
"""
    async with daemon_with_config(dirs, config) as client:
        project = await add_project(client, repo)
        session = await create(client, project)
        answers = [
            await raw(client, "session.config", {"session": session["id"]}),
            await raw(client, "session.events", {"session": session["id"]}),
        ]
    assert (workspace(session) / "token.sha").read_text() == sha256_line(PROJECT_SECRET)
    for text in answers:
        assert_no_secret(text)
    assert "token=***" in answers[1]


# ---- the setup command -----------------------------------------------------------------------


async def test_a_successful_setup_command_leaves_the_session_created_with_its_output_journaled(
    client: TrioClient, repo: Path
) -> None:
    project = await add_project(
        client, repo, config={"setup_command": "echo installing; echo done >&2"}
    )
    session = await create(client, project)
    assert session["status"] == "created"
    assert session["failure"] is None
    found = await events(client, session)
    assert kinds(found)[:3] == ["session_created", "workspace_created", "setup_started"]
    assert found[0]["data"] == {"status": "preparing"}
    output = "".join(e["data"]["text"] for e in found if e["kind"] == "setup_output")
    assert output == "installing\ndone\n"
    [finished] = [e for e in found if e["kind"] == "setup_finished"]
    assert finished["data"] == {"exit_code": 0}
    assert found[-1]["kind"] == "status_changed"
    assert (found[-1]["data"]["from"], found[-1]["data"]["to"]) == ("preparing", "created")


async def test_a_failing_setup_command_leaves_the_session_failed_with_exit_code_and_last_lines(
    client: TrioClient, repo: Path
) -> None:
    command = "for i in $(seq 1 30); do echo line$i; done; exit 3"
    project = await add_project(client, repo, config={"setup_command": command})
    session = await create(client, project)
    assert session["status"] == "failed"
    first, *tail = session["failure"].splitlines()
    assert "exited with 3" in first
    assert tail == [f"line{i}" for i in range(11, 31)]
    assert (await get(client, session))["failure"] == session["failure"]
    found = await events(client, session)
    [finished] = [e for e in found if e["kind"] == "setup_finished"]
    assert finished["data"] == {"exit_code": 3}
    assert (found[-1]["data"]["from"], found[-1]["data"]["to"]) == ("preparing", "failed")
    # The workspace stays, so that the user can see what went wrong.
    assert workspace(session).is_dir()


async def test_the_setup_command_runs_in_the_new_worktree_with_the_layered_env(
    dirs: DaemonDirs, repo: Path
) -> None:
    command = 'pwd -P > where.txt; echo "$D $A $B" > env.txt'
    async with daemon_with_config(dirs, '[defaults.env]\nD = "d"\nA = "overridden"\n') as client:
        project = await add_project(
            client, repo, config={"setup_command": command, "env": {"A": "a"}}
        )
        session = await create(client, project, config={"env": {"B": "b"}})
    path = workspace(session)
    assert (path / "where.txt").read_text().strip() == str(path.resolve())
    assert (path / "env.txt").read_text() == "d a b\n"
    assert not (repo / "where.txt").exists()


async def test_the_setup_command_gets_none_of_the_daemons_private_environment(
    dirs: DaemonDirs, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("MIMIR_DB_KEY", PROJECT_SECRET)
    monkeypatch.setenv("LISTEN_FDS", "1")
    async with daemon_with_config(dirs, "") as client:
        project = await add_project(client, repo, config={"setup_command": "env > env.txt"})
        session = await create(client, project)
    names = {
        line.split("=", 1)[0] for line in (workspace(session) / "env.txt").read_text().splitlines()
    }
    assert not names & {"NOTIFY_SOCKET", "MIMIR_DB_KEY", "LISTEN_FDS"}
    assert "PATH" in names


async def test_a_setup_command_from_the_session_layer_runs_too(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project, config={"setup_command": "touch made-by-setup"})
    assert (workspace(session) / "made-by-setup").exists()


async def test_a_session_whose_setup_failed_can_be_deleted_and_its_work_is_snapshotted(
    client: TrioClient, repo: Path
) -> None:
    project = await add_project(client, repo, config={"setup_command": "echo x > out.txt; exit 1"})
    session = await create(client, project)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert git(repo, "show", f"{removed['snapshot']['ref']}:out.txt") == "x\n"


async def wait_until_preparing(client: TrioClient) -> dict[str, Any]:
    """The one session whose setup command is running, once it is (polled: the daemon
    tells no one)."""
    while True:
        if found := await all_sessions(client, status=["preparing"]):
            [session] = found
            return session
        await trio.sleep(POLL_S)


async def test_a_session_deleted_while_its_setup_runs_stays_deleted(
    daemon: InProcessDaemon, client: TrioClient, repo: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    command = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo finished"
    project = await add_project(client, repo, config={"setup_command": command})
    answers: list[dict[str, Any]] = []

    async def create_slowly() -> None:
        async with TrioClient.connect(daemon.socket) as own:
            with trio.fail_after(CALL_TIMEOUT_S):
                answers.append(await own.call_raw("session.create", {"project": project["id"]}))

    with trio.fail_after(CALL_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(create_slowly)
            session = await wait_until_preparing(client)
            deleting = await client.call_raw("session.delete", {"session": session["id"]})
            gate.touch()
    final = await get(client, session)
    if "error" in deleting:
        # Refusing the delete while the setup runs is as good.
        assert deleting["error"]["code"] == ErrorCode.INVALID_STATE
        assert final["status"] == "created"
    else:
        assert final["status"] == "deleted"
        assert final["workspace"]["state"] == "removed"
        assert not workspace(session).exists()


async def _setup_pid(pidfile: Path) -> int:
    """The pid the setup command wrote (polled: nothing says when it has)."""
    path = trio.Path(pidfile)
    while not (await path.exists() and (text := await path.read_text()).strip()):  # noqa: ASYNC110
        await trio.sleep(POLL_S)
    return int(text)


async def test_cancel_ends_a_running_setup_command_and_fails_the_session(
    daemon: InProcessDaemon, client: TrioClient, repo: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "setup.pid"
    # A command that would never end by itself, with a child that ignores SIGTERM.
    command = f"echo $$ > {pidfile}; (trap '' TERM; sleep 1000) & while true; do sleep 0.05; done"
    project = await add_project(client, repo, config={"setup_command": command})
    answers: list[dict[str, Any]] = []

    async def create_slowly() -> None:
        async with TrioClient.connect(daemon.socket) as own:
            answers.append(await own.call_raw("session.create", {"project": project["id"]}))

    with trio.fail_after(CALL_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(create_slowly)
            session = await wait_until_preparing(client)
            pgid = await _setup_pid(pidfile)
            cancelled = await trio.to_thread.run_sync(
                run_mimirctl, daemon.dirs, "cancel", session["id"][:8]
            )
            assert cancelled.returncode == 0, cancelled.stderr
            assert cancelled.stdout == "setup command cancelled\n"
    [answer] = answers
    assert answer["result"]["status"] == "failed"
    assert answer["result"]["failure"] == "setup command cancelled (session.cancel)"
    assert not group_alive(pgid), "the whole group of the setup command is gone"
    found = await events(client, session)
    [finished] = [e for e in found if e["kind"] == "setup_finished"]
    assert finished["data"] == {"exit_code": None, "ended": "cancelled"}
    # Nothing runs any more: a second cancel has nothing to cancel.
    again = await call(client, "session.cancel", {"session": session["id"]})
    assert again["cancelled"] is False


async def test_a_setup_command_that_runs_too_long_is_stopped(
    dirs: DaemonDirs, repo: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "setup.pid"
    config = "[supervision]\nsetup_timeout_s = 0.5\n"
    async with daemon_with_config(dirs, config) as client:
        project = await add_project(
            client, repo, config={"setup_command": f"echo $$ > {pidfile}; sleep 1000"}
        )
        with trio.fail_after(CALL_TIMEOUT_S):
            session = await create(client, project)
        assert session["status"] == "failed"
        assert "timed out after 0.5 s" in session["failure"]
        assert not group_alive(await _setup_pid(pidfile))
        found = await events(client, session)
        [finished] = [e for e in found if e["kind"] == "setup_finished"]
        assert finished["data"] == {"exit_code": None, "ended": "timed_out"}


# ---- concurrency -----------------------------------------------------------------------------


async def test_concurrent_creates_in_one_project_all_succeed_without_colliding(
    daemon: InProcessDaemon, client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    made: list[dict[str, Any]] = []

    async def create_one(n: int) -> None:
        async with TrioClient.connect(daemon.socket) as own:
            # The same title for all: the names must still not collide.
            made.append(await create(own, project, title="same title", task=f"task {n}"))

    with trio.fail_after(CALL_TIMEOUT_S * 2):
        async with trio.open_nursery() as nursery:
            for n in range(CONCURRENT_CREATES):
                nursery.start_soon(create_one, n)
    assert len({s["id"] for s in made}) == CONCURRENT_CREATES
    assert len({s["workspace"]["branch"] for s in made}) == CONCURRENT_CREATES
    assert len({s["workspace"]["path"] for s in made}) == CONCURRENT_CREATES
    assert {s["status"] for s in made} == {"created"}
    assert set(git_worktrees(repo)) == {repo, *(workspace(s) for s in made)}
    for session in made:
        assert (
            git(workspace(session), "symbolic-ref", "--short", "HEAD").strip()
            == (session["workspace"]["branch"])
        )
    assert {s["id"] for s in await all_sessions(client)} == {s["id"] for s in made}


async def test_concurrent_creates_on_one_branch_name_make_exactly_one_session(
    daemon: InProcessDaemon, client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    codes: list[int] = []

    async def create_one() -> None:
        async with TrioClient.connect(daemon.socket) as own:
            with trio.fail_after(CALL_TIMEOUT_S):
                response = await own.call_raw(
                    "session.create", {"project": project["id"], "branch": "contested"}
                )
            codes.append(response["error"]["code"] if "error" in response else 0)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(create_one)
    assert sorted(codes) == [ErrorCode.ALREADY_EXISTS] * 4 + [0]
    assert len(git_worktrees(repo)) == 2
    assert len(await all_sessions(client, include_deleted=True)) == 1


async def test_two_deletes_of_one_session_at_once_delete_it_once_and_keep_its_snapshot(
    daemon: InProcessDaemon, client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    make_work(workspace(session))
    answers: list[dict[str, Any]] = []

    async def delete() -> None:
        async with TrioClient.connect(daemon.socket) as own:
            with trio.fail_after(CALL_TIMEOUT_S):
                answers.append(await own.call_raw("session.delete", {"session": session["id"]}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(delete)
        nursery.start_soon(delete)
    [ok] = [a for a in answers if "result" in a]
    [refused] = [a for a in answers if "error" in a]
    assert refused["error"]["code"] == ErrorCode.INVALID_STATE
    snapshot = ok["result"]["snapshot"]
    assert snapshot["files"] == 8
    got = await get(client, session)
    assert got["workspace"]["snapshot_commit"] == snapshot["commit"]
    assert git(repo, "rev-parse", snapshot["ref"]).strip() == snapshot["commit"]


# ---- the state machine -----------------------------------------------------------------------


async def stored(client: TrioClient, session: dict[str, Any]) -> dict[str, Any]:
    """What is stored of a session, as a client can see it."""
    return {
        "session": without_git(await get(client, session)),
        "events": await events(client, session),
    }


async def archived(client: TrioClient, session: dict[str, Any]) -> None:
    await call(client, "session.archive", {"session": session["id"]})


async def deleted(client: TrioClient, session: dict[str, Any]) -> None:
    await call(client, "session.delete", {"session": session["id"]})


async def archived_then_deleted(client: TrioClient, session: dict[str, Any]) -> None:
    await archived(client, session)
    await deleted(client, session)


async def untouched(client: TrioClient, session: dict[str, Any]) -> None:
    pass


ILLEGAL: Final = [
    # (how the session got there, its status, the call that must be refused)
    (archived, "archived", "session.archive"),
    (untouched, "created", "session.restore"),
    (deleted, "deleted", "session.delete"),
    (deleted, "deleted", "session.archive"),
    (archived_then_deleted, "deleted", "session.delete"),
    (archived_then_deleted, "deleted", "session.archive"),
]


@pytest.mark.parametrize(
    ("prepare", "status", "method"), ILLEGAL, ids=[f"{m}-when-{s}" for _, s, m in ILLEGAL]
)
async def test_an_illegal_transition_is_invalid_state_and_changes_nothing(
    client: TrioClient, project: dict[str, Any], prepare: Any, status: str, method: str
) -> None:
    session = await create(client, project)
    await prepare(client, session)
    before = await stored(client, session)
    assert before["session"]["status"] == status
    error = await error_of(client, method, {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"]["status"] == status
    assert error["data"]["id"] == session["id"]
    assert status in error["message"]
    assert await stored(client, session) == before


async def test_a_failed_session_cannot_be_restored_but_can_be_archived(
    client: TrioClient, repo: Path
) -> None:
    project = await add_project(client, repo, config={"setup_command": "exit 1"})
    session = await create(client, project)
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert (error["code"], error["data"]["detail"]["status"]) == (ErrorCode.INVALID_STATE, "failed")
    assert (await call(client, "session.archive", {"session": session["id"]}))["status"] == (
        "archived"
    )


async def test_an_archived_session_keeps_its_worktree_and_can_be_deleted(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    make_work(workspace(session))
    before = files_of(workspace(session))
    await archived(client, session)
    assert files_of(workspace(session)) == before
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert removed["session"]["status"] == "deleted"
    assert removed["snapshot"]["files"] == 8


# ---- ids and prefixes ------------------------------------------------------------------------


async def test_a_unique_six_character_prefix_finds_the_session(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    got = await call(client, "session.get", {"session": session["id"][:6]})
    assert got["id"] == session["id"]
    upper = await call(client, "session.get", {"session": session["id"][:6].upper()})
    assert upper["id"] == session["id"]


async def test_an_ambiguous_prefix_is_invalid_params_naming_the_matches(
    client: TrioClient, project: dict[str, Any]
) -> None:
    first = await create(client, project, workspace="in_place")
    second = await create(client, project, workspace="in_place")
    common = ""
    for a, b in zip(first["id"], second["id"], strict=True):
        if a != b:
            break
        common += a
    assert len(common) >= 4  # ids made a moment apart share their time prefix
    before = await stored(client, first)
    for method in ("session.get", "session.archive", "session.delete"):
        error = await error_of(client, method, {"session": common})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == "session"
        assert first["id"] in error["message"]
        assert second["id"] in error["message"]
    assert await stored(client, first) == before


async def test_an_unknown_id_is_not_found(client: TrioClient, project: dict[str, Any]) -> None:
    await create(client, project, workspace="in_place")
    for ref in ("zzzzzzzzzzzzzzzzzzzzzzzzzz", "zzzz"):
        error = await error_of(client, "session.get", {"session": ref})
        assert error["code"] == ErrorCode.NOT_FOUND
        assert error["data"]["id"] == ref


async def test_a_prefix_shorter_than_four_characters_is_invalid_params(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project, workspace="in_place")
    error = await error_of(client, "session.get", {"session": session["id"][:3]})
    assert error["code"] == ErrorCode.INVALID_PARAMS


async def test_create_in_an_unknown_project_is_not_found_and_makes_nothing(
    client: TrioClient,
) -> None:
    error = await error_of(client, "session.create", {"project": "nope"})
    assert error["code"] == ErrorCode.NOT_FOUND
    assert await all_sessions(client, include_deleted=True) == []


async def test_create_in_an_archived_project_is_invalid_state(
    client: TrioClient, project: dict[str, Any]
) -> None:
    await call(client, "project.update", {"project": project["id"], "archived": True})
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert await all_sessions(client, include_deleted=True) == []


async def test_an_unknown_param_is_invalid_params(
    client: TrioClient, project: dict[str, Any]
) -> None:
    error = await error_of(
        client, "session.create", {"project": project["id"], "worktree": "in_place"}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert await all_sessions(client, include_deleted=True) == []


# ---- the audit log ---------------------------------------------------------------------------


def audit_rows(dirs: DaemonDirs) -> list[tuple[str, str | None, str, int | None]]:
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=CALL_TIMEOUT_S)) as db:
        rows = db.execute(
            "SELECT method, target, outcome, error_code FROM audit_log"
            " WHERE method LIKE 'session.%' ORDER BY id"
        ).fetchall()
    return [tuple(row) for row in rows]


async def test_every_mutating_session_call_is_audited_with_its_outcome(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    ref = {"session": session["id"]}
    await call(client, "session.update", {**ref, "title": "t"})
    await call(client, "session.archive", ref)
    await call(client, "session.restore", ref)
    await call(client, "session.repair", ref)
    await call(client, "session.get", ref)  # not mutating: not audited
    await error_of(client, "session.restore", ref)
    rows = audit_rows(dirs)
    assert [(method, outcome, code) for method, _, outcome, code in rows] == [
        ("session.create", "ok", None),
        ("session.update", "ok", None),
        ("session.archive", "ok", None),
        ("session.restore", "ok", None),
        ("session.repair", "ok", None),
        ("session.restore", "error", ErrorCode.INVALID_STATE),
    ]


async def test_the_audit_log_names_the_session_each_call_acted_on(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    await call(client, "session.delete", {"session": session["id"]})
    await error_of(client, "session.delete", {"session": session["id"]})
    assert [target for _, target, _, _ in audit_rows(dirs)] == [session["id"]] * 3
