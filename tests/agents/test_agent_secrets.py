"""Secrets (DESIGN.md invariant 9) an agent or a user echoes never reach the audit
log, ``permission.list``, the journal, search, ``mimirctl log`` or the agent's
stderr log file unmasked, in any form they can be written in.

A real daemon in-process, the scripted fake agent as a subprocess, the SQLite file
and the log file read from disk, ``mimirctl`` run as a subprocess."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from typing import Any, Final

import pytest
import trio

from tests.support.agents import AgentWorld, Client, agent_world, received
from tests.support.helpers import DaemonDirs, run_mimirctl

pytestmark = pytest.mark.timeout(60)

#: Quote, backslash and a character past ASCII: each JSON form of it differs.
SECRET: Final = 'pa"ss\\wörd-7f3e'
#: In every form of the secret (as is, JSON-escaped, ``\\u00f6``): it must show nowhere.
MARK: Final = "7f3e"
ENV: Final = {"API_TOKEN": {"value": SECRET, "secret": True}}
RUN_TIMEOUT_S: Final = 20.0


def chunk(text: str) -> dict[str, Any]:
    return {
        "do": "update",
        "update": {
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": text},
        },
    }


def db_rows(dirs: DaemonDirs, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{dirs.database}?mode=ro", uri=True)) as db:
        return db.execute(query).fetchall()


async def secret_session(world: AgentWorld, c: Client, title: str = "t") -> str:
    session = await c.call(
        "session.create", {"project": world.project, "title": title, "config": {"env": ENV}}
    )
    session_id: str = session["id"]
    return session_id


async def mimirctl(dirs: DaemonDirs, *args: str) -> str:
    with trio.fail_after(RUN_TIMEOUT_S):
        done = await trio.run_process(
            [sys.executable, "-m", "mimirctl", *args],
            env=dirs.env(),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
        )
    return done.stdout.decode() + done.stderr.decode()


async def test_the_audit_log_masks_secrets_in_prompts_and_titles(dirs: DaemonDirs) -> None:
    async with (
        agent_world(dirs, {"prompts": [[{"do": "echo"}]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await secret_session(world, c, title=f"deploy with {SECRET}")
        text = f"use {SECRET}, as JSON {json.dumps({'password': SECRET})}"
        await c.call("session.prompt", {"session": session_id, "text": text})
        # A secret the call itself sets is masked in its other params too.
        again = {"API_TOKEN": {"value": SECRET + "-v2", "secret": True}}
        await c.call(
            "session.update",
            {"session": session_id, "title": f"now {SECRET}-v2", "config": {"env": again}},
        )
    rows = db_rows(dirs, "SELECT method, params FROM audit_log ORDER BY id")
    params = dict(rows)
    assert set(params) >= {"session.create", "session.prompt", "session.update"}
    assert MARK not in repr(rows)
    assert json.loads(params["session.prompt"])["text"] == 'use ***, as JSON {"password": "***"}'
    assert json.loads(params["session.create"])["title"] == "deploy with ***"
    assert json.loads(params["session.update"])["title"] == "now ***"


async def test_permission_list_masks_what_the_agent_sent_and_answers_with_its_own_ids(
    dirs: DaemonDirs,
) -> None:
    ask = {
        "do": "request",
        "method": "session/request_permission",
        "params": {
            "sessionId": "sess-1",
            "toolCall": {"toolCallId": "t1", "title": f"log in with {SECRET}"},
            "options": [
                {"optionId": f"yes-{SECRET}", "name": f"Allow {SECRET}", "kind": "allow_once"},
                {"optionId": "no", "name": "Reject", "kind": "reject_once"},
            ],
        },
    }
    async with (
        agent_world(dirs, {"prompts": [[ask]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await secret_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            listed = await c.until("permission.list", {}, lambda r: r["permissions"])
            assert MARK not in json.dumps(listed)
            [request] = listed["permissions"]
            assert request["options"][0] == {
                "optionId": "yes-***",
                "name": "Allow ***",
                "kind": "allow_once",
            }
            assert request["tool_call"]["title"] == "log in with ***"
            wrong = await c.error(
                "permission.respond", {"permission": request["id"], "option_id": "maybe"}
            )
            assert MARK not in json.dumps(wrong)
            assert "yes-***" in wrong["message"]
            # The id as shown names the option; the agent gets its own id back.
            answered = await c.call(
                "permission.respond", {"permission": request["id"], "option_id": "yes-***"}
            )
            assert answered["option_id"] == "yes-***"
        stored = await c.call("session.events", {"session": session_id, "limit": 1000})
        assert MARK not in json.dumps(stored)
    answer = next(m for m in received(world) if m.get("id") == 0 and "result" in m)
    assert answer["result"]["outcome"] == {"outcome": "selected", "optionId": f"yes-{SECRET}"}


async def test_a_json_escaped_secret_is_masked_in_the_journal_search_and_mimirctl_log(
    dirs: DaemonDirs,
) -> None:
    escaped = json.dumps(SECRET)  # ensure_ascii: pa\"ss\\w\u00f6rd-7f3e
    plain = json.dumps(SECRET, ensure_ascii=False)  # pa\"ss\\wörd-7f3e
    tool = {
        "do": "update",
        "update": {
            "sessionUpdate": "tool_call",
            "toolCallId": "t1",
            "title": f"login {plain}",
            # Tool arguments as JSON text in a string, as many agents send them.
            "rawInput": {"arguments": json.dumps({"user": "me", "password": SECRET})},
        },
    }
    # The escaped form split across two chunks of one message.
    steps = [chunk(f"zebra token {escaped[:9]}"), chunk(f"{escaped[9:]} zebra done"), tool]
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await secret_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": f"use {plain} {escaped}"})
        stored = await c.call("session.events", {"session": session_id, "limit": 1000})
        found = await c.call("search", {"query": "zebra"})
        logged = await mimirctl(dirs, "log", session_id)
    assert MARK not in json.dumps(stored)
    assert MARK not in repr(db_rows(dirs, "SELECT data FROM events"))
    # The FTS index holds the text it was given, and nothing else.
    assert MARK not in repr(db_rows(dirs, "SELECT * FROM events_fts"))
    assert found["hits"], found
    assert MARK not in json.dumps(found)
    assert "zebra token" in logged
    assert MARK not in logged
    messages = [e["data"]["text"] for e in stored["events"] if e["kind"] == "message"]
    assert messages == ['zebra token "***" zebra done']


async def test_the_agents_stderr_log_file_never_holds_a_secret(dirs: DaemonDirs) -> None:
    steps = [
        {"do": "stderr", "text": f"whole: {SECRET}"},
        # Split across two writes (two reads of the pipe): still masked in the file.
        {"do": "stderr", "text": f"split: {SECRET[:6]}", "end": ""},
        {"do": "sleep", "s": 0.3},
        {"do": "stderr", "text": f"{SECRET[6:]} end"},
        {"do": "stderr", "text": f"escaped: {json.dumps(SECRET)}"},
    ]
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await secret_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "go"})
        await c.call("session.stop", {"session": session_id})
        logs = await c.call("session.logs", {"session": session_id})
        shown = await trio.to_thread.run_sync(
            lambda: run_mimirctl(dirs, "logs", session_id, "-n", "3")
        )
    text = (dirs.state / "agent-logs" / f"{session_id}.log").read_text()
    assert MARK not in text
    # Each piece of the split secret is masked in its own write.
    assert 'whole: ***\nsplit: ****** end\nescaped: "***"\n' in text
    assert logs["lines"][-3:] == ["whole: ***", "split: ****** end", 'escaped: "***"']
    assert shown.returncode == 0, shown.stderr
    assert MARK not in shown.stdout
    assert shown.stdout.splitlines() == ["whole: ***", "split: ****** end", 'escaped: "***"']
