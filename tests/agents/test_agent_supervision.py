"""What a misbehaving agent does to a session, with the real daemon and the
scripted fake agent: crashes mid-turn, a hang past the cancel grace, stderr in
the failure, malformed and huge output, updates at odd times, the agent's
environment, and the daemon going away (SIGTERM, SIGKILL) during a turn."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.processes import group_alive
from mimird.wire.errors import ErrorCode
from tests.support.agents import Client, agent_world, new_session, received, write_config
from tests.support.helpers import (
    DaemonDirs,
    blocking_call,
    daemon_process,
    in_process_daemon,
    make_repo,
)
from tests.support.processes import killing

pytestmark = pytest.mark.timeout(60)

WAIT_CANCEL = {"do": "wait_cancel"}
CANCELLED = {"do": "stop_reason", "value": "cancelled"}


async def events_of(c: Client, session_id: str) -> list[dict[str, Any]]:
    result = await c.call("session.events", {"session": session_id, "limit": 1000})
    events: list[dict[str, Any]] = result["events"]
    return events


async def test_a_crash_mid_turn_ends_the_turn_and_the_restarted_agent_takes_the_next(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    crash = {"do": "crash", "exit_code": 7, "once": str(tmp_path / "crashed")}
    # A restarted agent is a new process: it plays the first prompt's steps again.
    scenario = {"prompts": [[{"do": "chunks", "count": 2}, crash]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        error = await c.error("session.prompt", {"session": session_id, "text": "one"})
        assert error["code"] == ErrorCode.AGENT_UNAVAILABLE
        assert "exited during the turn" in error["message"]
        session = await c.until(
            "session.get", {"session": session_id}, lambda s: s["status"] == "idle"
        )
        second = await c.call("session.prompt", {"session": session_id, "text": "two"})
        assert second["stop_reason"] == "end_turn"
        events = await events_of(c, session_id)
        kinds = [e["kind"] for e in events]
        assert kinds.count("agent_started") == 2
        assert kinds.count("agent_exited") == 1
        assert kinds.count("agent_restarting") == 1
        exited = next(e for e in events if e["kind"] == "agent_exited")
        assert "7" in str(exited["data"])
        ended = [e["data"] for e in events if e["kind"] == "turn_ended"]
        assert ended[0]["stop_reason"] == "error"
        assert "exited" in ended[0]["error"]
        assert ended[1]["stop_reason"] == "end_turn"
        # Nothing stored was lost: the chunks before the crash are there, seqs gapless.
        assert kinds.count("update") == 4
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert session["failure"] is None


async def test_the_failure_names_the_exit_code_and_the_last_stderr_lines(
    dirs: DaemonDirs,
) -> None:
    steps = [
        {"do": "stderr", "text": "loading model"},
        {"do": "stderr", "text": "fatal: no API key configured"},
        {"do": "crash", "exit_code": 2},
    ]
    async with (
        agent_world(dirs, {"before": {"initialize": steps}}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        error = await c.error("session.resume", {"session": session_id})
        assert error["code"] == ErrorCode.AGENT_UNAVAILABLE
        session = await c.call("session.get", {"session": session_id})
        assert session["status"] == "failed"
        assert "exited with code 2" in session["failure"]
        assert "fatal: no API key configured" in session["failure"]
        # Restarts up to max_restarts (2), each journaled.
        kinds = [e["kind"] for e in await events_of(c, session_id)]
        assert kinds.count("agent_exited") == 3
        assert kinds.count("agent_restarting") == 2


async def test_an_agent_that_ignores_cancel_is_restarted_after_the_grace(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [[{"do": "hang", "once": str(dirs.root / "hung")}]]}
    async with (
        agent_world(dirs, scenario, supervision={"cancel_grace_s": 0.5}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        results: list[Any] = []

        async def prompt() -> None:
            results.append(await c.call("session.prompt", {"session": session_id, "text": "x"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(prompt)
            session = await c.until(
                "session.get", {"session": session_id}, lambda s: s["status"] == "running"
            )
            pid = session["agent_state"]["pid"]
            started = time.monotonic()
            await c.call("session.cancel", {"session": session_id})
        assert results[0]["stop_reason"] == "cancelled"
        assert time.monotonic() - started >= 0.4, "the agent had its grace period"
        assert any(m.get("method") == "session/cancel" for m in received(world))
        # The hung agent was stopped and a new one started in its place.
        await c.until(
            "session.get",
            {"session": session_id},
            lambda s: s["status"] == "idle" and s["agent_state"]["pid"] != pid,
        )
        assert not group_alive(pid)
        again = await c.call("session.prompt", {"session": session_id, "text": "again"})
        assert again["stop_reason"] == "end_turn"


async def test_malformed_and_huge_output_does_not_break_the_turn(dirs: DaemonDirs) -> None:
    big = 2 * 1024 * 1024
    steps = [
        {"do": "raw", "line": "this is not json"},
        {"do": "raw", "line": '{"jsonrpc": "2.0", "method": "session/update", "params": '},
        {"do": "raw", "line": "[1, 2, 3]"},
        {"do": "huge", "bytes": big},
        {"do": "chunks", "count": 2, "text": "after"},
    ]
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        result = await c.call("session.prompt", {"session": session_id, "text": "x"})
        assert result["stop_reason"] == "end_turn"
        events = await events_of(c, session_id)
        updates = [e for e in events if e["kind"] == "update"]
        assert len(updates) == 3
        assert len(updates[0]["data"]["update"]["content"]["text"]) == big
        errors = [e for e in events if e["kind"] == "agent_protocol_error"]
        assert len(errors) == 3, [e["data"] for e in errors]
        # Longer than message_piece_bytes (1 MiB): journaled in pieces.
        pieces = [e["data"] for e in events if e["kind"] == "message"]
        assert [p.get("piece") for p in pieces] == [1, 2, 3]
        assert "".join(p["text"] for p in pieces) == "x" * big + "after0after1"
        assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"


async def test_updates_at_odd_times_are_journaled_verbatim(dirs: DaemonDirs) -> None:
    """Before session/new answers, for a tool call never announced (with an unknown
    field), and after the stop reason: each is stored as it came, in order."""
    odd_tool = {
        "sessionUpdate": "tool_call_update",
        "toolCallId": "never-announced",
        "status": "completed",
        "x_vendor": {"kept": [1, 2]},
    }
    early = {"sessionUpdate": "available_commands_update", "availableCommands": []}
    late = {
        "sessionUpdate": "agent_message_chunk",
        "content": {"type": "text", "text": "late"},
    }
    scenario = {
        "before": {"session/new": [{"do": "update", "update": early}]},
        "prompts": [[{"do": "update", "update": odd_tool}]],
        "after": {"session/prompt": [{"do": "update", "update": late}]},
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("subscribe", {"session": session_id, "after_seq": 0})
        await c.call("session.prompt", {"session": session_id, "text": "x"})
        await c.wait_for(lambda e: e["kind"] == "update" and e["data"]["update"] == late)
        events = await events_of(c, session_id)
        updates = [e["data"]["update"] for e in events if e["kind"] == "update"]
        assert updates == [early, odd_tool, late]
        assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"


async def test_the_agent_never_sees_the_daemons_notify_socket_or_database_key(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(dirs.root / "no-such-notify-socket"))
    monkeypatch.setenv("LISTEN_FDS", "0")
    monkeypatch.setenv("MIMIR_DB_KEY", "not-for-agents")
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/"))
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        session = await c.call("session.resume", {"session": session_id})
        environ = await trio.Path(f"/proc/{session['agent_state']['pid']}/environ").read_bytes()
        names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
        assert not names & {"NOTIFY_SOCKET", "LISTEN_FDS", "MIMIR_DB_KEY"}
        assert b"not-for-agents" not in environ
        assert f"MIMIR_SESSION={session_id}".encode() in environ.split(b"\0")
        assert {"PATH", "HOME"} <= names
        assert (
            os.readlink(f"/proc/{session['agent_state']['pid']}/cwd")
            == (session["workspace"]["path"])
        )


def _start_a_turn(dirs: DaemonDirs) -> tuple[str, int, socket.socket]:
    """In a running daemon: a session whose agent is mid-turn; its id, the agent's
    pid and the connection waiting for the prompt's answer (close it)."""
    repo = make_repo(dirs.root / "repo")
    blocking_call(dirs.socket, "project.add", {"path": str(repo), "name": "demo"})
    session = blocking_call(dirs.socket, "session.create", {"project": "demo"})["result"]
    session = blocking_call(dirs.socket, "session.resume", {"session": session["id"]})["result"]
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(str(dirs.socket))
    params = {"session": session["id"], "text": "go"}
    conn.sendall(
        json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "session.prompt", "params": params}
        ).encode()
        + b"\n"
    )
    deadline = time.monotonic() + 10
    get = {"session": session["id"]}
    while blocking_call(dirs.socket, "session.get", get)["result"]["status"] != "running":
        assert time.monotonic() < deadline, "the turn never started"
        time.sleep(0.02)
    return session["id"], int(session["agent_state"]["pid"]), conn


