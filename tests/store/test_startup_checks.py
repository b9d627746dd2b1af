"""What a start refuses, with real daemon processes: a database key file that other
users can read (unless --insecure-key-file), and a database whose pages were
damaged while no daemon ran (the file changed since the last clean stop, so it is
checked as after a crash)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Final

import pytest

from mimird.store import clean_stop
from tests.store.test_storage import (
    KEY,
    error_lines,
    file_digest,
    fill_pages,
    open_store,
    refused_start,
)
from tests.support.helpers import DaemonDirs, blocking_call, daemon_process

pytestmark = pytest.mark.timeout(90)

STOP_TIMEOUT_S: Final = 20.0


@pytest.fixture(autouse=True)
def config_file(dirs: DaemonDirs) -> None:
    # DaemonDirs.env() names the config file explicitly, and an explicit file must exist.
    dirs.config.write_text("")


# ---- the key file ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=lambda m: f"{m:04o}")
def test_a_key_file_others_can_get_at_is_refused_naming_the_file_its_mode_and_the_fix(
    dirs: DaemonDirs, mode: int
) -> None:
    key_file = dirs.root / "db.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(mode)

    code, stderr = refused_start(dirs, "--db-key-file", str(key_file))

    assert code == 78  # EX_CONFIG
    [error] = error_lines(stderr)
    assert str(key_file) in error
    assert f"mode {mode:04o}" in error
    assert f"chmod 600 {key_file}" in error
    assert "--insecure-key-file" in error
    assert KEY not in stderr
    assert not dirs.database.exists()


def test_a_key_file_from_the_config_file_is_checked_too(dirs: DaemonDirs) -> None:
    key_file = dirs.root / "db.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    dirs.config.write_text(f'[database]\nkey_file = "{key_file}"\n')

    code, stderr = refused_start(dirs)

    assert code == 78
    [error] = error_lines(stderr)
    assert "database.key_file" in error
    assert "mode 0644" in error


def test_insecure_key_file_starts_anyway_and_says_so_in_the_log(dirs: DaemonDirs) -> None:
    key_file = dirs.root / "db.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    with daemon_process(dirs, "--db-key-file", str(key_file), "--insecure-key-file") as daemon:
        status = blocking_call(dirs.socket, "daemon.status")["result"]
        assert daemon.terminate(STOP_TIMEOUT_S) == 0
    assert status["database_encrypted"] is True
    [warning] = [
        json.loads(line)
        for line in daemon.stderr.splitlines()
        if '"database_key_file_insecure"' in line
    ]
    assert warning["mode"] == "0644"
    assert KEY not in daemon.stderr


# ---- a database damaged while no daemon ran ----------------------------------------------


def clean_stop_record(dirs: DaemonDirs) -> Path:
    return dirs.state / clean_stop.RECORD_NAME


def start_and_stop_cleanly(dirs: DaemonDirs) -> str:
    """Run a daemon, stop it with SIGTERM; its stderr."""
    with daemon_process(dirs) as daemon:
        blocking_call(dirs.socket, "daemon.status")
        assert daemon.terminate(STOP_TIMEOUT_S) == 0
    return daemon.stderr


def overwrite_a_page_with_random_bytes(path: Path) -> None:
    """What a failing disk or a stray write does: other bytes in a page in use, the
    file's size unchanged."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    # The file's times come from the kernel's coarse clock: let it tick past the
    # daemon's last write, so that the write below shows in the mtime.
    stopped = os.stat(path).st_mtime_ns
    while time.time_ns() < stopped + 50_000_000:
        time.sleep(0.01)
    with open(path, "r+b") as f:
        f.seek(page_size * (pages // 2))
        f.write(random.Random(10).randbytes(page_size))


@pytest.mark.slow
async def test_pages_damaged_after_a_clean_stop_are_found_at_the_next_start(
    dirs: DaemonDirs,
) -> None:
    async with open_store(dirs) as store:
        await store.write(fill_pages)
    start_and_stop_cleanly(dirs)
    assert clean_stop_record(dirs).exists()
    overwrite_a_page_with_random_bytes(dirs.database)
    damaged = file_digest(dirs.database)

    code, stderr = refused_start(dirs)

    assert code == 1
    [error] = error_lines(stderr)
    assert "failed its integrity check at start" in error
    assert "modified since mimird last stopped cleanly" in error
    assert str(dirs.state / "backups") in error
    assert file_digest(dirs.database) == damaged  # refused before anything wrote to it
    # And again at the start after: a refused start does not forget the damage.
    code, stderr = refused_start(dirs)
    assert code == 1
    assert "failed its integrity check at start" in error_lines(stderr)[0]


@pytest.mark.slow
def test_a_clean_restart_skips_the_check_and_a_changed_file_gets_it(dirs: DaemonDirs) -> None:
    start_and_stop_cleanly(dirs)
    again = start_and_stop_cleanly(dirs)
    assert '"database_checked"' not in again

    stat = os.stat(dirs.database)
    os.utime(dirs.database, ns=(stat.st_atime_ns, stat.st_mtime_ns - 1_000_000_000))
    checked = start_and_stop_cleanly(dirs)

    assert '"database_changed_since_clean_stop"' in checked
    assert '"database_checked"' in checked  # and found sound: the daemon served


def test_a_start_after_a_crash_checks_the_database(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as daemon:
        blocking_call(dirs.socket, "daemon.status")
        daemon.kill()
    assert not clean_stop_record(dirs).exists()
    checked = start_and_stop_cleanly(dirs)
    assert '"database_checked"' in checked
