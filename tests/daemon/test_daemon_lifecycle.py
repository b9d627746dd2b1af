"""The daemon as a process: one instance per socket and database, clean stops on
SIGTERM/SIGINT, and recovery after SIGKILL (Invariant 8). Real ``python -m mimird``
processes in a temporary directory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support.helpers import (
    DaemonDirs,
    DaemonProcess,
    add_project_blocking,
    blocking_call,
    daemon_process,
    start_daemon_process,
)

pytestmark = pytest.mark.timeout(60)

#: How long a refused second daemon may take to give up (it should be well under a second).
REFUSAL_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 20.0


@pytest.fixture(autouse=True)
def config_file(dirs: DaemonDirs) -> None:
    # DaemonDirs.env() names the config file explicitly, and an explicit file must exist.
    dirs.config.write_text("")


def refused_start(dirs: DaemonDirs, env: dict[str, str]) -> tuple[int, str]:
    """Start a daemon that is expected to give up; return its exit code and stderr."""
    daemon = start_daemon_process(dirs, env=env, wait=False)
    try:
        code = daemon.proc.wait(REFUSAL_TIMEOUT_S)
    finally:
        daemon.kill()
    return code, daemon.stderr


def add_project(dirs: DaemonDirs, name: str) -> dict[str, Any]:
    """A project named ``name`` in a new directory of that name."""
    path = dirs.root / "projects" / name
    path.mkdir(parents=True)
    return add_project_blocking(dirs, path, name=name)


def project_names(dirs: DaemonDirs) -> list[str]:
    response = blocking_call(dirs.socket, "project.list")
    return [p["name"] for p in response["result"]["projects"]]


def log_events(daemon: DaemonProcess) -> list[str]:
    events = []
    for line in daemon.stderr.splitlines():
        with contextlib.suppress(msgspec.DecodeError):
            record = msgspec.json.decode(line)
            if isinstance(record, dict) and "event" in record:
                events.append(record["event"])
    return events


def run_statuses(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return [row[0] for row in conn.execute("SELECT status FROM daemon_runs ORDER BY id")]


@contextlib.contextmanager
def other_listener(path: Path) -> Iterator[socket.socket]:
    """A listening Unix socket that is not a mimird (and holds no mimird lock)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen()
        yield sock


# ---- one daemon per socket and per database ----------------------------------------


@pytest.mark.slow
def test_second_daemon_with_the_same_dirs_exits_saying_another_is_running(
    dirs: DaemonDirs,
) -> None:
    with daemon_process(dirs) as first:
        code, stderr = refused_start(dirs, dirs.env())
    assert code != 0
    assert stderr.startswith("mimird: another mimird")
    assert f"pid {first.proc.pid}" in stderr
    assert len(stderr.splitlines()) == 1


