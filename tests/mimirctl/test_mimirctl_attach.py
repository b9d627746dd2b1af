"""``mimirctl attach`` and ``log`` against a real daemon whose agent is the
scripted fake ACP agent: attach replays, follows, and ends when the agent is at
rest (no turn running, no permission request waiting) unless ``-f``; replays
print how to answer a permission request only while it waits for an answer."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
from typing import Any, Final

import trio

from tests.support.agents import Client, agent_world, new_session
from tests.support.helpers import DaemonDirs

RUN_TIMEOUT_S: Final = 30
TURN_ENDED: Final = "[turn ended: end_turn]"
HINT: Final = "answer: mimirctl permission allow"
REQUEST: Final = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [
            {"optionId": "yes", "name": "Allow once", "kind": "allow_once"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ],
    },
}


async def mimirctl(dirs: DaemonDirs, *args: str) -> subprocess.CompletedProcess[bytes]:
    """A mimirctl command without a terminal, to its end (within RUN_TIMEOUT_S)."""
    with trio.fail_after(RUN_TIMEOUT_S):
        return await trio.run_process(
            [sys.executable, "-m", "mimirctl", *args],
            env=dirs.env(),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


class Following:
    """A mimirctl command running in the background; its output read as it comes."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""

    async def expect(self, text: str, count: int = 1) -> str:
        assert self.process.stdout is not None
        with trio.fail_after(RUN_TIMEOUT_S):
            while self.output.decode().count(text) < count:
                data = await self.process.stdout.receive_some(1 << 16)
                assert data, f"{text!r} never showed:\n{self.output.decode()}"
                self.output += data
        return self.output.decode()

    async def rest(self) -> tuple[int, str]:
        """Its exit code and all it printed, once it ends by itself."""
        assert self.process.stdout is not None
        with trio.fail_after(RUN_TIMEOUT_S):
            while data := await self.process.stdout.receive_some(1 << 16):
                self.output += data
            return await self.process.wait(), self.output.decode()


async def following(dirs: DaemonDirs, nursery: trio.Nursery, *args: str) -> Following:
    run = functools.partial(
        trio.run_process,
        [sys.executable, "-m", "mimirctl", *args],
        env=dirs.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        check=False,
    )
    process: trio.Process = await nursery.start(run)
    return Following(process)


def requested(listed: dict[str, Any]) -> bool:
    """Whether a ``permission.list`` result lists a request."""
    return bool(listed["permissions"])


# ---- when attach ends -------------------------------------------------------------


async def test_attach_to_an_idle_agent_replays_the_last_turn_and_ends(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "chunks", "text": "one"}], [{"do": "chunks", "text": "two"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "first"})
        await c.call("session.prompt", {"session": session_id, "text": "second"})
        assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"
        done = await mimirctl(dirs, "attach", session_id)
    assert done.returncode == 0, done.stderr
    shown = done.stdout.decode()
    assert shown.startswith("> second\n")
    assert "two0" in shown
    assert shown.rstrip().endswith(TURN_ENDED)
    assert "one0" not in shown


async def test_attach_to_an_idle_agent_after_its_last_event_ends_at_once(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "hi"})
        last_seq = (await c.call("session.get", {"session": session_id}))["last_seq"]
        done = await mimirctl(dirs, "attach", session_id, "--after", str(last_seq))
    assert (done.returncode, done.stdout) == (0, b""), done.stderr


async def test_attach_during_a_turn_follows_it_and_ends_with_it(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "chunks", "text": "working"}, {"do": "wait_cancel"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            await c.until(
                "session.get", {"session": session_id}, lambda s: s["status"] == "running"
            )
            attach = await following(dirs, nursery, "attach", session_id)
            await attach.expect("working0")
            assert attach.process.returncode is None  # a turn runs: attach follows it
            await c.call("session.cancel", {"session": session_id})
            code, shown = await attach.rest()
    assert code == 0
    assert shown.rstrip().splitlines()[-1].startswith("[turn ended: ")


async def test_attach_waits_while_a_permission_request_is_pending(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[REQUEST, {"do": "chunks", "text": "after"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            listed = await c.until("permission.list", {"session": session_id}, requested)
            [request] = listed["permissions"]
            attach = await following(dirs, nursery, "attach", session_id)
            # Replayed, but still waiting for an answer: the hint says how to give it.
            await attach.expect(f"{HINT} {request['id']}")
            assert attach.process.returncode is None
            await c.call("permission.respond", {"permission": request["id"], "kind": "allow_once"})
            code, shown = await attach.rest()
    assert code == 0
    assert "after0" in shown
    assert shown.rstrip().endswith(TURN_ENDED)


async def test_attach_follow_keeps_following_an_idle_agent(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "chunks", "text": "one"}], [{"do": "chunks", "text": "two"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "first"})
        async with trio.open_nursery() as nursery:
            attach = await following(dirs, nursery, "attach", session_id, "-f")
            await attach.expect(TURN_ENDED)
            await c.call("session.prompt", {"session": session_id, "text": "second"})
            await attach.expect(TURN_ENDED, count=2)  # still following: the next turn shows
            attach.process.send_signal(signal.SIGINT)
            code, shown = await attach.rest()
    assert code == 0
    assert "two0" in shown


# ---- the hint of a permission request in a replay -----------------------------------


async def test_replays_print_no_hint_for_a_request_already_answered(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[REQUEST, {"do": "chunks", "text": "after"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            listed = await c.until("permission.list", {"session": session_id}, requested)
            [request] = listed["permissions"]
            await c.call("permission.respond", {"permission": request["id"], "kind": "allow_once"})
        attached = await mimirctl(dirs, "attach", session_id)
        logged = await mimirctl(dirs, "log", session_id)
    for done in (attached, logged):
        assert done.returncode == 0, done.stderr
        shown = done.stdout.decode()
        assert f"? permission {request['id']} for Write a.txt" in shown
        assert f"permission {request['id']}: selected yes" in shown
        assert HINT not in shown


async def test_log_prints_the_hint_for_a_request_still_pending(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[REQUEST]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            listed = await c.until("permission.list", {"session": session_id}, requested)
            [request] = listed["permissions"]
            logged = await mimirctl(dirs, "log", session_id)
            await c.call("permission.respond", {"permission": request["id"], "kind": "allow_once"})
    assert logged.returncode == 0, logged.stderr
    assert f"{HINT} {request['id']}" in logged.stdout.decode()
