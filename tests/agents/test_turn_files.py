"""What each turn changed in the workspace, whoever changed it: ``turn_ended``'s files.

The scripted fake agent writes, removes and renames files directly on disk (as agents
that write files themselves do: no fs/write_text_file, so no file_written event); the
daemon compares the workspace at the turn's end with the workspace at its start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mimirctl import render
from mimird.agents.turn_files import MAX_TURN_FILES, SCRATCH_DIR, clear_leftovers
from tests.support.agents import Client, agent_world, event_data, new_session, workspace_of
from tests.support.helpers import DaemonDirs, git

pytestmark = pytest.mark.timeout(60)


def _write(path: str, text: str) -> dict[str, Any]:
    return {"do": "disk_write", "path": path, "text": text}


def _bytes_of(path: Path) -> bytes:
    return path.read_bytes()


async def _turn_ends(c: Client, session_id: str) -> list[dict[str, Any]]:
    return await event_data(c, session_id, "turn_ended")


async def test_a_turn_journals_every_file_the_agent_changed_on_disk(dirs: DaemonDirs) -> None:
    # The repository holds README.md ("hello\n") and src/app.py (2 lines), committed.
    first = [
        _write("notes/new.txt", "one\ntwo\nthree\n"),  # untracked: added
        _write("README.md", "hello\nworld\n"),  # modified
        {"do": "disk_remove", "path": "src/app.py"},  # deleted
        {"do": "disk_write", "path": "logo.png", "hex": "89504e470d0a1a0a00ff00fe"},
    ]
    second = [{"do": "disk_rename", "path": "notes/new.txt", "to": "notes/moved.txt"}]
    scenario = {"prompts": [first, second]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        workspace = await workspace_of(c, session_id)
        index = Path(
            git(workspace, "rev-parse", "--path-format=absolute", "--git-path", "index").strip()
        )
        index_before = _bytes_of(index)
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        await c.call("session.prompt", {"session": session_id, "text": "two"})
        ends = await _turn_ends(c, session_id)
        assert sorted(ends[0]["files"], key=lambda f: f["path"]) == [
            {"path": "README.md", "change": "modified", "insertions": 1},
            {"path": "logo.png", "change": "added", "binary": True},
            {"path": "notes/new.txt", "change": "added", "insertions": 3},
            {"path": "src/app.py", "change": "deleted", "deletions": 2},
        ]
        assert ends[1]["files"] == [
            {"path": "notes/moved.txt", "change": "renamed", "old_path": "notes/new.txt"}
        ]
        assert "files_more" not in ends[0]
        assert "files_skipped" not in ends[0]
        # No file_written events: only the diff tells.
        assert await event_data(c, session_id, "file_written") == []
        # The worktree's index and files are untouched by the comparison.
        assert _bytes_of(index) == index_before
        assert (workspace / "notes" / "moved.txt").read_text() == "one\ntwo\nthree\n"
        assert render.turn_files(ends[0]) == "4 files +4 -2"


async def test_a_turn_that_changes_nothing_journals_no_files(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "think only"})
        (end,) = await _turn_ends(c, session_id)
        assert end["files"] == []
        assert render.turn_files(end) == ""


async def test_what_the_user_changes_between_turns_is_not_the_next_turns(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [[_write("agent.txt", "a\n")], []]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        workspace = await workspace_of(c, session_id)
        (workspace / "user.txt").write_text("mine\n")
        (workspace / "README.md").write_text("edited by the user\n")
        await c.call("session.prompt", {"session": session_id, "text": "two"})
        ends = await _turn_ends(c, session_id)
        assert ends[0]["files"] == [{"path": "agent.txt", "change": "added", "insertions": 1}]
        assert ends[1]["files"] == []


async def test_ignored_files_are_not_listed(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[_write(".gitignore", "build/\n"), _write("build/out.o", "x")]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "build"})
        (end,) = await _turn_ends(c, session_id)
        assert [f["path"] for f in end["files"]] == [".gitignore"]


async def test_the_files_listed_are_capped_and_the_rest_counted(dirs: DaemonDirs) -> None:
    extra = 7
    writes = [_write(f"many/f{i:05d}.txt", "x\n") for i in range(MAX_TURN_FILES + extra)]
    async with (
        agent_world(dirs, {"prompts": [writes]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "many"})
        (end,) = await _turn_ends(c, session_id)
        assert len(end["files"]) == MAX_TURN_FILES
        assert end["files_more"] == extra
        assert render.turn_files(end).startswith(f"{MAX_TURN_FILES + extra} files ")


async def test_a_private_copy_is_not_compared_and_says_why(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[_write("out.txt", "x\n")]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        plain = dirs.root / "plain"
        plain.mkdir()
        (plain / "data.txt").write_text("d\n")
        project = await c.call("project.add", {"path": str(plain)})
        session = await c.call("session.create", {"project": project["id"]})
        assert session["workspace"]["kind"] == "private"
        await c.call("session.prompt", {"session": session["id"], "text": "x"})
        (end,) = await _turn_ends(c, session["id"])
        assert "files" not in end
        assert "not a git repository" in end["files_skipped"]
        assert render.turn_files(end) == ""


async def test_the_changed_paths_are_found_by_search(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[_write("docs/quokka_migration.md", "# plan\n")]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "write the plan"})
        hits = (await c.call("search", {"query": "quokka_migration"}))["hits"]
        assert [(h["session_id"], h["kind"]) for h in hits] == [(session_id, "turn_ended")]


async def test_a_secret_in_a_changed_path_is_masked(dirs: DaemonDirs) -> None:
    secret = "s3cr3t-t0ken-value"
    scenario = {"prompts": [[_write(f"leak-{secret}.txt", "x\n")]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        config = {"env": {"API_KEY": {"value": secret, "secret": True}}}
        session = await c.call("session.create", {"project": world.project, "config": config})
        await c.call("session.prompt", {"session": session["id"], "text": "x"})
        (end,) = await _turn_ends(c, session["id"])
        assert [f["path"] for f in end["files"]] == ["leak-***.txt"]
        assert (await c.call("search", {"query": secret}))["hits"] == []


async def test_active_time_sums_the_turns(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "sleep", "s": 0.2}], [{"do": "sleep", "s": 0.2}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        assert (await c.call("session.get", {"session": session_id}))["active_s"] == 0
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        after_one = (await c.call("session.get", {"session": session_id}))["active_s"]
        await c.call("session.prompt", {"session": session_id, "text": "two"})
        after_two = (await c.call("session.get", {"session": session_id}))["active_s"]
        assert 0.2 <= after_one < after_two


async def test_a_workspace_git_cannot_read_at_the_turns_end_says_why(dirs: DaemonDirs) -> None:
    # The agent removes the worktree's .git file: git no longer knows the directory.
    scenario = {"prompts": [[{"do": "disk_remove", "path": ".git"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        result = await c.call("session.prompt", {"session": session_id, "text": "x"})
        assert result["stop_reason"] == "end_turn"
        (end,) = await _turn_ends(c, session_id)
        assert "files" not in end
        assert end["files_skipped"].startswith("cannot read the files of ")
        assert "not a git repository" in end["files_skipped"]


async def test_the_private_index_lives_in_the_state_directory_and_goes_with_the_agent(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [[_write("a.txt", "a\n")]]}
    scratch = dirs.state / SCRATCH_DIR
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        held = [p.name for p in scratch.iterdir()]
        await c.call("session.stop", {"session": session_id})
        after_stop = list(scratch.iterdir())
    # Named after this daemon (its pid), so that the next one knows whose it is.
    assert [name.partition("-")[0] for name in held] == [str(os.getpid())]
    assert after_stop == []


def test_leftovers_of_gone_daemons_are_removed_and_a_running_ones_kept(tmp_path: Path) -> None:
    dead = _ended_pid()
    root = tmp_path / SCRATCH_DIR
    (root / f"{dead}-abc").mkdir(parents=True)
    (root / f"{dead}-abc" / "index").write_bytes(b"DIRC")
    (root / f"{os.getpid()}-def").mkdir()
    (root / "stray").write_text("x")
    removed = clear_leftovers(root)
    assert sorted(p.name for p in removed) == sorted([f"{dead}-abc", "stray"])
    assert [p.name for p in root.iterdir()] == [f"{os.getpid()}-def"]
    assert clear_leftovers(tmp_path / "none") == []


def _ended_pid() -> int:
    """The pid of a process that has ended."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


async def test_a_restart_clears_the_private_indexes_a_killed_daemon_left(dirs: DaemonDirs) -> None:
    scratch = dirs.state / SCRATCH_DIR
    (scratch / f"{_ended_pid()}-left").mkdir(parents=True)
    async with agent_world(dirs, {"prompts": []}):
        left = list(scratch.iterdir())
    assert left == []
