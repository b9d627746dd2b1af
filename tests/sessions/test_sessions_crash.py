"""kill -9 of mimird while sessions are being created, ten times, then one more
start: every half-made create is finished or rolled back, and every row agrees
with the disk (Invariant 8 for workspaces). Real daemons, real git, real kills.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.helpers import (
    DaemonDirs,
    blocking_call,
    daemon_process,
    git,
    make_repo,
    rpc,
    start_daemon_process,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

KILLS: Final = 10
#: Creates in flight when the daemon is killed.
CREATES_IN_FLIGHT: Final = 3
#: Files in the project: enough that git's checkout takes a moment to be killed in.
FILES: Final = 400
CALL_TIMEOUT_S: Final = 20.0


@pytest.fixture(autouse=True)
def config_file(dirs: DaemonDirs) -> None:
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text("")


def create_quietly(dirs: DaemonDirs, project_id: str) -> None:
    """A session.create whose answer (or the daemon's death) does not matter."""
    with contextlib.suppress(OSError, ValueError):
        blocking_call(
            dirs.socket, "session.create", {"project": project_id}, timeout=CALL_TIMEOUT_S
        )


def stored(dirs: DaemonDirs, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=CALL_TIMEOUT_S)) as db:
        return db.execute(sql).fetchall()


def registered_worktrees(repo: Path) -> set[Path]:
    out = git(repo, "worktree", "list", "--porcelain")
    listed = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]
    return {Path(p).resolve() for p in listed} - {repo.resolve()}


def branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def test_kill_9_during_creates_leaves_no_orphans_and_every_row_agrees_with_disk(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {f"src/module_{i}.py": f"VALUE = {i}\n" * 50 for i in range(FILES)},
    )
    # A file copied into each worktree: the create has one more step to be cut in.
    (repo / ".gitignore").write_text(".env\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore .env")
    (repo / ".env").write_text("TOKEN=local\n")
    with daemon_process(dirs):
        project = rpc(dirs, "project.add", {"path": str(repo), "config": {"copy_files": [".env"]}})
    for kill in range(KILLS):
        daemon = start_daemon_process(dirs)
        try:
            threads = [
                threading.Thread(target=create_quietly, args=(dirs, project["id"]), daemon=True)
                for _ in range(CREATES_IN_FLIGHT)
            ]
            for thread in threads:
                thread.start()
            # Varied moments: from before the first create reached git to well into them.
            time.sleep(0.05 + 0.12 * kill)
        finally:
            daemon.kill()
        for thread in threads:
            thread.join(CALL_TIMEOUT_S)

    with daemon_process(dirs):
        listed = rpc(dirs, "worktree.list", {})
        sessions = rpc(dirs, "session.list", {"include_deleted": True, "limit": 500})["sessions"]

    assert listed["orphans"] == []
    assert stored(dirs, "SELECT session_id FROM workspace_intents") == []
    live = set()
    for session in sessions:
        workspace = session["workspace"]
        path = Path(workspace["path"])
        if workspace["state"] == "ok":
            assert (path / ".git").is_file(), session
            live.add(path.resolve())
        else:
            assert workspace["state"] == "removed", session
            assert session["status"] == "failed", session
            assert not path.exists(), session
    on_disk = {p.resolve() for p in (dirs.data / "worktrees").glob("*/*")}
    assert on_disk == live
    assert registered_worktrees(repo) == live
    kept = {s["workspace"]["branch"] for s in sessions if s["workspace"]["state"] == "ok"}
    assert branches(repo) == {"main"} | kept
    # Every rolled-back create says so in its journal.
    rolled = stored(
        dirs,
        "SELECT DISTINCT session_id FROM events WHERE kind = 'workspace_rolled_back'",
    )
    assert {r[0] for r in rolled} == {
        s["id"] for s in sessions if s["workspace"]["state"] == "removed"
    }
    # Nothing of the user's was touched.
    assert (repo / ".env").read_text() == "TOKEN=local\n"
    assert git(repo, "status", "--porcelain") == ""
