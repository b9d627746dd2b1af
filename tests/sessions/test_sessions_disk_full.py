"""``session.create`` on a full disk answers ``storage_error`` (-32009), whether the
database, git or a file copy meets it, and leaves nothing behind.

The disk is real: a small tmpfs mounted for the test (as root; skipped otherwise),
filled up to its last byte."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    DaemonDirs,
    TrioClient,
    add_project,
    in_process_daemon,
    make_repo,
)
from tests.support.sessions import all_sessions, branches, error_of, git_worktrees

pytestmark = pytest.mark.timeout(60)

DISK_SIZE: Final = "1m"
FILLER: Final = "filler"


@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE mounted at ``where``, unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(where)], check=True)


def fill(disk: Path) -> None:
    """Write until the disk has no byte left."""
    fd = os.open(disk / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="No space left on device"):
        (disk / "one-more").write_bytes(b"x")


def free(disk: Path) -> None:
    (disk / FILLER).unlink()
    with contextlib.suppress(FileNotFoundError):
        (disk / "one-more").unlink()


@pytest.fixture
def worktrees_disk(dirs: DaemonDirs) -> Iterator[Path]:
    with small_disk(dirs.root / "worktrees") as disk:
        yield disk


@pytest.fixture
async def client_on_small_disk(dirs: DaemonDirs, worktrees_disk: Path) -> AsyncIterator[TrioClient]:
    """A daemon whose worktrees (and private copies) go to the small disk; its
    database stays on the big one."""
    settings = dirs.settings(MIMIR_WORKTREES_DIR=str(worktrees_disk))
    async with (
        in_process_daemon(dirs, settings=settings) as daemon,
        TrioClient.connect(daemon.socket) as client,
    ):
        yield client


def assert_disk_full(error: dict[str, Any]) -> None:
    assert error["code"] == ErrorCode.STORAGE_ERROR, error
    assert error["data"]["kind"] == "storage_error"
    assert "disk is full" in error["message"]
    assert error["data"]["detail"]["os_error"] == "No space left on device"


def sessions_dirs(disk: Path) -> list[Path]:
    """Sessions' directories on the disk (the per-project parent may stay)."""
    return sorted(disk.glob("*/*"))


async def test_a_worktree_on_a_full_disk_is_storage_error_and_leaves_nothing(
    client_on_small_disk: TrioClient, worktrees_disk: Path, tmp_path: Path
) -> None:
    client = client_on_small_disk
    repo = make_repo(tmp_path / "repo")
    project = await add_project(client, repo)
    fill(worktrees_disk)

    error = await error_of(client, "session.create", {"project": project["id"]})

    assert_disk_full(error)
    assert "No space left on device" in error["data"]["detail"]["stderr"]  # git's own words
    assert await all_sessions(client, include_archived=True, include_deleted=True) == []
    assert branches(repo) == ["main"]
    assert git_worktrees(repo) == [repo]
    assert sessions_dirs(worktrees_disk) == []
    # Once there is room again, the same call works.
    free(worktrees_disk)
    session = await client.call("session.create", {"project": project["id"]})
    assert session["status"] == "created"


async def test_a_private_copy_on_a_full_disk_is_storage_error_and_leaves_nothing(
    client_on_small_disk: TrioClient, worktrees_disk: Path, tmp_path: Path
) -> None:
    client = client_on_small_disk
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / "notes.txt").write_text("hello\n" * 1000)
    (plain / "sub" / "data.txt").write_text("x" * 50_000)
    project = await add_project(client, plain)
    fill(worktrees_disk)

    error = await error_of(client, "session.create", {"project": project["id"]})

    assert_disk_full(error)
    assert await all_sessions(client, include_archived=True, include_deleted=True) == []
    assert sessions_dirs(worktrees_disk) == []


async def test_a_database_on_a_full_disk_is_storage_error(dirs: DaemonDirs, tmp_path: Path) -> None:
    with small_disk(dirs.data) as disk:
        async with (
            in_process_daemon(dirs) as daemon,
            TrioClient.connect(daemon.socket) as client,
        ):
            project = await add_project(client, make_repo(tmp_path / "repo"))
            fill(disk)

            error = await error_of(client, "session.create", {"project": project["id"]})

            assert error["code"] == ErrorCode.STORAGE_ERROR, error
            assert "full" in error["data"]["detail"]["sqlite"]
            free(disk)
            assert await all_sessions(client, include_archived=True, include_deleted=True) == []
            assert (await client.call("daemon.status"))["pid"] == os.getpid()


async def test_a_restore_on_a_full_disk_is_storage_error_and_can_be_asked_again(
    client_on_small_disk: TrioClient, worktrees_disk: Path, tmp_path: Path
) -> None:
    client = client_on_small_disk
    repo = make_repo(tmp_path / "repo")
    project = await add_project(client, repo)
    session = await client.call("session.create", {"project": project["id"]})
    await client.call("session.delete", {"session": session["id"]})
    fill(worktrees_disk)

    error = await error_of(client, "session.restore", {"session": session["id"]})

    assert_disk_full(error)
    assert sessions_dirs(worktrees_disk) == []
    free(worktrees_disk)
    restored = await client.call("session.restore", {"session": session["id"]})
    assert sessions_dirs(worktrees_disk) == [Path(restored["workspace"]["path"])]


async def test_a_repair_on_a_full_disk_is_storage_error(
    client_on_small_disk: TrioClient, worktrees_disk: Path, tmp_path: Path
) -> None:
    client = client_on_small_disk
    repo = make_repo(tmp_path / "repo")
    project = await add_project(client, repo)
    session = await client.call("session.create", {"project": project["id"]})
    shutil.rmtree(session["workspace"]["path"])
    assert (await client.call("session.get", {"session": session["id"]}))["workspace"][
        "state"
    ] == "missing"
    fill(worktrees_disk)

    error = await error_of(client, "session.repair", {"session": session["id"]})

    assert_disk_full(error)
    free(worktrees_disk)
    repaired = await client.call("session.repair", {"session": session["id"]})
    assert repaired["workspace"]["state"] == "ok"
