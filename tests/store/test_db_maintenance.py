"""``db.optimize`` and ``db.vacuum`` on a real daemon and a real SQLite file: the
figures before and after, the disk check that refuses a VACUUM without room, an
encrypted database, and a session streaming events meanwhile (nothing lost, the
subscriber unaffected)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from mimird.errors import StorageError
from mimird.store import maintenance
from mimird.wire.db_types import DbFigures
from tests.support.agents import Client, agent_world, new_session
from tests.support.helpers import DaemonDirs, TrioClient, in_process_daemon

pytestmark = pytest.mark.timeout(120)

DEADLINE_S: Final = 60.0
KEY: Final = "maintenance-key-'quoted'-42"
#: A turn long enough for several optimize and vacuum calls to run inside it.
TURNS: Final = 6
TOOL_CALLS: Final = 40


def is_tool_call(event: dict[str, Any]) -> bool:
    return bool(
        event["kind"] == "update" and event["data"]["update"].get("sessionUpdate") == "tool_call"
    )


async def grow_and_shrink(client: Any, root: Path) -> None:
    """Leave free pages behind: projects with long descriptions, removed again."""
    made = []
    for n in range(40):
        path = root / f"p{n}"
        path.mkdir(parents=True)
        project = await client.call(
            "project.add", {"path": str(path), "description": f"{n} " + "d" * 9000}
        )
        made.append(project["id"])
    for project in made:
        await client.call("project.remove", {"project": project})


async def test_optimize_reports_figures_and_empties_the_wal(dirs: DaemonDirs) -> None:
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as c:
        await grow_and_shrink(c, dirs.root / "projects")
        result = await c.call("db.optimize")
        assert result["before"]["wal_bytes"] > 0
        assert result["checkpoint"]["busy"] is False
        assert result["after"]["wal_bytes"] == 0
        assert result["after"]["file_bytes"] == dirs.database.stat().st_size
        assert (
            result["after"]["page_size"] * result["after"]["page_count"]
            == (result["after"]["file_bytes"])
        )
        assert result["duration_ms"] >= 0
        # Searching still works on the merged index.
        assert (await c.call("search", {"query": "anything"}))["hits"] == []


async def test_vacuum_gives_free_pages_back(dirs: DaemonDirs) -> None:
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as c:
        await grow_and_shrink(c, dirs.root / "projects")
        result = await c.call("db.vacuum")
        before, after = result["before"], result["after"]
        assert before["freelist_count"] > 0
        assert after["freelist_count"] == 0
        assert after["page_count"] < before["page_count"]
        assert after["file_bytes"] == dirs.database.stat().st_size
        assert after["wal_bytes"] == 0
        assert result["needed_bytes"] > 0
        assert str(dirs.database.parent) in result["free_bytes"]
        assert (await c.call("db.check", {"full": True}))["ok"]


def test_vacuum_is_refused_when_the_disk_lacks_the_room(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    page_size = 4096
    figures = DbFigures(
        file_bytes=0,
        wal_bytes=0,
        page_size=page_size,
        page_count=free // page_size + 1,
        freelist_count=0,
    )
    with pytest.raises(StorageError, match="not enough free disk for VACUUM") as caught:
        maintenance.vacuum_space(tmp_path / "mimir.db", figures)
    detail = caught.value.data().detail
    assert detail is not None
    assert detail["needed_bytes"] > detail["free_bytes"]
    # A small database fits.
    small = DbFigures(
        file_bytes=0, wal_bytes=0, page_size=page_size, page_count=10, freelist_count=0
    )
    needed, where = maintenance.vacuum_space(tmp_path / "mimir.db", small)
    assert needed > 0
    assert str(tmp_path) in where


async def test_optimize_and_vacuum_work_on_an_encrypted_database(dirs: DaemonDirs) -> None:
    settings = dirs.settings(MIMIR_DB_KEY=KEY)
    async with (
        in_process_daemon(dirs, settings=settings) as daemon,
        TrioClient.connect(daemon.socket) as c,
    ):
        await grow_and_shrink(c, dirs.root / "projects")
        optimized = await c.call("db.optimize")
        vacuumed = await c.call("db.vacuum")
        assert optimized["after"]["wal_bytes"] == 0
        assert vacuumed["after"]["freelist_count"] == 0
        assert (await c.call("db.check", {"full": True}))["ok"]
        assert (await c.call("daemon.status"))["database_encrypted"]
    assert not dirs.database.read_bytes().startswith(b"SQLite format 3")
    # It opens again with its key, holding what it held.
    async with (
        in_process_daemon(dirs, settings=settings) as daemon,
        TrioClient.connect(daemon.socket) as c,
    ):
        assert (await c.call("project.list"))["projects"] == []
        assert (await c.call("db.check", {"full": True}))["ok"]


async def test_a_streaming_session_loses_nothing_while_optimize_and_vacuum_run(
    dirs: DaemonDirs,
) -> None:
    steps = [{"do": "tool_call"}] * TOOL_CALLS + [{"do": "sleep", "s": 0.1}]
    scenario = {"prompts": [steps * TURNS]}
    async with (
        agent_world(dirs, scenario) as world,
        Client.connect(world.daemon.socket) as c,
        Client.connect(world.daemon.socket) as watcher,
    ):
        await grow_and_shrink(c, dirs.root / "projects")
        sid = await new_session(world, c)
        subscribed = await watcher.call("subscribe", {"session": sid, "after_seq": 0})
        ran: list[str] = []
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def prompt() -> None:
                with trio.fail_after(DEADLINE_S):
                    await c.call("session.prompt", {"session": sid, "text": "go"})
                done.set()

            nursery.start_soon(prompt)
            # Wait for the turn to be streaming, then tidy the database under it.
            await watcher.wait_for(is_tool_call, DEADLINE_S)
            while not done.is_set() or len(ran) < 2:
                for method in ("db.optimize", "db.vacuum"):
                    with trio.fail_after(DEADLINE_S):
                        await c.call(method)
                    ran.append(method if done.is_set() else f"{method} mid-turn")
        # The turn (0.6 s of sleeps alone) outlasted some of them: they ran under it.
        assert {"db.optimize mid-turn", "db.vacuum mid-turn"} <= set(ran)
        await watcher.wait_for(lambda e: e["kind"] == "turn_ended", DEADLINE_S)
        stored = (await c.call("session.events", {"session": sid, "limit": 10000}))["events"]
        seen = [
            p["event"] for p in watcher.events if p["subscription"] == subscribed["subscription"]
        ]
        seqs = [e["seq"] for e in seen]
        assert seqs == list(range(1, len(seqs) + 1))  # in order, no gap, no duplicate
        assert seqs == [e["seq"] for e in stored]
        assert sum(map(is_tool_call, seen)) == TOOL_CALLS * TURNS
        assert (await c.call("db.check", {"full": True}))["ok"]
