"""mimird driven by a random hostile agent: a seeded walk of turns, each a random
script of ACP messages the agent sends (updates of any shape, requests for files and
terminals with hostile paths, lines that are not JSON-RPC, lone surrogates, huge
texts, odd usage and stop reasons).

After every turn: mimird is up and answers (no internal error), the turn ended, the
session's journal and diff read, nothing outside the workspace changed; at the end
``mimirctl log`` and ``attach`` show the whole history, without a traceback and
without a raw control character. Found, when first run: mimirctl crashing on an
update whose content was a list, and an update with a lone surrogate lost whole."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.mimirctl.test_mimirctl_terminal_injection import raw_controls
from tests.support.agents import Client, agent_world
from tests.support.helpers import DaemonDirs, git, run_mimirctl

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TURNS = 25
UPDATE_KINDS = (
    "agent_message_chunk",
    "agent_thought_chunk",
    "user_message_chunk",
    "tool_call",
    "tool_call_update",
    "plan",
    "available_commands_update",
    "current_mode_update",
    "usage_update",
    "bogus",
    None,
    5,
)
METHODS = (
    "fs/read_text_file",
    "fs/write_text_file",
    "terminal/create",
    "terminal/output",
    "terminal/wait_for_exit",
    "terminal/kill",
    "terminal/release",
    "session/request_permission",
    "initialize",
    "bogus/method",
)


class _Agent:
    """The hostile agent's choices, from one seed."""

    def __init__(self, seed: int, canary: Path) -> None:
        self.rng = random.Random(seed)
        self.canary = canary

    def text(self) -> str:
        rng = self.rng
        k = rng.random()
        if k < 0.3:
            return rng.choice(["", "a", "hello", "file.txt"])
        if k < 0.55:
            pieces = ["\x1b[31m", "\x1b]0;pwn\x07", "\x00", "\r", "\u202e", "\x9b", "é", "😀"]
            return "".join(rng.choice([*pieces, "\ud800", "\udfff", "x"]) for _ in range(9))
        if k < 0.6:
            return "A" * rng.choice([1000, 70_000])
        return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 30)))

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        k = rng.random()
        if depth > 2 or k < 0.3:
            return rng.choice([None, True, 0, -1, 2**63, 10**30, 1.5, 1e308, self.text()])
        if k < 0.6:
            return [self.value(depth + 1) for _ in range(rng.randint(0, 3))]
        keys = ["text", "type", "content", "path", "title", "status", self.text()]
        return {rng.choice(keys): self.value(depth + 1) for _ in range(rng.randint(0, 3))}

    def path(self) -> Any:
        canary = str(self.canary)
        return self.rng.choice(
            [
                "notes.txt",
                "sub/x.txt",
                "../outside.txt",
                "/etc/passwd",
                f"{canary}/secret.txt",
                f"{canary}/new.txt",
                "link/escape.txt",  # a symlink to the canary, committed in the project
                "\x00x",
                ".git/config",
                "a" * 5000,
                self.text(),
                None,
                5,
            ]
        )

    def update(self) -> dict[str, Any]:
        rng = self.rng
        update: dict[str, Any] = {"sessionUpdate": rng.choice(UPDATE_KINDS)}
        if rng.random() < 0.7:
            update["content"] = rng.choice(
                [{"type": "text", "text": self.text()}, self.value(), [self.value()]]
            )
        for key in rng.sample(["toolCallId", "title", "status", "rawInput", "entries"], 2):
            update[key] = self.value()
        return {"do": "update", "update": update}

    def request(self) -> dict[str, Any]:
        rng = self.rng
        method = rng.choice(METHODS)
        params: dict[str, Any] = {"sessionId": rng.choice(["sess-1", "sess-1", "other"])}
        if method.startswith("fs/"):
            params["path"] = self.path()
            params["content"] = self.text()
            params["line"] = rng.choice([0, 1, -5, 10**12])
        elif method == "terminal/create":
            params["command"] = rng.choice(["sh", "echo", "/bin/true", self.text()])
            params["args"] = rng.choice(
                [
                    ["-c", "printf '\\033]0;t\\007'; yes | head -c 300000"],
                    ["-c", f"touch {self.canary}/t"],
                    ["-c", "touch \"$(printf 'bad\\377name')\""],
                    [self.value()],
                    self.value(),
                ]
            )
            params["cwd"] = self.path()
            params["outputByteLimit"] = rng.choice([0, 10, -1, 10**15])
        elif method.startswith("terminal/"):
            params["terminalId"] = self.value()
        elif method == "session/request_permission":
            params["toolCall"] = self.value()
            params["options"] = rng.choice(
                [[{"optionId": "y", "name": self.text(), "kind": "allow_once"}], [7], []]
            )
        return {"do": "request", "method": method, "params": params, "wait": False}

    def raw(self) -> dict[str, Any]:
        update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text"}}
        line = self.rng.choice(
            [
                "not json",
                "[]",
                '{"jsonrpc":"2.0","id":999999,"result":{}}',
                '{"jsonrpc":"2.0","method":"session/update","params":NaN}',
                json.dumps({"jsonrpc": "2.0", "method": self.text(), "params": self.value()}),
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "session/update",
                        "params": {"sessionId": "sess-1", "update": update},
                    }
                ),
                "[" * 5000 + "]" * 5000,
            ]
        )
        return {"do": "raw", "line": line}

    def script(self) -> list[dict[str, Any]]:
        rng = self.rng
        steps: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 15)):
            k = rng.random()
            if k < 0.35:
                steps.append(self.update())
            elif k < 0.65:
                steps.append(self.request())
            elif k < 0.8:
                steps.append(self.raw())
            elif k < 0.87:
                usage = {"inputTokens": self.value(), "totalTokens": rng.choice([-5, 10**20, 3])}
                steps.append({"do": "result", "value": {"usage": usage, "_meta": self.value()}})
            elif k < 0.92:
                steps.append({"do": "stop_reason", "value": self.text()})
            else:
                steps.append({"do": "chunks", "count": rng.randint(1, 500), "text": "w"})
        return steps


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_random_hostile_agent_never_breaks_mimird_or_mimirctl(
    dirs: DaemonDirs, tmp_path: Path, seed: int
) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "secret.txt").write_text("secret\n")
    before = files_of(canary)
    agent = _Agent(seed, canary)
    async with (
        agent_world(dirs, {"prompts": [[{"do": "script"}]] * (TURNS + 5)}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        (world.repo / "link").symlink_to(canary)
        git(world.repo, "add", "link")
        git(world.repo, "commit", "-qm", "a link out of the project")
        session = await c.call("session.create", {"project": world.project})
        session_id = session["id"]
        for turn in range(TURNS):
            text = json.dumps(agent.script())
            with trio.fail_after(60):
                answer = await c.call_raw("session.prompt", {"session": session_id, "text": text})
            assert answer.get("error", {}).get("code") != -32603, (turn, answer, text[:2000])
            got = await c.call("session.get", {"session": session_id})
            assert got["status"] not in ("running", "awaiting_permission"), (turn, text[:2000])
            if got["status"] in ("failed", "stopped", "interrupted"):
                await c.call("session.resume", {"session": session_id})
            await c.call("session.diff", {"session": session_id, "patch": True})
            events = await c.call("session.events", {"session": session_id, "limit": 1000})
            assert events["events"], turn
            assert files_of(canary) == before, (turn, text[:2000])
            await c.call("daemon.status", {})
        for args in (("log", session_id), ("attach", session_id, "--all")):
            done = await trio.to_thread.run_sync(functools.partial(run_mimirctl, dirs, *args))
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr
            assert raw_controls(done.stdout) == [], done.stdout[-2000:]
