"""Sessions across daemon deaths and restarts: real mimird processes, killed and started
again on the same database, with real git repositories in temporary directories.

Invariant 8: after SIGKILL the next start recovers: sessions cut short are marked so,
the processes they left are reaped, worktrees are reconciled with the database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest

from mimird.ids import IdGenerator
from tests.store.test_storage import insert_old_project, migrated
from tests.support.helpers import (
    DaemonDirs,
    DaemonProcess,
    blocking_call,
    daemon_process,
    make_repo,
    rpc,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

CALL_TIMEOUT_S: Final = 20.0
WAIT_TIMEOUT_S: Final = 20.0
POLL_S: Final = 0.05
#: How long a process group killed at a restart may take to disappear.
GONE_TIMEOUT_S: Final = 5.0
#: Long enough to outlive every test: only a kill ends it early.
SETUP_SLEEP_S: Final = 30
#: The revision before sessions had workspaces and events.
SESSIONS_REVISION: Final = "0002"


@pytest.fixture(autouse=True)
def config_file(dirs: DaemonDirs) -> None:
    # DaemonDirs.env() names the config file explicitly, and an explicit file must exist.
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text("")


# ---- helpers ---------------------------------------------------------------------------------


def gone(pgid: int, timeout: float) -> bool:
    """Whether every process of the group has exited within ``timeout`` (a killed process
    takes a moment to die after the signal is sent)."""
    deadline = time.monotonic() + timeout
    while live_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def wait_for(what: str, check: Any) -> Any:
    """Poll ``check()`` until it returns something true; fail after WAIT_TIMEOUT_S."""
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


def live_members(pgid: int) -> list[int]:
    """Processes of a process group that have not exited (zombies do not count)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry))
    return members


def commands(pids: list[int]) -> list[str]:
    names = []
    for pid in pids:
        with contextlib.suppress(OSError):
            names.append(Path("/proc", str(pid), "comm").read_text().strip())
    return names


@contextlib.contextmanager
def reaping(pgid_file: Path) -> Iterator[None]:
    """Whatever the test finds, the setup command's process group does not outlive it."""
    try:
        yield
    finally:
        if pgid_file.exists() and pgid_file.read_text().strip():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pgid_file.read_text()), signal.SIGKILL)


class CreateInThread:
    """session.create on its own connection in a thread: it answers only once the setup
    command ends, which here is never (the daemon dies first)."""

    def __init__(self, dirs: DaemonDirs, params: dict[str, Any]) -> None:
        self.response: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(dirs, params), daemon=True)
        self._thread.start()

    def _run(self, dirs: DaemonDirs, params: dict[str, Any]) -> None:
        try:
            self.response = blocking_call(
                dirs.socket, "session.create", params, timeout=SETUP_SLEEP_S * 2
            )
        except BaseException as exc:  # the daemon went away mid-call
            self.error = exc

    def join(self) -> None:
        self._thread.join(CALL_TIMEOUT_S)
        assert not self._thread.is_alive()


def preparing_sessions(dirs: DaemonDirs) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = rpc(dirs, "session.list", {"status": ["preparing"]})["sessions"]
    return found


def kill_during_setup(
    dirs: DaemonDirs, repo: Path, pgid_file: Path, *, sig: signal.Signals
) -> tuple[dict[str, Any], int, DaemonProcess]:
    """A session whose setup command sleeps, and its daemon stopped by ``sig`` meanwhile.
    Returns the session (as listed while preparing), the setup's process group, and the
    stopped daemon."""
    command = f"echo $$ > {pgid_file}; sleep {SETUP_SLEEP_S}"
    with daemon_process(dirs) as daemon:
        project = rpc(
            dirs, "project.add", {"path": str(repo), "config": {"setup_command": command}}
        )
        creating = CreateInThread(dirs, {"project": project["id"], "title": "slow setup"})
        [session] = wait_for("the session to be preparing", lambda: preparing_sessions(dirs))
        pgid = int(
            wait_for("the setup's pid", lambda: pgid_file.exists() and pgid_file.read_text())
        )
        wait_for("the setup to sleep", lambda: "sleep" in commands(live_members(pgid)))
        daemon.proc.send_signal(sig)
        daemon.proc.wait(CALL_TIMEOUT_S)
        creating.join()
    return session, pgid, daemon


# ---- the daemon killed while a setup command runs --------------------------------------------


