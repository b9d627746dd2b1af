"""Sessions that finish: session.complete from every status that allows it (the agent
stopped, the worktree and branch kept), refusals from the others, resume, archive and
delete of a completed session, auto_complete, and session.list by completion.

With the scripted fake ACP agent, real git repositories and an in-process daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.processes import group_alive
from mimird.sessions import states
from mimird.wire.errors import ErrorCode
from tests.support.agents import Client, agent_world, event_data, new_session
from tests.support.helpers import DaemonDirs, make_repo
from tests.support.sessions import branches

pytestmark = pytest.mark.timeout(60)

PERMISSION = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [
            {"optionId": "yes", "name": "Allow", "kind": "allow_once"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ],
    },
    # The turn ends while the request is still parked.
    "wait": False,
}


async def _stored(c: Client, session_id: str) -> dict[str, Any]:
    session = await c.call("session.get", {"session": session_id})
    session.pop("git", None)
    found = await c.call("session.events", {"session": session_id})
    return {"session": session, "events": found["events"]}


async def _completed_events(c: Client, session_id: str) -> list[dict[str, Any]]:
    return await event_data(c, session_id, "session_completed")


def test_completable_statuses_are_the_documented_ones() -> None:
    assert {
        "created",
        "idle",
        "stopped",
        "failed",
        "interrupted",
        "budget_exceeded",
    } == states.COMPLETABLE
    assert "completed" in states.RESUMABLE
    assert states.TRANSITIONS["completed"] == {"starting", "archived", "deleted"}


async def test_completing_an_idle_session_stops_its_agent_and_keeps_its_work(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [[{"do": "disk_write", "path": "work.txt", "text": "w\n"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "go"})
        running = await c.call("session.get", {"session": session_id})
        assert running["status"] == "idle"
        pid = running["agent_state"]["pid"]
        done = await c.call(
            "session.complete", {"session": session_id, "note": "merged upstream ✓"}
        )
        assert done["status"] == "completed"
        assert done["completed_at"] is not None
        assert not group_alive(pid)
        workspace = Path(done["workspace"]["path"])
        assert (workspace / "work.txt").read_bytes() == b"w\n"
        assert done["workspace"]["branch"] in branches(world.repo)
        assert await _completed_events(c, session_id) == [
            {"by": "client", "note": "merged upstream ✓"}
        ]
        moves = [(d["from"], d["to"]) for d in await event_data(c, session_id, "status_changed")]
        assert moves[-2:] == [("idle", "stopped"), ("stopped", "completed")]
        shown = await c.call("session.get", {"session": session_id})
        assert shown["wall_s"] is not None
        assert shown["wall_s"] >= 0
        assert shown["active_s"] > 0
        hits = await c.call("search", {"query": "merged upstream"})
        assert [h["kind"] for h in hits["hits"]] == ["session_completed"]


@pytest.mark.parametrize("how", ["created", "stopped", "failed"])
async def test_a_session_without_an_agent_is_completed_from(dirs: DaemonDirs, how: str) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        if how == "failed":
            other = make_repo(dirs.root / "failing")
            project = await c.call(
                "project.add", {"path": str(other), "config": {"setup_command": "exit 3"}}
            )
            session = await c.call("session.create", {"project": project["id"]})
            session_id = session["id"]
        else:
            session_id = await new_session(world, c)
            if how == "stopped":
                await c.call("session.stop", {"session": session_id})
        assert (await c.call("session.get", {"session": session_id}))["status"] == how
        done = await c.call("session.complete", {"session": session_id})
        assert (done["status"], done["completed_at"] is not None) == ("completed", True)
        assert await _completed_events(c, session_id) == [{"by": "client"}]


@pytest.mark.parametrize("how", ["completed", "archived", "deleted"])
async def test_completing_is_refused_from_and_changes_nothing(dirs: DaemonDirs, how: str) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        if how == "completed":
            await c.call("session.complete", {"session": session_id})
        elif how == "archived":
            await c.call("session.archive", {"session": session_id})
        else:
            await c.call("session.delete", {"session": session_id})
        before = await _stored(c, session_id)
        error = await c.error("session.complete", {"session": session_id, "note": "again"})
        assert error["code"] == ErrorCode.INVALID_STATE
        assert f"cannot complete session {session_id}: it is {how}" in error["message"]
        assert error["data"]["detail"]["status"] == how
        assert await _stored(c, session_id) == before


async def test_completing_during_a_turn_is_refused_with_how_to_go_on(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "wait_cancel"}, {"do": "stop_reason", "value": "cancelled"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "x"})
            await c.until(
                "session.get", {"session": session_id}, lambda s: s["status"] == "running"
            )
            error = await c.error("session.complete", {"session": session_id})
            assert error["code"] == ErrorCode.INVALID_STATE
            assert "a turn is running; cancel it first" in error["message"]
            assert error["data"]["detail"]["status"] == "running"
            await c.call("session.cancel", {"session": session_id})
        assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"
        assert await _completed_events(c, session_id) == []


async def test_unknown_session_and_bad_note_are_refused(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        error = await c.error("session.complete", {"session": "zzzzzzzz"})
        assert error["code"] == ErrorCode.NOT_FOUND
        error = await c.error("session.complete", {"session": session_id, "note": 5})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == "note"
        error = await c.error("session.complete", {"session": session_id, "by": "me"})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert (await c.call("session.get", {"session": session_id}))["status"] == "created"


async def test_a_completed_session_resumes_to_idle_and_takes_prompts(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[], [{"do": "echo"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        await c.call("session.complete", {"session": session_id})
        error = await c.error("session.prompt", {"session": session_id, "text": "two"})
        assert error["code"] == ErrorCode.INVALID_STATE
        resumed = await c.call("session.resume", {"session": session_id})
        assert (resumed["status"], resumed["completed_at"]) == ("idle", None)
        result = await c.call("session.prompt", {"session": session_id, "text": "two"})
        assert result["stop_reason"] == "end_turn"


@pytest.mark.parametrize("how", ["archive", "delete"])
async def test_a_completed_session_is_archived_or_deleted_with_its_work_saved(
    dirs: DaemonDirs, how: str
) -> None:
    scenario = {"prompts": [[{"do": "disk_write", "path": "work.txt", "text": "keep\n"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "go"})
        done = await c.call("session.complete", {"session": session_id})
        if how == "archive":
            archived = await c.call("session.archive", {"session": session_id})
            assert (archived["status"], archived["completed_at"]) == (
                "archived",
                done["completed_at"],
            )
            return
        removed = await c.call("session.delete", {"session": session_id})
        assert removed["session"]["status"] == "deleted"
        assert removed["snapshot"]["files"] == 1
        restored = await c.call("session.restore", {"session": session_id})
        assert (Path(restored["workspace"]["path"]) / "work.txt").read_bytes() == b"keep\n"


def _auto(value: bool) -> dict[str, Any]:
    return {"config": {"auto_complete": value}}


async def test_auto_complete_completes_a_session_whose_turn_ends_end_turn(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call("session.create", {"project": world.project, **_auto(True)})
        await c.call("session.prompt", {"session": session["id"], "text": "finish it"})
        done = await c.call("session.get", {"session": session["id"]})
        assert (done["status"], done["completed_at"] is not None) == ("completed", True)
        assert await _completed_events(c, session["id"]) == [{"by": "auto_complete"}]
        moves = await event_data(c, session["id"], "status_changed")
        assert moves[-1] == {"from": "stopped", "to": "completed", "reason": "auto_complete"}


@pytest.mark.parametrize("stop_reason", ["max_tokens", "refusal", "cancelled"])
async def test_auto_complete_leaves_a_turn_ending_otherwise_idle(
    dirs: DaemonDirs, stop_reason: str
) -> None:
    scenario = {"prompts": [[{"do": "stop_reason", "value": stop_reason}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call("session.create", {"project": world.project, **_auto(True)})
        result = await c.call("session.prompt", {"session": session["id"], "text": "x"})
        assert result["stop_reason"] == stop_reason
        assert (await c.call("session.get", {"session": session["id"]}))["status"] == "idle"
        assert await _completed_events(c, session["id"]) == []


async def test_auto_complete_waits_while_a_permission_request_is_pending(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [[PERMISSION]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call("session.create", {"project": world.project, **_auto(True)})
        result = await c.call("session.prompt", {"session": session["id"], "text": "x"})
        assert result["stop_reason"] == "end_turn"
        assert (await c.call("session.get", {"session": session["id"]}))["status"] == "idle"
        assert await _completed_events(c, session["id"]) == []


async def test_auto_complete_is_off_by_default_and_checked(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "x"})
        assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"
        error = await c.error(
            "session.update", {"session": session_id, "config": {"auto_complete": "yes"}}
        )
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == "config.auto_complete"
        assert "expected true or false, got a string" in error["message"]


async def test_session_list_filters_completed_and_sorts_by_completion(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        ids = [await new_session(world, c) for _ in range(4)]
        # Completed in an order other than creation's: 2, 0, 3 (1 stays created).
        for index in (2, 0, 3):
            await c.call("session.complete", {"session": ids[index]})
        listed = await c.call("session.list", {"status": ["completed"]})
        assert [s["id"] for s in listed["sessions"]] == [ids[3], ids[2], ids[0]]
        by_completion = await c.call("session.list", {"sort": "completed_at"})
        assert [s["id"] for s in by_completion["sessions"]] == [ids[3], ids[0], ids[2]]
        pages: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"sort": "completed_at", "limit": 1}
            if cursor is not None:
                params["cursor"] = cursor
            page = await c.call("session.list", params)
            pages += [s["id"] for s in page["sessions"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == [ids[3], ids[0], ids[2]]
        error = await c.error("session.list", {"sort": "finished"})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == "sort"


async def test_stopping_a_completed_session_leaves_it_completed(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        done = await c.call("session.complete", {"session": session_id})
        stopped = await c.call("session.stop", {"session": session_id})
        assert (stopped["status"], stopped["completed_at"]) == ("completed", done["completed_at"])
