"""``mimirctl acp`` driven by a random editor: a seeded walk of a few hundred messages
of every kind an editor sends (initialize with and without fs and terminal, new,
load, prompt, cancel, mode and model, answers to the bridge's own requests, right
and wrong) and of what it must not (junk, wrong types, unknown methods and ids),
while the fake agent streams, asks permission, reads and writes files, runs
terminals, hangs and crashes. Whatever comes, the bridge stays up until its stdin
ends, then exits 0; it writes no traceback; every message it sends is ACP v1; it
answers no request twice; and mimird is still there."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, Final

import pytest

from tests.mimirctl.acp_world import INIT, World, chunk, permission, script, world
from tests.support.acp_client import CHECKS

__all__ = ["world"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MESSAGES: Final = 250
TEXTS: Final = ["", "x", "../..", "/", "/etc", "sess-1", "\x1b[31m", "a" * 5000, "😀", "null"]
KEYS: Final = ["sessionId", "cwd", "prompt", "modeId", "modelId", "content", "terminalId"]


class _Walk:
    """The random editor's choices, from one seed."""

    def __init__(self, seed: int, world: World) -> None:
        self.rng = random.Random(seed)
        self.world = world

    def junk(self, depth: int = 0) -> Any:
        kind = self.rng.randrange(8 if depth < 3 else 5)
        if kind == 0:
            return None
        if kind == 1:
            return True
        if kind == 2:
            return self.rng.randint(-(2**63), 2**64)
        if kind == 4:
            return 1.5
        if kind == 5:
            return [self.junk(depth + 1) for _ in range(self.rng.randrange(3))]
        if kind == 6:
            keys = TEXTS + KEYS
            return {
                self.rng.choice(keys): self.junk(depth + 1) for _ in range(self.rng.randrange(3))
            }
        return self.rng.choice(TEXTS)

    def steps(self) -> list[dict[str, Any]]:
        repo = self.world.repo

        def agent_asks(method: str, **params: Any) -> dict[str, Any]:
            return {"do": "request", "method": method, "params": {"sessionId": "s", **params}}

        return self.rng.choice(
            [
                [chunk("hi")],
                [permission("w")],
                [{"do": "hang"}],
                [chunk("a"), {"do": "crash", "exit_code": 3}],
                [{"do": "update", "update": self.junk()}],
                [{"do": "chunks", "count": 500, "text": "word "}],
                [agent_asks("fs/read_text_file", path=str(repo / "README.md"))],
                [agent_asks("fs/write_text_file", path=str(repo / "x.txt"), content="hi")],
                [agent_asks("fs/read_text_file", path="/etc/passwd")],
                [agent_asks("terminal/create", command="echo", args=["hi"])],
            ]
        )

    def message(self, number: int, sessions: list[str], asked: list[Any]) -> Any:
        rng = self.rng
        session = rng.choice(sessions) if sessions and rng.random() < 0.8 else rng.choice(TEXTS)
        pick = rng.random()
        if pick < 0.1:
            fs = {"readTextFile": rng.random() < 0.7, "writeTextFile": rng.random() < 0.7}
            capabilities = {"fs": fs, "terminal": rng.random() < 0.5}
            params = {**INIT, "clientCapabilities": capabilities}
            return _request(number, "initialize", params if rng.random() < 0.8 else self.junk())
        if pick < 0.25:
            cwd = str(self.world.repo) if rng.random() < 0.7 else rng.choice(TEXTS)
            return _request(number, "session/new", {"cwd": cwd, "mcpServers": []})
        if pick < 0.45:
            prompt = script(*self.steps()) if rng.random() < 0.8 else self.junk()
            return _request(number, "session/prompt", {"sessionId": session, "prompt": prompt})
        if pick < 0.5:
            return {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session}}
        if pick < 0.55:
            params = {"sessionId": session, "cwd": str(self.world.repo), "mcpServers": []}
            return _request(number, "session/load", params)
        if pick < 0.6:
            method = rng.choice(
                ["session/set_mode", "session/set_model", "session/list", "authenticate", "x/y"]
            )
            params = {"sessionId": session, "modeId": self.junk(), "modelId": self.junk()}
            return _request(number, method, params)
        if pick < 0.72:
            request_id = rng.choice(asked) if asked else self.junk()
            if rng.random() < 0.2:
                error = rng.choice([{"code": -32002, "message": "no"}, self.junk()])
                return {"jsonrpc": "2.0", "id": request_id, "error": error}
            result = rng.choice(
                [
                    {"outcome": {"outcome": "selected", "optionId": "yes"}},
                    {"outcome": {"outcome": "cancelled"}},
                    {"content": "file text"},
                    {"terminalId": self.junk()},
                    None,
                    self.junk(),
                ]
            )
            return {"jsonrpc": "2.0", "id": request_id, "result": result}
        if pick < 0.77:
            return {
                "jsonrpc": "2.0",
                "method": "$/cancel_request",
                "params": {"requestId": rng.randint(0, number)},
            }
        if pick < 0.87:
            return self.junk()
        return {"jsonrpc": "2.0", "id": self.junk(), "method": self.junk(), "params": self.junk()}


def _request(number: int, method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": number, "method": method, "params": params}


@pytest.mark.parametrize("seed", [1, 2])
def test_a_random_editor_never_brings_the_bridge_down(world: World, seed: int) -> None:
    walk = _Walk(seed, world)
    bridge = subprocess.Popen(
        [sys.executable, "-m", "mimirctl", "acp", "--agent", "fake"],
        env=world.dirs.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert bridge.stdin is not None
    assert bridge.stdout is not None
    stdout = bridge.stdout
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
    reader.start()
    methods: dict[Any, str] = {}
    try:
        for number in range(1, MESSAGES + 1):
            sent = [json.loads(line) for line in list(lines)]
            sessions = [
                m["result"]["sessionId"]
                for m in sent
                if isinstance(m.get("result"), dict) and "sessionId" in m["result"]
            ]
            asked = [m["id"] for m in sent if "method" in m and "id" in m]
            message = walk.message(number, sessions, asked)
            if isinstance(message, dict) and "method" in message and "id" in message:
                methods[number] = message["method"]
            bridge.stdin.write(json.dumps(message).encode() + b"\n")
            bridge.stdin.flush()
            if walk.rng.random() < 0.3:
                time.sleep(0.02)
        time.sleep(1)
        assert bridge.poll() is None, "the bridge ended before its stdin did"
        bridge.stdin.close()
        assert bridge.wait(60) == 0
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait(30)
    reader.join(30)
    assert bridge.stderr is not None
    errors = bridge.stderr.read().decode(errors="replace")
    bridge.stderr.close()
    stdout.close()
    assert "Traceback" not in errors, errors[-3000:]
    answers: Counter[int] = Counter()
    for line in lines:
        message = json.loads(line)
        method = None
        if "method" not in message:
            method = methods.get(message.get("id"))
            if method is not None:
                answers[message["id"]] += 1
        for check in CHECKS:
            check(message, method)
    assert not [number for number, count in answers.items() if count > 1]
    assert world.rpc("daemon.status")["pid"] == world.daemon.proc.pid