@pytest.mark.slow
def test_sigterm_mid_turn_cancels_the_turn_and_stops_the_agent(dirs: DaemonDirs) -> None:
    record = dirs.root / "received.jsonl"
    write_config(
        dirs, {"record": str(record), "prompts": [[WAIT_CANCEL, CANCELLED]], "ignore_eof": True}
    )
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        session_id, pid, conn = _start_a_turn(dirs)
        with contextlib.closing(conn):
            assert daemon.terminate() == 0
    assert not group_alive(pid)
    assert "session/cancel" in record.read_text()
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        session = blocking_call(dirs.socket, "session.get", {"session": session_id})["result"]
        assert session["status"] == "stopped"
        events = blocking_call(dirs.socket, "session.events", {"session": session_id})["result"]
        ended = [e["data"] for e in events["events"] if e["kind"] == "turn_ended"]
        assert [d["stop_reason"] for d in ended] == ["cancelled"]


@pytest.mark.slow
def test_sigkill_mid_turn_the_next_start_reaps_the_agent_and_interrupts_the_session(
    dirs: DaemonDirs,
) -> None:
    hang = {"do": "hang", "once": str(dirs.root / "hung")}
    write_config(dirs, {"prompts": [[hang]], "ignore_eof": True, "ignore_sigterm": True})
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        session_id, pid, conn = _start_a_turn(dirs)
        with contextlib.closing(conn):
            daemon.kill()
    with killing([pid]):
        assert group_alive(pid), "the orphan agent outlived the daemon"
        with daemon_process(dirs) as daemon:
            daemon.wait_ready()
            assert not group_alive(pid)
            params = {"session": session_id}
            session = blocking_call(dirs.socket, "session.get", params)["result"]
            assert session["status"] == "interrupted"
            events = blocking_call(dirs.socket, "session.events", params)["result"]["events"]
            ended = [e["data"] for e in events if e["kind"] == "turn_ended"]
            assert [d["stop_reason"] for d in ended] == ["interrupted"]
            # The user goes on: the next prompt starts the agent again.
            again = blocking_call(dirs.socket, "session.prompt", {**params, "text": "again"})
            assert again["result"]["stop_reason"] == "end_turn"


