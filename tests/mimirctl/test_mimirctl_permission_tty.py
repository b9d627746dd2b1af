"""``mimirctl prompt`` and ``attach`` on a terminal ask how to answer permission
requests: mimirctl runs on a real pseudo-terminal, against a real daemon whose
agent is the scripted fake ACP agent."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, Final

import trio

from tests.support.agents import AgentWorld, Client, agent_world, new_session, received
from tests.support.helpers import DaemonDirs

QUESTION: Final = "Enter to leave it for later: "
TURN_ENDED: Final = "[turn ended: end_turn]"
REQUEST: Final = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [
            {"optionId": "yes", "name": "Allow once", "kind": "allow_once"},
            {"optionId": "always", "name": "Allow always", "kind": "allow_always"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ],
    },
}
#: A turn that asks once, then says "after0".
ASKS: Final = {
    "prompts": [[{"do": "chunks", "text": "before"}, REQUEST, {"do": "chunks", "text": "after"}]]
}


class Terminal:
    """A mimirctl command on a pseudo-terminal: what it showed, and a keyboard."""

    def __init__(self, process: trio.Process, master: int) -> None:
        self.process = process
        self.master = master
        self._output = bytearray()
        self.closed = False

    @classmethod
    @contextlib.asynccontextmanager
    async def run(cls, dirs: DaemonDirs, *args: str) -> AsyncIterator[Terminal]:
        master, slave = os.openpty()
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "mimirctl", *args],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dirs.env(),
                start_new_session=True,
            )
        finally:
            os.close(slave)
        try:
            yield cls(process, master)
        finally:
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(10, shield=True):
                await process.wait()
            os.close(master)

    @property
    def screen(self) -> str:
        """Everything shown so far, the terminal's \\r\\n as \\n."""
        return self._output.decode(errors="replace").replace("\r\n", "\n")

    async def _read(self) -> None:
        await trio.lowlevel.wait_readable(self.master)
        try:
            data = os.read(self.master, 1 << 16)
        except OSError as exc:  # EIO: every slave end is closed, the command is gone
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.closed = True
        self._output += data

    async def expect(self, text: str, count: int = 1, wait_s: float = 15) -> str:
        """The screen, once ``text`` shows ``count`` times on it."""
        with trio.move_on_after(wait_s):
            while self.screen.count(text) < count and not self.closed:
                await self._read()
        assert self.screen.count(text) >= count, f"{text!r} never showed:\n{self.screen}"
        return self.screen

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def exit_code(self, wait_s: float = 15) -> int:
        """Reads the rest of the screen, then waits for the command to exit; fails
        showing the screen if it does not within ``wait_s``."""
        with trio.move_on_after(wait_s):
            while not self.closed:
                await self._read()
            return await self.process.wait()
        raise AssertionError(
            f"mimirctl (pid {self.process.pid}) did not exit within {wait_s:g} s; "
            f"its screen:\n{self.screen}"
        )


async def pending(client: Client, session_id: str) -> list[dict[str, Any]]:
    result = await client.call("permission.list", {"session": session_id})
    permissions: list[dict[str, Any]] = result["permissions"]
    return permissions


def answers(world: AgentWorld) -> list[Any]:
    """What the agent got back for its permission requests."""
    return [
        m["result"]["outcome"]
        for m in received(world)
        if "method" not in m and isinstance(m.get("result"), dict) and "outcome" in m["result"]
    ]


async def test_the_option_typed_on_the_terminal_answers_the_request(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, ASKS) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with Terminal.run(dirs, "prompt", session_id, "write it") as term:
            screen = await term.expect(QUESTION)
            assert "for Write a.txt" in screen
            assert "[1] Allow once  [2] Allow always  [3] Reject" in screen
            assert "answer: mimirctl permission" not in screen
            term.type("2\n")
            screen = await term.expect(TURN_ENDED)
            assert await term.exit_code() == 0
        assert answers(world) == [{"outcome": "selected", "optionId": "always"}]
        assert "selected always (by client pid" in screen
        assert screen.index("before0") < screen.index(QUESTION) < screen.index("after0")


async def test_an_answer_that_is_no_option_is_asked_again(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, ASKS) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with Terminal.run(dirs, "prompt", session_id, "write it") as term:
            await term.expect(QUESTION)
            term.type("4\n")
            await term.expect(QUESTION, count=2)
            term.type("yes\n")
            await term.expect(QUESTION, count=3)
            assert await pending(c, session_id)
            term.type("3\n")
            await term.expect(TURN_ENDED)
            assert await term.exit_code() == 0
        assert answers(world) == [{"outcome": "selected", "optionId": "no"}]


