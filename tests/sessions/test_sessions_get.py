"""session.get, update, diff and events.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    TrioClient,
    git,
    write,
)
from tests.support.sessions import (
    all_sessions,
    call,
    commit_all,
    create,
    error_of,
    events,
    get,
    head,
    kinds,
    without_git,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


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


async def test_diff_of_a_file_whose_name_is_not_utf8_shows_the_name(
    client: TrioClient, project: dict[str, Any]
) -> None:
    # An agent's shell may make any name; git gives it back as bytes. The answer
    # could not be written as JSON: session.diff failed with an internal error.
    session = await create(client, project)
    path = workspace(session)
    (path / os.fsdecode(b"caf\xe9 \xff.txt")).write_bytes(b"latin-1\n")
    for patch in (False, True):
        diff = await call(client, "session.diff", {"session": session["id"], "patch": patch})
        assert [f["path"] for f in diff["files"]] == ["caf\\xe9 \\xff.txt"]
        assert diff["files"][0]["insertions"] == 1
    assert '+++ "b/caf\\351 \\377.txt"' in diff["patch"]  # git's own quoting: applies


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
