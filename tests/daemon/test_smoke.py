from __future__ import annotations

from tests.support.helpers import InProcessDaemon, TrioClient


async def test_daemon_status_answers_over_the_socket(daemon: InProcessDaemon) -> None:
    async with TrioClient.connect(daemon.socket) as client:
        status = await client.call("daemon.status")
    assert status["protocol_version"] == 1
    assert status["counts"]["connections"] == 1