async def test_an_empty_answer_leaves_the_request_to_another_client(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, ASKS) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with Terminal.run(dirs, "prompt", session_id, "write it") as term:
            await term.expect(QUESTION)
            term.type("\n")
            screen = await term.expect("left unanswered: mimirctl permission allow")
            [request] = await pending(c, session_id)
            assert f"mimirctl permission allow {request['id']}" in screen
            allow = await trio.run_process(
                [sys.executable, "-m", "mimirctl", "permission", "allow", request["id"]],
                env=dirs.env(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert allow.returncode == 0, allow.stderr
            screen = await term.expect(TURN_ENDED)
            assert await term.exit_code() == 0
        assert answers(world) == [{"outcome": "selected", "optionId": "yes"}]
        assert "after0" in screen


async def test_end_of_input_leaves_the_request_and_asks_no_more(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[REQUEST, REQUEST]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with Terminal.run(dirs, "prompt", session_id, "write it") as term:
            await term.expect(QUESTION)
            term.type("\x04")  # Ctrl-D
            await term.expect("left unanswered: mimirctl permission allow")
            for _ in range(2):
                listed = await c.until("permission.list", {}, lambda r: r["permissions"])
                [request] = listed["permissions"]
                await c.call(
                    "permission.respond", {"permission": request["id"], "kind": "allow_once"}
                )
                await c.until("permission.list", {}, lambda r: not r["permissions"])
            screen = await term.expect(TURN_ENDED)
            assert await term.exit_code() == 0
        assert screen.count(QUESTION) == 1
        assert screen.count("answer: mimirctl permission allow") == 1  # the second request
        assert answers(world) == [{"outcome": "selected", "optionId": "yes"}] * 2


async def test_a_request_answered_elsewhere_is_no_longer_asked(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, ASKS) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with Terminal.run(dirs, "prompt", session_id, "write it") as term:
            await term.expect(QUESTION)
            [request] = await pending(c, session_id)
            await c.call("permission.respond", {"permission": request["id"], "kind": "reject_once"})
            screen = await term.expect(TURN_ENDED)
            assert f"permission {request['id']} was answered meanwhile" in screen
            assert await term.exit_code() == 0  # nothing typed
        assert answers(world) == [{"outcome": "selected", "optionId": "no"}]


async def test_ctrl_c_while_asking_cancels_the_turn(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[REQUEST, {"do": "stop_reason", "value": "cancelled"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with Terminal.run(dirs, "prompt", session_id, "write it") as term:
            await term.expect(QUESTION)
            term.process.send_signal(signal.SIGINT)
            screen = await term.expect("[turn ended: cancelled]")
            assert "cancelling the turn" in screen
            assert await term.exit_code() == 130
        assert answers(world) == [{"outcome": "cancelled"}]


async def test_no_ask_only_prints_how_to_answer(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, ASKS) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with Terminal.run(dirs, "prompt", session_id, "write it", "--no-ask") as term:
            screen = await term.expect("answer: mimirctl permission allow")
            [request] = await pending(c, session_id)
            await c.call("permission.respond", {"permission": request["id"], "kind": "allow_once"})
            screen = await term.expect(TURN_ENDED)
            assert await term.exit_code() == 0
        assert QUESTION not in screen
        assert answers(world) == [{"outcome": "selected", "optionId": "yes"}]
        # The history shows the request and its answer, not how to answer it.
        history = await trio.run_process(
            [sys.executable, "-m", "mimirctl", "log", session_id],
            env=dirs.env(),
            capture_stdout=True,
        )
        shown = history.stdout.decode()
        assert f"? permission {request['id']} for Write a.txt" in shown
        assert f"permission {request['id']}: selected yes" in shown
        assert "answer: mimirctl permission allow" not in shown


async def test_without_a_terminal_prompt_only_prints_how_to_answer(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, ASKS) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        done: list[subprocess.CompletedProcess[bytes]] = []

        async def prompt() -> None:
            done.append(
                await trio.run_process(
                    [sys.executable, "-m", "mimirctl", "prompt", session_id, "write it"],
                    env=dirs.env(),
                    stdin=subprocess.DEVNULL,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            )

        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(prompt)
                listed = await c.until("permission.list", {}, lambda r: r["permissions"])
                [request] = listed["permissions"]
                await c.call(
                    "permission.respond", {"permission": request["id"], "kind": "allow_once"}
                )
        assert done[0].returncode == 0, done[0].stderr
        stdout = done[0].stdout.decode()
        assert f"answer: mimirctl permission allow {request['id']}" in stdout
        assert QUESTION not in stdout
        assert TURN_ENDED in stdout


async def test_ctrl_c_while_asking_ends_attach_and_leaves_the_request(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, ASKS) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            await c.until("permission.list", {}, lambda r: r["permissions"])
            async with Terminal.run(dirs, "attach", session_id) as term:
                await term.expect(QUESTION)
                term.process.send_signal(signal.SIGINT)
                assert await term.exit_code() == 0
            [request] = await pending(c, session_id)
            await c.call("permission.respond", {"permission": request["id"], "kind": "allow_once"})
        assert answers(world) == [{"outcome": "selected", "optionId": "yes"}]


async def test_attach_asks_and_does_not_ask_again_when_it_replays(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, ASKS) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            await c.until("permission.list", {}, lambda r: r["permissions"])
            async with Terminal.run(dirs, "attach", session_id) as term:
                await term.expect(QUESTION)
                term.type("1\n")
                await term.expect(TURN_ENDED)
                assert await term.exit_code() == 0  # the turn is over: the agent is at rest
        assert answers(world) == [{"outcome": "selected", "optionId": "yes"}]
        await c.call("session.stop", {"session": session_id})
        async with Terminal.run(dirs, "attach", session_id) as term:
            assert await term.exit_code() == 0  # it replays the turn and ends
            screen = term.screen
        assert "? permission" in screen
        assert "selected yes (by client pid" in screen
        assert QUESTION not in screen
        assert "answer: mimirctl permission" not in screen