@pytest.mark.slow
def test_first_daemon_keeps_serving_after_a_second_is_refused(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as first:
        refused_start(dirs, dirs.env())
        status = blocking_call(dirs.socket, "daemon.status")["result"]
        assert status["pid"] == first.proc.pid
        assert first.proc.poll() is None


@pytest.mark.slow
def test_second_daemon_on_the_same_database_with_another_socket_is_refused(
    dirs: DaemonDirs,
) -> None:
    other_socket = dirs.root / "run2" / "other.sock"
    with daemon_process(dirs):
        code, stderr = refused_start(dirs, dirs.env(MIMIR_SOCKET=str(other_socket)))
    assert code != 0
    assert "another mimird" in stderr
    assert "database" in stderr
    assert not other_socket.exists()


@pytest.mark.slow
def test_second_daemon_on_the_same_socket_with_another_database_is_refused(
    dirs: DaemonDirs,
) -> None:
    other_database = dirs.root / "data2" / "other.db"
    with daemon_process(dirs):
        code, stderr = refused_start(dirs, dirs.env(MIMIR_DATABASE=str(other_database)))
        assert blocking_call(dirs.socket, "daemon.status")["result"]["paths"]["database"] == str(
            dirs.database
        )
    assert code != 0
    assert "another mimird" in stderr
    assert "socket" in stderr
    assert not other_database.exists()


def test_socket_served_by_another_process_is_refused_as_in_use(dirs: DaemonDirs) -> None:
    # Nothing holds mimird's lock, so the live-socket probe is what refuses.
    with other_listener(dirs.socket):
        code, stderr = refused_start(dirs, dirs.env())
        assert code == 1
        assert "in use" in stderr
        # The other process's socket was left alone.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            probe.connect(str(dirs.socket))


# ---- clean stops ---------------------------------------------------------------------


def test_sigterm_exits_zero_and_removes_the_socket(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as daemon:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(STOP_TIMEOUT_S) == 0
    assert not dirs.socket.exists()


def test_sigterm_checkpoints_the_wal(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as daemon:
        for i in range(5):
            add_project(dirs, f"p{i}")
        assert daemon.terminate(STOP_TIMEOUT_S) == 0
    wal = Path(f"{dirs.database}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    # Everything is in the main file: a copy of mimir.db alone is complete.
    copy = dirs.root / "copy.db"
    copy.write_bytes(dirs.database.read_bytes())
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (5,)


@pytest.mark.slow
def test_sigint_exits_zero(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as daemon:
        daemon.proc.send_signal(signal.SIGINT)
        assert daemon.proc.wait(STOP_TIMEOUT_S) == 0
    assert "daemon_stopped" in log_events(daemon)


def test_clean_stop_marks_the_run_stopped(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as daemon:
        assert daemon.terminate(STOP_TIMEOUT_S) == 0
    assert run_statuses(dirs.database) == ["stopped"]


@pytest.mark.slow
def test_start_after_a_clean_stop_reports_no_unclean_shutdown(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as first:
        assert first.terminate(STOP_TIMEOUT_S) == 0
    with daemon_process(dirs) as second:
        assert second.terminate(STOP_TIMEOUT_S) == 0
    assert "daemon_ready" in log_events(second)
    assert "unclean_shutdown_detected" not in log_events(second)
    assert run_statuses(dirs.database) == ["stopped", "stopped"]


# ---- SIGKILL and recovery ------------------------------------------------------------


@pytest.mark.slow
def test_restart_after_sigkill_starts_on_the_stale_socket(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as killed:
        killed.kill()
    assert stat.S_ISSOCK(os.lstat(dirs.socket).st_mode), "SIGKILL should leave the socket file"
    with daemon_process(dirs) as restarted:
        status = blocking_call(dirs.socket, "daemon.status")["result"]
        assert status["pid"] == restarted.proc.pid


@pytest.mark.slow
def test_data_added_before_sigkill_survives_the_restart(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as killed:
        added = add_project(dirs, "survivor")
        killed.kill()
    with daemon_process(dirs):
        response = blocking_call(dirs.socket, "project.get", {"project": "survivor"})
    assert response["result"]["id"] == added["id"]
    assert response["result"]["path"] == added["path"]


@pytest.mark.slow
def test_restart_after_sigkill_logs_unclean_shutdown_detected(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as killed:
        killed.kill()
    with daemon_process(dirs) as restarted:
        assert restarted.terminate(STOP_TIMEOUT_S) == 0
    assert "unclean_shutdown_detected" in log_events(restarted)


@pytest.mark.slow
def test_unclean_shutdown_is_reported_once(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as killed:
        killed.kill()
    with daemon_process(dirs) as recovering:
        assert recovering.terminate(STOP_TIMEOUT_S) == 0
    with daemon_process(dirs) as next_one:
        assert next_one.terminate(STOP_TIMEOUT_S) == 0
    assert "unclean_shutdown_detected" not in log_events(next_one)


@pytest.mark.slow
def test_killed_run_is_marked_crashed_and_the_next_one_stopped(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as killed:
        killed.kill()
    assert run_statuses(dirs.database) == ["running"]
    with daemon_process(dirs) as restarted:
        assert restarted.terminate(STOP_TIMEOUT_S) == 0
    assert run_statuses(dirs.database) == ["crashed", "stopped"]
