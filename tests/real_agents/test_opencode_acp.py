"""The real opencode (`opencode acp`, pinned in .ci/agents) driven over ACP by
mimird.agents.acp.AcpConnection, with a fake LLM server standing in for the model."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from mimird.agents.acp import INVALID_PARAMS, AcpConnection, AcpError, MethodNotFound
from mimird.processes import group_alive, stop_group
from tests.real_agents.opencode_env import OpencodeHome
from tests.support.fake_llm import FakeLlm, Text, ToolCall

pytestmark = pytest.mark.agents

#: Measured on two cores (opencode 1.18.33): initialize 1.3-2 s, session/new 0.8-1.6 s,
#: a turn 1.1-1.7 s, stop 0.1 s. The deadline leaves room for a loaded machine.
DEADLINE_S: Final = 90.0
STDERR_TAIL_CHARS: Final = 4000
CLIENT_CAPABILITIES: Final = {
    "fs": {"readTextFile": True, "writeTextFile": True},
    "terminal": False,
}
CLIENT_INFO: Final = {"name": "mimir-tests", "version": "0"}


@dataclass
class WorkspaceClient:
    """The client side of ACP for one workspace: records every update and request,
    allows once when asked, and serves fs requests inside the workspace only."""

    workspace: Path
    updates: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    protocol_errors: list[tuple[str, str]] = field(default_factory=list)
    #: Set once an fs/write_text_file request was handled, whatever its outcome.
    write_handled: trio.Event = field(default_factory=trio.Event)

    async def on_request(self, method: str, params: Any) -> Any:
        self.requests.append((method, params))
        if method == "session/request_permission":
            # Option ids differ between agents; kinds are the protocol.
            [allow] = [o for o in params["options"] if o["kind"] == "allow_once"]
            return {"outcome": {"outcome": "selected", "optionId": allow["optionId"]}}
        if method == "fs/write_text_file":
            try:
                path = trio.Path(self._inside(params["path"]))
                await path.parent.mkdir(parents=True, exist_ok=True)
                await path.write_text(params["content"])
            finally:
                self.write_handled.set()
            return None
        if method == "fs/read_text_file":
            path = trio.Path(self._inside(params["path"]))
            return {"content": await path.read_text() if await path.exists() else ""}
        raise MethodNotFound(method)

    async def on_notification(self, method: str, params: Any) -> None:
        if method == "session/update":
            self.updates.append(params["update"])

    async def on_protocol_error(self, line_preview: str, reason: str) -> None:
        self.protocol_errors.append((line_preview, reason))

    def _inside(self, path: str) -> Path:
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.workspace.resolve()):
            raise AcpError(INVALID_PARAMS, f"{path} is outside the workspace {self.workspace}")
        return resolved

    def kinds(self) -> list[str]:
        return [update["sessionUpdate"] for update in self.updates]

    def message_text(self) -> str:
        return "".join(
            update["content"]["text"]
            for update in self.updates
            if update["sessionUpdate"] == "agent_message_chunk"
            and update["content"]["type"] == "text"
        )

    def request_methods(self) -> list[str]:
        return [method for method, _ in self.requests]


@dataclass
class Opencode:
    connection: AcpConnection
    process: trio.Process
    client: WorkspaceClient
    stderr: Path
    timings: dict[str, float] = field(default_factory=dict)

    async def timed(self, name: str, method: str, params: Any) -> Any:
        started = trio.current_time()
        result = await self.connection.request(method, params)
        self.timings[name] = trio.current_time() - started
        return result

    async def start_session(self, cwd: Path) -> str:
        init = await self.timed(
            "initialize",
            "initialize",
            {
                "protocolVersion": 1,
                "clientCapabilities": CLIENT_CAPABILITIES,
                "clientInfo": CLIENT_INFO,
            },
        )
        assert init["protocolVersion"] == 1, init
        new = await self.timed("session/new", "session/new", {"cwd": str(cwd), "mcpServers": []})
        session_id: str = new["sessionId"]
        return session_id

    async def prompt(self, name: str, session_id: str, text: str) -> Any:
        prompt = [{"type": "text", "text": text}]
        return await self.timed(name, "session/prompt", {"sessionId": session_id, "prompt": prompt})

    def stderr_tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-STDERR_TAIL_CHARS:]


@contextlib.asynccontextmanager
async def running_opencode(
    opencode_bin: Path, home: OpencodeHome, workspace: Path, tmp_path: Path
) -> AsyncIterator[Opencode]:
    """`opencode acp` in its own process group, connected; stopped (group and all)
    when the block ends, whichever way it ends."""
    client = WorkspaceClient(workspace)
    stderr_path = tmp_path / "opencode.stderr"
    with stderr_path.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [str(opencode_bin), "acp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,  # a file: it never fills up, and tells what went wrong
            cwd=workspace,
            env=home.env(),
            start_new_session=True,
        )
    agent: Opencode | None = None
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        async with AcpConnection.open(process.stdout, process.stdin, client) as connection:
            agent = Opencode(connection, process, client, stderr_path)
            yield agent
    finally:
        stop_started = trio.current_time()
        exit_code = await stop_group(process)
        if agent is not None:
            agent.timings["stop"] = trio.current_time() - stop_started
            report = ", ".join(f"{k} {v:.2f}s" for k, v in agent.timings.items())
            print(f"opencode timings: {report} (exit code {exit_code})")
    assert not group_alive(process.pid), "opencode's process group outlived stop_group"


async def test_text_turn_streams_the_llm_text_and_ends_the_turn(
    opencode_bin: Path,
    opencode_home: OpencodeHome,
    fake_llm: FakeLlm,
    workspace: Path,
    tmp_path: Path,
) -> None:
    fake_llm.script(Text("Hello from the fake model, in pieces.", chunks=4))
    with trio.fail_after(DEADLINE_S):
        async with running_opencode(opencode_bin, opencode_home, workspace, tmp_path) as agent:
            session_id = await agent.start_session(workspace)
            result = await agent.prompt("text turn", session_id, "Say hello.")
            assert result["stopReason"] == "end_turn", agent.stderr_tail()
    client = agent.client
    assert client.message_text() == "Hello from the fake model, in pieces."
    assert client.kinds().count("agent_message_chunk") >= 2
    assert client.requests == []
    assert client.protocol_errors == []
    [main] = fake_llm.main_requests()
    assert main["stream"] is True
    assert any("Say hello." in str(message.get("content")) for message in main["messages"]), main[
        "messages"
    ]


async def test_write_tool_turn_asks_permission_and_writes_through_the_client(
    opencode_bin: Path,
    opencode_home: OpencodeHome,
    fake_llm: FakeLlm,
    workspace: Path,
    tmp_path: Path,
) -> None:
    target = workspace / "notes" / "hello.txt"
    content = "written by opencode through the client\n"
    fake_llm.script(
        ToolCall("write", {"filePath": str(target), "content": content}, call_id="call_w1"),
        Text("The file is written."),
    )
    with trio.fail_after(DEADLINE_S):
        async with running_opencode(opencode_bin, opencode_home, workspace, tmp_path) as agent:
            session_id = await agent.start_session(workspace)
            result = await agent.prompt("tool turn", session_id, "Write the notes file.")
            assert result["stopReason"] == "end_turn", agent.stderr_tail()
            # opencode sends fs/write_text_file without waiting for its answer.
            await agent.client.write_handled.wait()
    client = agent.client
    assert client.request_methods() == ["session/request_permission", "fs/write_text_file"]
    permission = client.requests[0][1]
    assert permission["sessionId"] == session_id
    assert {o["kind"] for o in permission["options"]} >= {"allow_once", "reject_once"}
    write = client.requests[1][1]
    assert write["sessionId"] == session_id
    assert Path(write["path"]) == target
    assert write["content"] == content
    assert target.read_text() == content
    assert "tool_call" in client.kinds()
    assert client.message_text().endswith("The file is written.")
    assert client.protocol_errors == []
    # The tool call was answered, and the answer came back to the model with its id.
    first, second = fake_llm.main_requests()
    assert not [m for m in first["messages"] if m.get("role") == "tool"]
    tool_results = [m for m in second["messages"] if m.get("role") == "tool"]
    assert [m["tool_call_id"] for m in tool_results] == ["call_w1"]
