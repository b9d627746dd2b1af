from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import (
    DaemonDirs,
    InProcessDaemon,
    TrioClient,
    add_project,
    in_process_daemon,
    make_repo,
    short_tmpdir,
)


@pytest.fixture
def dirs() -> Iterator[DaemonDirs]:
    with short_tmpdir() as root:
        yield DaemonDirs(root)


@pytest.fixture
async def daemon(dirs: DaemonDirs) -> AsyncIterator[InProcessDaemon]:
    """A real daemon running inside the test's trio loop, on a real socket and database."""
    async with in_process_daemon(dirs) as running:
        yield running


@pytest.fixture
async def client(daemon: InProcessDaemon) -> AsyncIterator[TrioClient]:
    """A connection to the test's daemon."""
    async with TrioClient.connect(daemon.socket) as connected:
        yield connected


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository on main with one commit (README.md, src/app.py)."""
    return make_repo(tmp_path / "repo")


@pytest.fixture
async def project(client: TrioClient, repo: Path) -> dict[str, Any]:
    """``repo`` registered as a project with the test's daemon."""
    return await add_project(client, repo)
