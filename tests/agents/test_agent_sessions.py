"""Sessions with a real agent subprocess (the scripted fake ACP agent): prompt
turns, streaming, cancel, stop, resume, restarts, permissions and file access."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

from mimird.processes import group_alive
from mimird.wire.errors import ErrorCode
from tests.support.agents import Client, agent_world, new_session, received
from tests.support.helpers import DaemonDirs
from tests.support.processes import killing


def _umask() -> int:
    """This process's umask, read without setting it (other threads are running)."""
    status = Path("/proc/self/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("Umask:")).split()[1], 8)


async def test_prompt_runs_a_turn_and_streams_its_updates(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "chunks", "count": 3, "text": "hi"}, {"do": "tool_call"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        sub = await c.call("subscribe", {"session": session_id, "after_seq": 0})
        assert sub["cursor_kind"] == "seq"
        result = await c.call("session.prompt", {"session": session_id, "text": "do it"})
        assert result["stop_reason"] == "end_turn"
        assert result["end_seq"] > result["prompt_seq"] > 0
        end = await c.wait_for(lambda e: e["seq"] == result["end_seq"])
        assert end["kind"] == "turn_ended"
        assert end["data"]["stop_reason"] == "end_turn"
        seqs = [p["event"]["seq"] for p in c.events]
        assert seqs == list(range(1, len(seqs) + 1)), "gapless, in order, no duplicates"
        kinds = c.kinds()
        assert kinds.count("update") == 5
        assert "prompt" in kinds
        assert "agent_started" in kinds
        message = next(p["event"] for p in c.events if p["event"]["kind"] == "message")
        assert message["data"] == {"role": "agent", "text": "hi0hi1hi2"}
        session = await c.call("session.get", {"session": session_id})
        assert session["status"] == "idle"
        assert session["agent_state"]["acp_session_id"] == "sess-1"
        # The agent was started in the workspace, in its own process group.
        init = next(m for m in received(world) if m.get("method") == "initialize")
        caps = init["params"]["clientCapabilities"]
        assert caps == {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True}
        new = next(m for m in received(world) if m.get("method") == "session/new")
        assert new["params"]["cwd"] == session["workspace"]["path"]
        pid = session["agent_state"]["pid"]
        assert os.getpgid(pid) == pid


async def test_a_second_prompt_during_a_turn_is_refused_as_busy(dirs: DaemonDirs) -> None:
    # The turn lasts until the test cancels it: the second prompt cannot come too late.
    scenario = {"prompts": [[{"do": "wait_cancel"}, {"do": "stop_reason", "value": "cancelled"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        results: list[Any] = []

        async def prompt() -> None:
            results.append(await c.call("session.prompt", {"session": session_id, "text": "a"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(prompt)
            await c.until(
                "session.get", {"session": session_id}, lambda s: s["status"] == "running"
            )
            error = await c.error("session.prompt", {"session": session_id, "text": "b"})
            assert error["code"] == ErrorCode.BUSY
            assert "running a turn" in error["message"]
            await c.call("session.cancel", {"session": session_id})
        # The first turn was not disturbed by the refused one.
        assert [r["stop_reason"] for r in results] == ["cancelled"]
        prompts = [m for m in received(world) if m.get("method") == "session/prompt"]
        assert len(prompts) == 1


async def test_cancel_ends_the_turn_cancelled(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "wait_cancel"}, {"do": "stop_reason", "value": "cancelled"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        results: list[Any] = []

        async def prompt() -> None:
            results.append(await c.call("session.prompt", {"session": session_id, "text": "x"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(prompt)
            await c.until(
                "session.get", {"session": session_id}, lambda s: s["status"] == "running"
            )
            assert (await c.call("session.cancel", {"session": session_id}))["cancelled"] is True
        assert results[0]["stop_reason"] == "cancelled"
        assert any(m.get("method") == "session/cancel" for m in received(world))


async def test_permission_request_is_parked_until_a_client_answers(dirs: DaemonDirs) -> None:
    request = {
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
    }
    write = {
        "do": "request",
        "method": "fs/write_text_file",
        "params": {"sessionId": "sess-1", "path": "a.txt", "content": "hello\n"},
    }
    scenario = {"prompts": [[request, write]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "x"})
            await c.until("permission.list", {}, lambda r: r["permissions"])
            pending = (await c.call("permission.list", {"session": session_id}))["permissions"]
            assert len(pending) == 1
            # The request is answerable as soon as it is listed; the status change that
            # journals it commits just after.
            session = await c.until(
                "session.get",
                {"session": session_id},
                lambda r: r["status"] == "awaiting_permission",
            )
            answer = await c.call(
                "permission.respond", {"permission": pending[0]["id"], "kind": "allow_once"}
            )
            assert answer["option_id"] == "yes"
        # The turn is over, so the answered request has left the registry.
        again = await c.error(
            "permission.respond", {"permission": pending[0]["id"], "kind": "reject_once"}
        )
        assert again["code"] == ErrorCode.NOT_FOUND
        assert again["data"]["id"] == pending[0]["id"]
        workspace = session["workspace"]["path"]
        assert (Path(workspace) / "a.txt").read_text() == "hello\n"
        assert (Path(workspace) / "a.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()
        answers = [m for m in received(world) if "result" in m]
        assert {"outcome": {"outcome": "selected", "optionId": "yes"}} in [
            a["result"] for a in answers
        ]


async def test_file_access_outside_the_workspace_is_refused(dirs: DaemonDirs) -> None:
    outside = dirs.root / "secret.txt"
    outside.write_text("secret")
    steps = [
        {"do": "request", "method": "fs/read_text_file", "params": {"path": str(outside)}},
        {"do": "request", "method": "fs/read_text_file", "params": {"path": "../../secret.txt"}},
        {
            "do": "request",
            "method": "fs/write_text_file",
            "params": {"path": str(dirs.root / "evil.txt"), "content": "x"},
        },
    ]
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "x"})
        answers = [m for m in received(world) if "id" in m and "method" not in m]
        errors = [a for a in answers if "error" in a]
        assert len(errors) == 3, answers
        assert all("outside" in e["error"]["message"] for e in errors)
        assert not (dirs.root / "evil.txt").exists()


async def test_a_crashing_agent_is_restarted_then_failed(dirs: DaemonDirs) -> None:
    scenario = {"before": {"session/new": [{"do": "crash", "exit_code": 3}]}}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        error = await c.error("session.prompt", {"session": session_id, "text": "x"})
        assert error["code"] == ErrorCode.AGENT_UNAVAILABLE
        session = await c.call("session.get", {"session": session_id})
        assert session["status"] == "failed"
        assert "exited with code 3" in session["failure"]
        events = (await c.call("session.events", {"session": session_id}))["events"]
        kinds = [e["kind"] for e in events]
        assert kinds.count("agent_exited") == 3
        assert kinds.count("agent_restarting") == 2


async def test_stop_ends_the_whole_group_even_when_sigterm_is_ignored(dirs: DaemonDirs) -> None:
    scenario = {"ignore_eof": True, "ignore_sigterm": True}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        session = await c.call("session.resume", {"session": session_id})
        assert session["status"] == "idle"
        pgid = session["agent_state"]["pid"]
        with killing([pgid]):
            assert group_alive(pgid)
            stopped = await c.call("session.stop", {"session": session_id})
            assert stopped["status"] == "stopped"
            assert not group_alive(pgid)


async def test_resume_uses_session_load_when_the_agent_supports_it(dirs: DaemonDirs) -> None:
    scenario = {
        "results": {
            "initialize": {"protocolVersion": 1, "agentCapabilities": {"loadSession": True}},
            "session/load": None,
        }
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        await c.call("session.stop", {"session": session_id})
        resumed = await c.call("session.resume", {"session": session_id})
        assert resumed["status"] == "idle"
        load = [m for m in received(world) if m.get("method") == "session/load"]
        assert load
        assert load[0]["params"]["sessionId"] == "sess-1"
