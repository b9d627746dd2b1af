from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.helpers import DaemonDirs, InProcessDaemon, TrioClient, in_process_daemon, short_tmpdir


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