class _Boom(Exception):
    pass


async def test_a_daemon_cancelled_by_an_internal_error_still_stops_its_agents(
    dirs: DaemonDirs,
) -> None:
    """Cancellation (not the shutdown signal) takes the daemon down: the agents are
    stopped and their sessions recorded as stopped; nothing waits forever on the
    journal's writer, which outlives the parts that still write through it."""
    pid = 0
    session_id = ""
    with pytest.RaisesGroup(_Boom, flatten_subgroups=True):
        async with agent_world(dirs, {"ignore_eof": True}) as world:
            async with Client.connect(world.daemon.socket) as c:
                session_id = await new_session(world, c)
                session = await c.call("session.resume", {"session": session_id})
                pid = session["agent_state"]["pid"]
            raise _Boom
    assert pid
    assert not group_alive(pid)
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as c:
        session = await c.call("session.get", {"session": session_id})
        assert session["status"] == "stopped"


async def test_secrets_the_agent_echoes_never_reach_the_journal(dirs: DaemonDirs) -> None:
    """DESIGN.md invariant 9: a secret env value the agent (or the user) writes back
    is masked in every event, in search, and in permission.list; the agent itself
    still gets what was sent."""
    secret = "s3cr3t-t0ken-4f9a"
    say = {
        "sessionUpdate": "agent_message_chunk",
        "content": {"type": "text", "text": f"the token is {secret}."},
    }
    # Split across two chunks: each piece must be masked in its own update.
    first = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": " and "}}
    half = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": secret[:7]}}
    rest = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": secret[7:]}}
    tool = {
        "sessionUpdate": "tool_call",
        "toolCallId": "t1",
        "title": f"curl -H 'Authorization: {secret}'",
        "rawInput": {"command": f"curl -H 'Authorization: {secret}'", secret: "as a key"},
    }
    ask = {
        "do": "request",
        "method": "session/request_permission",
        "params": {
            "sessionId": "sess-1",
            "toolCall": {"toolCallId": "t1", "title": f"run with {secret}"},
            "options": [{"optionId": "yes", "name": "Allow", "kind": "allow_once"}],
        },
    }
    steps = [{"do": "update", "update": u} for u in (say, first, half, rest, tool)] + [ask]
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        env = {"API_TOKEN": {"value": secret, "secret": True}}
        session = await c.call(
            "session.create", {"project": world.project, "title": "t", "config": {"env": env}}
        )
        session_id = session["id"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                c.call, "session.prompt", {"session": session_id, "text": f"use {secret}"}
            )
            listed = await c.until("permission.list", {}, lambda r: r["permissions"])
            assert secret not in json.dumps(listed)
            assert listed["permissions"][0]["tool_call"]["title"] == "run with ***"
            await c.call(
                "permission.respond",
                {"permission": listed["permissions"][0]["id"], "kind": "allow_once"},
            )
        stored = await events_of(c, session_id)
        assert secret not in json.dumps(stored)
        # Not even in pieces: each chunk of the split secret is masked in its update.
        assert secret[:7] not in json.dumps(stored)
        assert secret[7:] not in json.dumps(stored)
        chunks = [
            e["data"]["update"]["content"]["text"]
            for e in stored
            if e["kind"] == "update"
            and e["data"]["update"]["sessionUpdate"] == "agent_message_chunk"
        ]
        assert chunks == ["the token is ***.", " and ", "***", "***"]
        messages = [e["data"]["text"] for e in stored if e["kind"] == "message"]
        assert messages == ["the token is ***. and ***"]
        prompt = next(e for e in stored if e["kind"] == "prompt")
        assert prompt["data"]["content"] == [{"type": "text", "text": "use ***"}]
        tool_event = next(e for e in stored if e["data"].get("update", {}).get("toolCallId"))
        assert tool_event["data"]["update"]["rawInput"] == {
            "command": "curl -H 'Authorization: ***'",
            "***": "as a key",
        }
        for query in (secret, "s3cr3t*"):
            assert (await c.call("search", {"query": query}))["hits"] == []
        sent = next(m for m in received(world) if m.get("method") == "session/prompt")
        assert sent["params"]["prompt"] == [{"type": "text", "text": f"use {secret}"}]


