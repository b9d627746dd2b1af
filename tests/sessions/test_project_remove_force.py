"""`project.remove` with `force` (`mimirctl project rm --force`) keeps invariant 4:
each of the project's sessions is deleted first, its work snapshotted under
`refs/mimir/snapshots/<id>` and its worktree removed; a session whose work cannot be
saved stops the removal, and nothing of it is lost.

Over the socket of an in-process daemon (and `mimirctl` as a real subprocess),
against a real git repository; what the repository holds afterwards is read with git
itself, byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    GIT_ENV,
    GIT_TIMEOUT_S,
    DaemonDirs,
    TrioClient,
    git,
    run_mimirctl,
    write,
)
from tests.support.sessions import (
    branch_tip,
    call,
    commit_all,
    create,
    error_of,
    git_worktrees,
    workspace,
)

pytestmark = pytest.mark.timeout(90)

SESSIONS: Final = 2


def git_bytes(repo: Path, *args: str) -> bytes:
    """git's stdout, as bytes (a blob is compared byte for byte)."""
    result = subprocess.run(
        ["git", *args],
        cwd=repo,
        env=GIT_ENV,
        capture_output=True,
        check=False,
        timeout=GIT_TIMEOUT_S,
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr!r}"
    return result.stdout


def make_every_kind_of_work(path: Path, n: int) -> tuple[str, dict[str, bytes]]:
    """Committed work on the session's branch, then tracked files modified and
    untracked files added on top; the branch's tip and every file's expected bytes."""
    write(path, {f"committed-{n}.txt": f"committed on the branch by session {n}\n"})
    tip = commit_all(path, f"work of session {n}")
    work: dict[str, bytes] = {
        f"committed-{n}.txt": f"committed on the branch by session {n}\n".encode(),
        "README.md": f"hello\nmodified, not committed, by session {n}\n".encode(),
        "src/app.py": f"def main():\n    return {n + 2}\n".encode(),
        f"notes/untracked-{n}.md": f"untracked note {n}\n".encode(),
        f"untracked-{n}.bin": bytes(range(256)) * (n + 3) + b"\x00\r\n",
    }
    write(path, {name: content for name, content in work.items() if name != f"committed-{n}.txt"})
    return tip, work


async def sessions_with_work(
    client: TrioClient, project: dict[str, Any]
) -> list[tuple[dict[str, Any], str, dict[str, bytes]]]:
    made = []
    for n in range(SESSIONS):
        session = await create(client, project, title=f"work {n}")
        tip, work = make_every_kind_of_work(workspace(session), n)
        made.append((session, tip, work))
    return made


def assert_work_is_in_the_snapshot(repo: Path, session_id: str, work: dict[str, bytes]) -> None:
    ref = f"refs/mimir/snapshots/{session_id}"
    for name, content in work.items():
        assert git_bytes(repo, "cat-file", "blob", f"{ref}:{name}") == content, (ref, name)


async def assert_removed_with_its_work_saved(
    client: TrioClient,
    repo: Path,
    project: dict[str, Any],
    made: list[tuple[dict[str, Any], str, dict[str, bytes]]],
) -> None:
    for session, tip, work in made:
        assert_work_is_in_the_snapshot(repo, session["id"], work)
        # The snapshot sits on the branch's tip, which did not move.
        snapshot = git(repo, "rev-parse", f"refs/mimir/snapshots/{session['id']}").strip()
        assert git(repo, "rev-parse", f"{snapshot}^").strip() == tip
        assert branch_tip(repo, session["workspace"]["branch"]) == tip
        assert not workspace(session).exists()
        error = await error_of(client, "session.get", {"session": session["id"]})
        assert error["code"] == ErrorCode.NOT_FOUND
    assert git_worktrees(repo) == [repo]
    error = await error_of(client, "project.get", {"project": project["id"]})
    assert error["code"] == ErrorCode.NOT_FOUND


async def test_forced_project_remove_snapshots_every_sessions_work_before_removing_it(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    made = await sessions_with_work(client, project)
    removed = await call(client, "project.remove", {"project": project["id"], "force": True})
    assert removed["sessions_removed"] == SESSIONS
    await assert_removed_with_its_work_saved(client, repo, project, made)


async def test_mimirctl_project_rm_force_snapshots_every_sessions_work_before_removing_it(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    made = await sessions_with_work(client, project)
    done = await trio.to_thread.run_sync(
        lambda: run_mimirctl(dirs, "project", "rm", project["name"], "--force")
    )
    assert done.returncode == 0, done.stderr
    await assert_removed_with_its_work_saved(client, repo, project, made)


async def test_forced_project_remove_stops_at_a_session_whose_work_cannot_be_saved(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session, _, work = (await sessions_with_work(client, project))[-1]
    # A stale lock file: git's update of the snapshot ref fails (even for root).
    lock = repo / ".git" / "refs" / "mimir" / "snapshots" / f"{session['id']}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    error = await error_of(client, "project.remove", {"project": project["id"], "force": True})
    assert error["code"] == ErrorCode.INVALID_STATE
    # The project and the session that could not be saved are still there, its
    # work in its worktree as it was.
    await call(client, "project.get", {"project": project["id"]})
    kept = await call(client, "session.get", {"session": session["id"]})
    assert kept["status"] != "deleted"
    for name, content in work.items():
        assert (workspace(session) / name).read_bytes() == content
    lock.unlink()
    await call(client, "project.remove", {"project": project["id"], "force": True})
    assert_work_is_in_the_snapshot(repo, session["id"], work)


async def test_a_same_size_edit_git_sees_as_racily_clean_is_in_the_snapshot(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    """An edit that keeps a file's size, made in the same second as the worktree's
    index was written, has the stat data the index recorded: git tells it from the
    unchanged file only because the index is not older than the file ("racy git").
    The snapshot's private copy of the index must keep that (it was stamped with the
    time of the copy, and the old content was saved in place of the edit)."""
    session = await create(client, project)
    path = workspace(session)
    # Made deterministic: git compares whole seconds of mtime (and, unless told not
    # to, of ctime, which a test cannot set), so both are pinned to one past second.
    git(repo, "config", "core.trustctime", "false")
    second = int(time.time()) - 100
    os.utime(path / "src" / "app.py", (second, second))
    git(path, "update-index", "--refresh")  # the index records that mtime
    index = Path(git(path, "rev-parse", "--path-format=absolute", "--git-path", "index").strip())
    os.utime(index, (second, second))  # ... and was written in that second
    edited = b"def main():\n    return 7\n"
    assert len(edited) == (path / "src" / "app.py").stat().st_size
    (path / "src" / "app.py").write_bytes(edited)
    os.utime(path / "src" / "app.py", (second, second))
    await call(client, "project.remove", {"project": project["id"], "force": True})
    assert_work_is_in_the_snapshot(repo, session["id"], {"src/app.py": edited})
