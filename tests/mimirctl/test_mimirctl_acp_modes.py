"""``session/set_mode``, ``session/set_model`` and ``session/set_config_option``
through ``mimirctl acp``: relayed to mimird's ``session.set_mode``/``set_model``,
which tell the agent (and journal it); a config option other than the model and
the mode is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mimirctl.acp_world import INIT, SCENARIO, World, make_world, script, started
from tests.support.acp_client import AcpFailed
from tests.support.helpers import DaemonDirs


def _calls(record: Path, method: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    return [m["params"] for m in lines if m.get("method") == method]


@pytest.fixture
def legacy(dirs: DaemonDirs) -> Iterator[World]:
    scenario = {
        **SCENARIO,
        "record": str(dirs.root / "record.jsonl"),
        "models": ["m1", "m2"],
        "modes": ["ask", "code"],
    }
    with make_world(dirs, scenario) as made:
        yield made


@pytest.fixture
def options(dirs: DaemonDirs) -> Iterator[World]:
    scenario = {
        **SCENARIO,
        "record": str(dirs.root / "record.jsonl"),
        "models": ["m1", "m2"],
        "modes": ["ask", "code"],
        "config_options": True,
    }
    with make_world(dirs, scenario) as made:
        yield made


def test_set_mode_and_model_are_relayed(legacy: World) -> None:
    record = legacy.dirs.root / "record.jsonl"
    with legacy.editor() as editor:
        editor.call("initialize", INIT)
        new = editor.call("session/new", {"cwd": str(legacy.repo), "mcpServers": []})
        session_id = new["sessionId"]
        # The agent was started for the answer: its modes (and legacy models) are in it.
        assert new["modes"]["currentModeId"] == "ask"
        assert [m["id"] for m in new["modes"]["availableModes"]] == ["ask", "code"]
        assert new["models"]["currentModelId"] == "m1"
        assert editor.call("session/set_mode", {"sessionId": session_id, "modeId": "code"}) == {}
        assert editor.call("session/set_model", {"sessionId": session_id, "modelId": "m2"}) == {}
        with pytest.raises(AcpFailed) as refused:
            editor.call("session/set_mode", {"sessionId": session_id, "modeId": "nope"})
        assert refused.value.code == -32602
    assert [p["modeId"] for p in _calls(record, "session/set_mode")] == ["code"]
    assert [p["modelId"] for p in _calls(record, "session/set_model")] == ["m2"]


def test_set_config_option_for_model_and_mode_only(options: World) -> None:
    record = options.dirs.root / "record.jsonl"
    with options.editor() as editor:
        session_id = started(editor, options)
        editor.call("session/prompt", {"sessionId": session_id, "prompt": script()})
        result = editor.call(
            "session/set_config_option",
            {"sessionId": session_id, "configId": "mode", "value": "code"},
        )
        current = {o["id"]: o["currentValue"] for o in result["configOptions"]}
        assert current["mode"] == "code"
        with pytest.raises(AcpFailed) as refused:
            editor.call(
                "session/set_config_option",
                {"sessionId": session_id, "configId": "effort", "value": "high"},
            )
        assert refused.value.code == -32602
        assert "model and mode" in str(refused.value.message)
        loaded = editor.call(
            "session/load",
            {"sessionId": session_id, "cwd": str(options.repo), "mcpServers": []},
        )
        assert {o["id"] for o in loaded["configOptions"]} == {"model", "mode"}
    assert [p["value"] for p in _calls(record, "session/set_config_option")] == ["code"]


def test_mcp_servers_reach_the_agent_and_their_secrets_stay_hidden(options: World) -> None:
    record = options.dirs.root / "record.jsonl"
    servers = [
        {
            "name": "files",
            "command": "/usr/bin/mcp-files",
            "args": ["--root", "/tmp"],
            "env": [{"name": "FILES_TOKEN", "value": "tok-files-123456"}],
        },
        {
            "type": "http",
            "name": "tracker",
            "url": "https://mcp.example.invalid/mcp",
            "headers": [{"name": "Authorization", "value": "Bearer tok-http-654321"}],
        },
    ]
    with options.editor() as editor:
        editor.call("initialize", INIT)
        new = editor.call("session/new", {"cwd": str(options.repo), "mcpServers": servers})
        session_id = new["sessionId"]
        # The agent echoes a secret: it is journaled masked.
        leak = {
            "do": "update",
            "update": {
                "sessionUpdate": "agent_message_chunk",
                "content": {"type": "text", "text": "token tok-files-123456"},
            },
        }
        editor.call("session/prompt", {"sessionId": session_id, "prompt": script(leak)})
        with pytest.raises(AcpFailed) as refused:
            editor.call(
                "session/new",
                {"cwd": str(options.repo), "mcpServers": [{**servers[0], "command": "mcp-files"}]},
            )
        assert refused.value.code == -32602
        assert "mcp_servers[0].command" in str(refused.value.message)

    assert _calls(record, "session/new")[0]["mcpServers"] == servers
    stored = options.rpc("session.get", {"session": session_id})["config"]["mcp_servers"]
    assert stored[0]["env"] == [{"name": "FILES_TOKEN", "value": "***"}]
    assert stored[1]["headers"] == [{"name": "Authorization", "value": "***"}]
    journal = json.dumps(options.events(session_id))
    assert "tok-files-123456" not in journal
    assert "tok-http-654321" not in journal