async def test_every_change_of_the_agent_process_state_is_journaled_in_order(
    dirs: DaemonDirs,
) -> None:
    crash = {"do": "crash", "exit_code": 3, "once": str(dirs.root / "crashed")}
    scenario = {"before": {"session/new": [crash]}}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.resume", {"session": session_id})
        await c.call("session.stop", {"session": session_id})
        changes = [
            (e["data"]["from"], e["data"]["to"])
            for e in await events_of(c, session_id)
            if e["kind"] == "process_state_changed"
        ]
    assert changes == [
        ("stopped", "starting"),
        ("starting", "backoff"),
        ("backoff", "starting"),
        ("starting", "running"),
        ("running", "stopping"),
        ("stopping", "stopped"),
    ]


async def test_an_agent_given_up_ends_fatal(dirs: DaemonDirs) -> None:
    scenario = {"before": {"initialize": [{"do": "crash", "exit_code": 2}]}}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.error("session.resume", {"session": session_id})
        states = [
            e["data"]["to"]
            for e in await events_of(c, session_id)
            if e["kind"] == "process_state_changed"
        ]
    # max_restarts = 2 in these tests: three lives, two waits, then given up.
    assert states == [
        "starting",
        "backoff",
        "starting",
        "backoff",
        "starting",
        "fatal",
    ]
