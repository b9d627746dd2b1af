"""``unsubscribe`` and the limit of 64 subscriptions per connection
(docs/api.md, "Delivery guarantees", ``subscribe``, ``unsubscribe``), through a
real daemon's socket."""

from __future__ import annotations

from typing import Any, Final

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.agents import Client, agent_world, new_session
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

#: Subscriptions one connection may hold (docs/api.md).
LIMIT: Final = 64


def kinds_for(client: Client, subscription: int, session_id: str) -> list[str]:
    return [
        p["event"]["kind"]
        for p in client.events
        if p["subscription"] == subscription and p["event"]["session_id"] == session_id
    ]


async def test_a_connection_holds_at_most_64_subscriptions_until_it_ends_one(
    dirs: DaemonDirs,
) -> None:
    async with (
        agent_world(dirs, {"prompts": []}) as world,
        Client.connect(world.daemon.socket) as c,
        Client.connect(world.daemon.socket) as other,
    ):
        subs = [(await c.call("subscribe", {}))["subscription"] for _ in range(LIMIT)]
        assert len(set(subs)) == LIMIT

        error = await c.error("subscribe", {})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == "session"
        assert "64 subscriptions" in error["message"]
        # The limit is the connection's: another one subscribes.
        theirs = (await other.call("subscribe", {}))["subscription"]

        # Only its own connection ends a subscription.
        error = await other.error("unsubscribe", {"subscription": subs[0]})
        assert error["code"] == ErrorCode.NOT_FOUND
        assert error["data"]["field"] == "subscription"
        assert await c.call("unsubscribe", {"subscription": subs[0]}) == {"subscription": subs[0]}
        error = await c.error("unsubscribe", {"subscription": subs[0]})
        assert error["code"] == ErrorCode.NOT_FOUND
        for bad in ({}, {"subscription": 0}, {"subscription": "1"}):
            error = await c.error("unsubscribe", bad)
            assert error["code"] == ErrorCode.INVALID_PARAMS, bad
            assert error["data"]["field"] == "subscription", bad

        # One ended: one more is accepted, and no more than that.
        again = (await c.call("subscribe", {}))["subscription"]
        assert again not in subs
        assert (await c.error("subscribe", {}))["code"] == ErrorCode.INVALID_PARAMS

        # Events committed from now on reach every subscription but the ended one.
        session_id = await new_session(world, c)
        await other.wait_for(lambda e: e["session_id"] == session_id)
        await c.wait_for(lambda e: e["session_id"] == session_id)
        last = (await c.call("session.events", {"session": session_id}))["events"][-1]["seq"]
        for client in (c, other):
            await client.wait_for(lambda e: e["session_id"] == session_id and e["seq"] == last)
        live: list[tuple[Client, int]] = [(c, sub) for sub in [*subs[1:], again]]
        for client, sub in [*live, (other, theirs)]:
            seqs = [
                p["event"]["seq"]
                for p in client.events
                if p["subscription"] == sub and p["event"]["session_id"] == session_id
            ]
            assert seqs[:last] == list(range(1, last + 1)), sub
        assert kinds_for(c, subs[0], session_id) == []
        status: dict[str, Any] = await c.call("daemon.status")
        assert status["pid"]
