"""What the tests of ``mimirctl acp`` share: a real mimird (a subprocess) whose
``fake`` agent kind plays the scripted fake ACP agent, each prompt's text being the
steps it plays (``{"do": "script"}``), a git repository to work in, and the
editor-style client of :mod:`tests.support.acp_client`."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.acp_client import AcpClient
from tests.support.agents import write_config
from tests.support.helpers import DaemonDirs, DaemonProcess, daemon_process, make_repo, rpc

#: Every prompt's text is the steps the fake agent plays.
SCENARIO: Final = {"prompts": [[{"do": "script"}]] * 50}
INIT: Final = {
    "protocolVersion": 1,
    "clientCapabilities": {"fs": {"readTextFile": False, "writeTextFile": False}},
    "clientInfo": {"name": "test-editor", "version": "1"},
}
PERMISSION: Final[dict[str, Any]] = {
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


def permission(title: str) -> dict[str, Any]:
    """A permission request of the fake agent, for a tool call titled ``title``."""
    params = {**PERMISSION["params"], "toolCall": {"toolCallId": title, "title": title}}
    return {**PERMISSION, "params": params}


def is_permission(message: dict[str, Any]) -> bool:
    return message.get("method") == "session/request_permission"


SELECTED_YES: Final = {"outcome": {"outcome": "selected", "optionId": "yes"}}


def chunk(text: str) -> dict[str, Any]:
    return {
        "do": "update",
        "update": {
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": text},
        },
    }


def script(*steps: dict[str, Any]) -> list[dict[str, Any]]:
    """A prompt whose text makes the fake agent play ``steps``."""
    return [{"type": "text", "text": json.dumps(list(steps))}]


@dataclass
class World:
    dirs: DaemonDirs
    daemon: DaemonProcess
    repo: Path

    def editor(self, *args: str) -> AcpClient:
        return AcpClient.start(self.dirs, "--agent", "fake", *args)

    def rpc(self, method: str, params: Any = None) -> Any:
        return rpc(self.dirs, method, params)

    def wait_status(self, session_id: str, status: str, timeout: float = 30) -> None:
        """Wait until the session has ``status`` (polled; fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.rpc("session.get", {"session": session_id})["status"] != status:
            assert time.monotonic() < deadline, f"session never became {status}"
            time.sleep(0.05)

    def events(self, session_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.rpc(
            "session.events", {"session": session_id, "limit": 1000}
        )["events"]
        return found


@contextlib.contextmanager
def make_world(dirs: DaemonDirs, scenario: dict[str, Any]) -> Iterator[World]:
    """A running mimird whose fake agent plays ``scenario``, and a repository."""
    write_config(dirs, scenario)
    (dirs.root / "home").mkdir(parents=True, exist_ok=True)
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs) as daemon:
        yield World(dirs, daemon, repo)


@pytest.fixture
def world(dirs: DaemonDirs) -> Iterator[World]:
    with make_world(dirs, SCENARIO) as made:
        yield made


def started(editor: AcpClient, world: World) -> str:
    """Initialize, and a new session in the world's repository: its id."""
    editor.call("initialize", INIT)
    session = editor.call("session/new", {"cwd": str(world.repo), "mcpServers": []})
    session_id: str = session["sessionId"]
    return session_id