def test_a_session_whose_setup_was_cut_short_by_sigkill_is_failed_after_restart(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    pgid_file = tmp_path / "setup.pgid"
    with reaping(pgid_file):
        session, _, _ = kill_during_setup(dirs, repo, pgid_file, sig=signal.SIGKILL)
        with daemon_process(dirs):
            after = rpc(dirs, "session.get", {"session": session["id"]})
            found = rpc(dirs, "session.events", {"session": session["id"]})["events"]
    assert after["status"] == "failed"
    assert "stopped" in after["failure"]
    assert "setup" in after["failure"]
    last = found[-1]
    assert (last["kind"], last["data"]["from"], last["data"]["to"]) == (
        "status_changed",
        "preparing",
        "failed",
    )
    assert [e["seq"] for e in found] == list(range(1, len(found) + 1))
    # Its worktree stays, for the user to see what the setup did.
    assert after["workspace"]["state"] == "ok"
    assert Path(after["workspace"]["path"]).is_dir()


def test_the_setup_command_cut_short_by_sigkill_is_gone_after_restart(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    pgid_file = tmp_path / "setup.pgid"
    with reaping(pgid_file):
        _, pgid, _ = kill_during_setup(dirs, repo, pgid_file, sig=signal.SIGKILL)
        with daemon_process(dirs):
            assert gone(pgid, GONE_TIMEOUT_S)


def test_sigterm_during_setup_ends_the_setup_command_with_the_daemon(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    pgid_file = tmp_path / "setup.pgid"
    with reaping(pgid_file):
        session, pgid, daemon = kill_during_setup(dirs, repo, pgid_file, sig=signal.SIGTERM)
        assert daemon.proc.returncode == 0
        assert gone(pgid, WAIT_TIMEOUT_S)
        with daemon_process(dirs):
            after = rpc(dirs, "session.get", {"session": session["id"]})
    assert after["status"] == "failed"


# ---- worktrees reconciled at start -----------------------------------------------------------


def test_a_worktree_deleted_while_the_daemon_was_down_is_missing_at_start(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    with daemon_process(dirs) as daemon:
        project = rpc(dirs, "project.add", {"path": str(repo)})
        lost = rpc(dirs, "session.create", {"project": project["id"], "title": "lost"})
        kept = rpc(dirs, "session.create", {"project": project["id"], "title": "kept"})
        assert daemon.terminate() == 0
    shutil.rmtree(lost["workspace"]["path"])
    with daemon_process(dirs) as daemon:
        # session.list reads what is stored: the start-up check already recorded it.
        listed = {s["id"]: s for s in rpc(dirs, "session.list")["sessions"]}
        worktrees = {w["session_id"]: w for w in rpc(dirs, "worktree.list")["worktrees"]}
        found = rpc(dirs, "session.events", {"session": lost["id"]})["events"]
        assert daemon.terminate() == 0
        log = [msgspec.json.decode(line) for line in daemon.stderr.splitlines() if line[:1] == "{"]
    assert listed[lost["id"]]["workspace"]["state"] == "missing"
    assert listed[kept["id"]]["workspace"]["state"] == "ok"
    assert worktrees[lost["id"]]["state"] == "missing"
    assert worktrees[kept["id"]]["state"] == "ok"
    assert found[-1]["kind"] == "workspace_state_changed"
    assert found[-1]["data"] == {"from": "ok", "to": "missing"}
    [reconciled] = [entry for entry in log if entry.get("event") == "worktrees_reconciled"]
    assert reconciled["states"] == {"missing": 1, "ok": 1}


# ---- a database from before workspaces -------------------------------------------------------


def insert_old_session(database: Path, project_id: str, status: str) -> str:
    """A session row as revision 0002 stores it (spelled out, like the schema then)."""
    session_id = IdGenerator().new()
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "INSERT INTO sessions (id, project_id, title, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, '2026-01-02T00:00:00.000000Z', '2026-01-03T00:00:00.000000Z')",
            (session_id, project_id, "from before workspaces", status),
        )
    return session_id


@pytest.fixture
def old_database(dirs: DaemonDirs) -> tuple[str, str]:
    """A database at revision 0002 with a project and a created session: their ids.
    (An idle one would come back interrupted: idle means its agent was running.)"""
    with migrated(dirs.database, SESSIONS_REVISION) as engine:
        project_id = insert_old_project(engine, "legacy", str(dirs.root / "legacy"))
    return project_id, insert_old_session(dirs.database, project_id, "created")


def test_a_session_in_a_revision_0002_database_is_intact_after_the_upgrade(
    dirs: DaemonDirs, old_database: tuple[str, str]
) -> None:
    project_id, session_id = old_database
    with daemon_process(dirs):
        session = rpc(dirs, "session.get", {"session": session_id})
        listed = rpc(dirs, "session.list")["sessions"]
        found = rpc(dirs, "session.events", {"session": session_id})["events"]
        status = rpc(dirs, "daemon.status")
    assert status["schema_revision"] != SESSIONS_REVISION
    assert (session["id"], session["project_id"], session["project"]) == (
        session_id,
        project_id,
        "legacy",
    )
    assert (session["title"], session["status"], session["last_seq"]) == (
        "from before workspaces",
        "created",
        0,
    )
    assert (session["created_at"], session["updated_at"]) == (
        "2026-01-02T00:00:00.000000Z",
        "2026-01-03T00:00:00.000000Z",
    )
    assert (session["task"], session["config"], session["failure"]) == ("", {}, None)
    assert [s["id"] for s in listed] == [session_id]
    assert found == []


def test_a_session_from_a_revision_0002_database_can_be_archived_and_deleted(
    dirs: DaemonDirs, old_database: tuple[str, str]
) -> None:
    _, session_id = old_database
    with daemon_process(dirs):
        archived = rpc(dirs, "session.archive", {"session": session_id})
        removed = rpc(dirs, "session.delete", {"session": session_id})
        found = rpc(dirs, "session.events", {"session": session_id})["events"]
    assert archived["status"] == "archived"
    assert removed["session"]["status"] == "deleted"
    assert removed["snapshot"] is None
    assert [e["seq"] for e in found] == list(range(1, len(found) + 1))


def test_a_running_session_in_a_revision_0002_database_is_interrupted_at_start(
    dirs: DaemonDirs,
) -> None:
    with migrated(dirs.database, SESSIONS_REVISION) as engine:
        project_id = insert_old_project(engine, "legacy", str(dirs.root / "legacy"))
    session_id = insert_old_session(dirs.database, project_id, "running")
    with daemon_process(dirs):
        session = rpc(dirs, "session.get", {"session": session_id})
        found = rpc(dirs, "session.events", {"session": session_id})["events"]
    assert session["status"] == "interrupted"
    assert [(e["seq"], e["kind"], e["data"].get("to")) for e in found] == [
        (1, "turn_ended", None),
        (2, "status_changed", "interrupted"),
    ]
    assert found[0]["data"] == {"stop_reason": "interrupted"}
