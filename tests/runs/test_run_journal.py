"""A run's own journal: seq gapless from 1, committed before it is seen, readable
in pages, and followed live from any cursor with every event exactly once across
the seam between the stored events and the live ones."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.runs.world import run_world, writes
from tests.support.agents import Client
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

SCENARIOS = {
    "a": writes("a.txt", "a\n"),
    "b": {"prompts": [[{"do": "sleep", "s": 0.3}, {"do": "disk_write", "path": "b", "text": "b"}]]},
}


def _events_of(client: Client, subscription: int) -> list[dict[str, Any]]:
    return [
        p["event"]
        for p in client.events
        if p.get("subscription") == subscription and "run_id" in p.get("event", {})
    ]


async def _until_deciding(client: Client, subscription: int) -> list[dict[str, Any]]:
    await client.wait_for(
        lambda e: e["kind"] == "run_status_changed" and e["data"]["to"] == "deciding",
        subscription=subscription,
    )
    return _events_of(client, subscription)


async def test_subscribers_from_any_cursor_get_every_event_once_in_order(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await world.create(agents=["a", "b"])
        async with (
            Client.connect(world.daemon.socket) as whole,
            Client.connect(world.daemon.socket) as later,
            Client.connect(world.daemon.socket) as live,
        ):
            sub_whole = await whole.call("run.subscribe", {"run": run["id"], "after": 0})
            sub_later = await later.call("run.subscribe", {"run": run["id"], "after": 2})
            sub_live = await live.call("run.subscribe", {"run": run["id"][:8]})
            assert sub_whole["cursor"] == 0
            assert sub_later["cursor"] == 2
            assert sub_live["run_id"] == run["id"]
            got_whole = await _until_deciding(whole, sub_whole["subscription"])
            got_later = await _until_deciding(later, sub_later["subscription"])
            got_live = await _until_deciding(live, sub_live["subscription"])
        stored = await world.events(run)
        seqs = [e["seq"] for e in stored]
        assert seqs == list(range(1, len(seqs) + 1))
        assert got_whole == stored
        assert got_later == stored[2:]
        # Live only: the events after the cursor it was given, none twice.
        assert got_live == stored[sub_live["cursor"] :]
        assert {e["run_id"] for e in stored} == {run["id"]}


async def test_pages_of_the_run_journal(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await world.create(agents=["a", "b"])
        await world.until_status(run, "deciding")
        stored = await world.events(run)
        pages: list[dict[str, Any]] = []
        after = 0
        while True:
            page = (
                await world.client.call(
                    "run.events", {"run": run["id"], "after": after, "limit": 3}
                )
            )["events"]
            pages += page
            if len(page) < 3:
                break
            after = page[-1]["seq"]
        assert pages == stored
        assert (await world.get(run))["last_seq"] == stored[-1]["seq"]


async def test_unsubscribe_ends_a_run_subscription(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await world.create(agents=["a"])
        async with Client.connect(world.daemon.socket) as client:
            sub = await client.call("run.subscribe", {"run": run["id"], "after": 0})
            await client.call("unsubscribe", {"subscription": sub["subscription"]})
            await world.until_status(run, "deciding")
            await trio.sleep(0.1)
            seen = len(_events_of(client, sub["subscription"]))
            await world.client.call("run.cancel", {"run": run["id"]})
            await trio.sleep(0.1)
            assert len(_events_of(client, sub["subscription"])) == seen
