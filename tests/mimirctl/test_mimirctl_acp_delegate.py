"""The agent's file and terminal requests go through the editor when it advertised
``fs``/``terminal`` (``mimirctl/acp/delegate.py``): ``mimirctl acp`` as a real
subprocess, a real mimird, the scripted fake agent making the requests, and an
editor-style test client that serves them from its "buffers"."""

from __future__ import annotations

import json
from typing import Any, Final

from tests.mimirctl.acp_world import INIT, World, script, world
from tests.support.acp_client import AcpClient
from tests.support.helpers import run_mimirctl

__all__ = ["world"]

SERVES: Final = {
    **INIT,
    "clientCapabilities": {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True},
}
BUFFER: Final = "unsaved text in the editor\n"


def fs_request(request_id: str, method: str, **params: Any) -> dict[str, Any]:
    return {
        "do": "request",
        "id": request_id,
        "method": method,
        "params": {"sessionId": "sess-1", **params},
    }


def asked(method: str) -> Any:
    return lambda m: m.get("method") == method and "id" in m


def started_serving(editor: AcpClient, world: World) -> str:
    editor.call("initialize", SERVES)
    session = editor.call("session/new", {"cwd": str(world.repo), "mcpServers": []})
    session_id: str = session["sessionId"]
    return session_id


def kinds_data(world: World, session_id: str, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in world.events(session_id) if e["kind"] == kind]


def test_the_agents_reads_and_writes_go_through_the_editors_buffers(world: World) -> None:
    (world.repo / "notes.txt").write_text("on disk\n")
    with world.editor() as editor:
        session_id = started_serving(editor, world)
        steps = script(
            fs_request("r1", "fs/read_text_file", path=str(world.repo / "notes.txt")),
            fs_request("w1", "fs/write_text_file", path="notes.txt", content="agent edit\n"),
        )
        prompt = editor.send("session/prompt", {"sessionId": session_id, "prompt": steps})
        read = editor.wait_for(asked("fs/read_text_file"))
        assert read["params"] == {"sessionId": session_id, "path": str(world.repo / "notes.txt")}
        editor.answer(read["id"], {"content": BUFFER})
        write = editor.wait_for(asked("fs/write_text_file"))
        assert write["params"]["content"] == "agent edit\n"
        editor.answer(write["id"], None)
        assert editor.result(prompt) == {"stopReason": "end_turn"}
    assert (world.repo / "notes.txt").read_text() == "on disk\n", "the edit is in the buffer"
    assert kinds_data(world, session_id, "file_read") == [
        {"path": "notes.txt", "chars": len(BUFFER), "served_by": "client"}
    ]
    assert kinds_data(world, session_id, "file_written") == [
        {"path": "notes.txt", "bytes": 11, "served_by": "client"}
    ]
    [attached] = kinds_data(world, session_id, "client_attached")
    assert (attached["fs_read"], attached["fs_write"], attached["terminal"]) == (True, True, True)
    shown = run_mimirctl(world.dirs, "log", session_id).stdout
    assert "wrote notes.txt (11 bytes, in the editor's buffer)" in shown


def test_the_editors_error_reaches_the_agent(world: World) -> None:
    with world.editor() as editor:
        session_id = started_serving(editor, world)
        steps = script(fs_request("r1", "fs/read_text_file", path="missing.txt"))
        prompt = editor.send("session/prompt", {"sessionId": session_id, "prompt": steps})
        read = editor.wait_for(asked("fs/read_text_file"))
        error = {"code": -32603, "message": "buffer locked"}
        editor.write(
            json.dumps({"jsonrpc": "2.0", "id": read["id"], "error": error}).encode() + b"\n"
        )
        assert editor.result(prompt) == {"stopReason": "end_turn"}
    [refused] = kinds_data(world, session_id, "file_refused")
    assert refused["reason"] == "buffer locked"
    assert refused["served_by"] == "client"


def test_a_terminal_runs_in_the_editor(world: World) -> None:
    with world.editor() as editor:
        session_id = started_serving(editor, world)
        steps = script(
            fs_request("c1", "terminal/create", command="make", args=["test"]),
            fs_request("o1", "terminal/output", terminalId="$c1"),
        )
        prompt = editor.send("session/prompt", {"sessionId": session_id, "prompt": steps})
        create = editor.wait_for(asked("terminal/create"))
        assert create["params"]["cwd"] == str(world.repo)
        editor.answer(create["id"], {"terminalId": "editor-panel-3"})
        output = editor.wait_for(asked("terminal/output"))
        assert output["params"]["terminalId"] == "editor-panel-3"
        editor.answer(output["id"], {"output": "ok\n", "truncated": False})
        assert editor.result(prompt) == {"stopReason": "end_turn"}
    [started] = kinds_data(world, session_id, "terminal_started")
    assert started["served_by"] == "client"
    assert "$ make test [in the editor]" in run_mimirctl(world.dirs, "log", session_id).stdout


def test_an_editor_that_closes_mid_request_loses_nothing(world: World) -> None:
    (world.repo / "notes.txt").write_text("on disk\n")
    editor = world.editor()
    with editor:
        session_id = started_serving(editor, world)
        steps = script(fs_request("r1", "fs/read_text_file", path="notes.txt"))
        editor.send("session/prompt", {"sessionId": session_id, "prompt": steps})
        editor.wait_for(asked("fs/read_text_file"))
        editor.kill()  # never answers: its connection closes, mimird reads the disk
    world.wait_status(session_id, "idle")
    assert kinds_data(world, session_id, "file_read") == [{"path": "notes.txt", "chars": 8}]
    [detached] = kinds_data(world, session_id, "client_detached")
    assert detached["reason"] == "closed its connection"


def test_an_editor_that_does_not_serve_files_leaves_them_to_mimir(world: World) -> None:
    (world.repo / "notes.txt").write_text("on disk\n")
    with world.editor() as editor:
        editor.call("initialize", INIT)
        session = editor.call("session/new", {"cwd": str(world.repo), "mcpServers": []})
        session_id = session["sessionId"]
        steps = script(fs_request("w1", "fs/write_text_file", path="notes.txt", content="x\n"))
        assert editor.call("session/prompt", {"sessionId": session_id, "prompt": steps}) == {
            "stopReason": "end_turn"
        }
        assert not [m for m in editor.sent if str(m.get("method", "")).startswith("fs/")]
    assert (world.repo / "notes.txt").read_text() == "x\n"
    assert kinds_data(world, session_id, "client_attached") == []


def test_a_second_editor_on_the_same_session_leaves_the_files_to_the_first(
    world: World,
) -> None:
    (world.repo / "notes.txt").write_text("on disk\n")
    with world.editor() as first, world.editor() as second:
        session_id = started_serving(first, world)
        second.call("initialize", SERVES)
        load = {"sessionId": session_id, "cwd": str(world.repo), "mcpServers": []}
        second.call("session/load", load)
        steps = script(fs_request("r1", "fs/read_text_file", path="notes.txt"))
        prompt = first.send("session/prompt", {"sessionId": session_id, "prompt": steps})
        read = first.wait_for(asked("fs/read_text_file"))
        first.answer(read["id"], {"content": BUFFER})
        assert first.result(prompt) == {"stopReason": "end_turn"}
        second.drain()
        assert not [m for m in second.sent if str(m.get("method", "")).startswith("fs/")]
    said = (world.dirs.root / "acp-stderr.log").read_text()
    assert "session.attach_client" in said
    assert "attached to another client" in said
    assert len(kinds_data(world, session_id, "client_attached")) == 1
