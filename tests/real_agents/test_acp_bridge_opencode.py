"""An editor-style ACP client drives real opencode through ``mimirctl acp``: the
bridge under the editor, the real daemon behind it, opencode behind that, and the
fake LLM behind opencode. A text turn whose streamed reply reaches the editor, then
a turn in which opencode asks permission (the editor answers) and writes a file
into the project, in place. Every message the bridge sends is checked against the
ACP v1 schema (tests/support/acp_client.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.real_agents.opencode_env import OpencodeHome
from tests.support.acp_client import AcpClient, text_of
from tests.support.fake_llm import FakeLlm, Text, ToolCall
from tests.support.helpers import DaemonDirs, daemon_process, make_repo, rpc

pytestmark = pytest.mark.agents

TURN_TIMEOUT_S = 180.0


def _config(dirs: DaemonDirs, opencode_bin: Path, home: OpencodeHome) -> None:
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in home.layered_env().items())
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(
        "[defaults]\n"
        'agent = "opencode"\n\n'
        "[agents.opencode]\n"
        f"command = {json.dumps(str(opencode_bin))}\n"
        'args = ["acp"]\n'
        f"env = {{ {env} }}\n"
    )


def test_an_editor_drives_opencode_through_mimirctl_acp(
    dirs: DaemonDirs, opencode_bin: Path, fake_llm: FakeLlm, opencode_home: OpencodeHome
) -> None:
    _config(dirs, opencode_bin, opencode_home)
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs), AcpClient.start(dirs, "--agent", "opencode") as editor:
        init = editor.call(
            "initialize",
            {
                "protocolVersion": 1,
                "clientCapabilities": {"fs": {"readTextFile": False, "writeTextFile": False}},
                "clientInfo": {"name": "test-editor", "version": "1"},
            },
        )
        assert init["agentInfo"]["title"] == "Mimir (opencode)"
        session_id = editor.call("session/new", {"cwd": str(repo), "mcpServers": []})["sessionId"]

        fake_llm.script(Text("Hello through the bridge, streamed in pieces.", chunks=5))
        result = editor.call(
            "session/prompt",
            {"sessionId": session_id, "prompt": [{"type": "text", "text": "say hello"}]},
            timeout=TURN_TIMEOUT_S,
        )
        assert result["stopReason"] == "end_turn"
        said = "".join(text_of(list(editor.updates(session_id)), "agent_message_chunk"))
        assert "Hello through the bridge, streamed in pieces." in said

        target = repo / "notes" / "hello.txt"
        fake_llm.script(
            ToolCall("write", {"filePath": str(target), "content": "written by opencode\n"}),
            Text("The file is written."),
        )
        asking = editor.send(
            "session/prompt",
            {"sessionId": session_id, "prompt": [{"type": "text", "text": "write the file"}]},
        )
        request = editor.wait_for(
            lambda m: m.get("method") == "session/request_permission", timeout=TURN_TIMEOUT_S
        )
        options = request["params"]["options"]
        allow = next(o["optionId"] for o in options if o["kind"] == "allow_once")
        editor.answer(request["id"], {"outcome": {"outcome": "selected", "optionId": allow}})
        assert editor.result(asking, timeout=TURN_TIMEOUT_S)["stopReason"] == "end_turn"
        assert target.read_text() == "written by opencode\n"
        said = "".join(text_of(list(editor.updates(session_id)), "agent_message_chunk"))
        assert "The file is written." in said

        # The session is Mimir's: in the journal, its agent still up after the editor.
        assert editor.close_stdin() == 0
        session = rpc(dirs, "session.get", {"session": session_id})
        assert session["status"] == "idle"
        assert session["workspace"]["kind"] == "in_place"
