"""What goes wrong between an editor and ``mimirctl acp``: malformed, out-of-order
and unknown ACP gets protocol errors (and the bridge goes on); a mimird that is
not running, or dies, is a clear ACP error, not a hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mimirctl.acp_world import (
    INIT,
    World,
    chunk,
    is_permission,
    permission,
    script,
    started,
    world,
)
from tests.support.acp_client import AcpClient, AcpFailed, text_of
from tests.support.helpers import DaemonDirs, start_daemon_process

__all__ = ["world"]


def _error(editor: AcpClient, method: str, params: object) -> AcpFailed:
    with pytest.raises(AcpFailed) as failed:
        editor.call(method, params)
    return failed.value


def test_malformed_lines_get_errors_and_the_bridge_goes_on(world: World) -> None:
    with world.editor() as editor:
        editor.write(b"this is not json\n")
        parse = editor.response(None)  # type: ignore[arg-type]
        assert parse["error"]["code"] == -32700
        editor.write(b'{"jsonrpc": "2.0"}\n')
        assert editor.response(None)["error"]["code"] == -32600  # type: ignore[arg-type]
        editor.write(
            b'{"jsonrpc":"2.0","id":77,"method":"initialize","params":{"protocolVersion"\n'
        )
        assert editor.response(77)["error"]["code"] == -32700
        # An answer to a request the bridge never made is skipped.
        editor.write(b'{"jsonrpc":"2.0","id":999,"result":{}}\n')
        assert editor.call("initialize", INIT)["protocolVersion"] == 1


def test_out_of_order_and_unknown_requests(world: World) -> None:
    with world.editor() as editor:
        early = _error(editor, "session/new", {"cwd": str(world.repo), "mcpServers": []})
        assert early.code == -32600
        assert "before initialize" in str(early.message)
        editor.call("initialize", INIT)
        prompt = {"sessionId": "01nosuchsession000000000000", "prompt": script(chunk("x"))}
        unknown = _error(editor, "session/prompt", prompt)
        assert unknown.code == -32002
        assert "session/new or session/load" in str(unknown.message)
        assert _error(editor, "session/fork", {}).code == -32601
        assert _error(editor, "_vendor/thing", {}).code == -32601
        editor.notify("_vendor/note", {})  # ignored
        assert _error(editor, "session/new", {"cwd": "relative", "mcpServers": []}).code == -32602
        session_id = started(editor, world)
        bad = _error(editor, "session/prompt", {"sessionId": session_id, "prompt": "text"})
        assert bad.code == -32602
        assert _error(editor, "session/prompt", {"sessionId": session_id, "prompt": [3]}).code == (
            -32602
        )
        load = {"sessionId": "01nosuchsession000000000000", "cwd": str(world.repo)}
        assert _error(editor, "session/load", {**load, "mcpServers": []}).code == -32002
        # Still working.
        result = editor.call("session/prompt", {"sessionId": session_id, "prompt": script()})
        assert result == {"stopReason": "end_turn"}


def test_no_daemon_is_a_clear_error_at_initialize(dirs: DaemonDirs) -> None:
    dirs.config.parent.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text("")
    with AcpClient.start(dirs) as editor:
        failed = _error(editor, "initialize", INIT)
        assert failed.code == -32603
        assert "mimird is not running" in str(failed.message)
        # Not an exit: it answers again (still not running).
        assert "mimird is not running" in str(_error(editor, "initialize", INIT).message)
        assert editor.close_stdin() == 0


@pytest.mark.parametrize("stdin", ["file", "devnull"])
def test_requests_from_a_file_or_dev_null_are_read_to_their_end(
    world: World, tmp_path: Path, stdin: str
) -> None:
    """stdin that epoll refuses (a regular file, /dev/null): read as a pipe is."""
    requests = tmp_path / "requests.jsonl"
    line = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT}
    requests.write_text(json.dumps(line) + "\n" if stdin == "file" else "")
    source = requests if stdin == "file" else Path(os.devnull)
    with source.open("rb") as feed:
        result = subprocess.run(
            [sys.executable, "-m", "mimirctl", "acp"],
            stdin=feed,
            env=world.dirs.env(),
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert (result.returncode, result.stderr) == (0, b"")
    answers = [json.loads(out) for out in result.stdout.splitlines()]
    if stdin == "file":
        assert [(a["id"], a["result"]["agentInfo"]["name"]) for a in answers] == [(1, "mimir")]
    else:
        assert answers == []


def test_daemon_gone_mid_turn_ends_the_prompt_with_an_error(world: World) -> None:
    with world.editor() as editor:
        session_id = started(editor, world)
        asking = editor.send(
            "session/prompt", {"sessionId": session_id, "prompt": script({"do": "hang"})}
        )
        # Mid-turn: once mimird took the prompt (killed before, the prompt's own call
        # fails: "mimird closed the connection", another path).
        world.wait_status(session_id, "running")
        world.daemon.kill()
        answer = editor.response(asking)
        assert answer["error"]["code"] == -32603
        assert "connection to mimird lost" in answer["error"]["message"]
        failed = _error(editor, "session/list", {})
        assert "mimird is not running" in str(failed.message)


def test_eof_ends_the_bridge_and_not_the_turn(world: World) -> None:
    with world.editor() as editor:
        session_id = started(editor, world)
        prompt = script(permission("write"), chunk("end"))
        editor.send("session/prompt", {"sessionId": session_id, "prompt": prompt})
        editor.wait_for(is_permission)
        assert editor.close_stdin() == 0
    # The turn goes on, its permission request answerable from any client.
    assert world.rpc("session.get", {"session": session_id})["status"] == "awaiting_permission"
    pending = world.rpc("permission.list", {"session": session_id})["permissions"]
    world.rpc("permission.respond", {"permission": pending[0]["id"], "option_id": "yes"})
    world.wait_status(session_id, "idle")
    ended = [e["data"] for e in world.events(session_id) if e["kind"] == "turn_ended"]
    assert [e["stop_reason"] for e in ended] == ["end_turn"]


def test_after_mimird_restarts_the_session_goes_on(world: World) -> None:
    with world.editor() as editor:
        session_id = started(editor, world)
        assert editor.call(
            "session/prompt", {"sessionId": session_id, "prompt": script(chunk("before"))}
        ) == {"stopReason": "end_turn"}
        world.daemon.terminate()
        failed = _error(editor, "session/prompt", {"sessionId": session_id, "prompt": script()})
        assert "mimird is not running" in str(failed.message)
        again = start_daemon_process(world.dirs)
        try:
            result = editor.call(
                "session/prompt", {"sessionId": session_id, "prompt": script(chunk("after"))}
            )
            assert result == {"stopReason": "end_turn"}
            chunks = text_of(list(editor.updates(session_id)), "agent_message_chunk")
            assert chunks == ["before", "after"]
        finally:
            again.terminate()


def test_a_mimir_worktree_is_not_registered_as_a_project(world: World) -> None:
    project = world.rpc("project.add", {"path": str(world.repo)})
    made = world.rpc("session.create", {"project": project["id"], "workspace": "worktree"})
    worktree = made["workspace"]["path"]
    with world.editor() as editor:
        editor.call("initialize", INIT)
        refused = _error(editor, "session/new", {"cwd": worktree, "mcpServers": []})
        assert refused.code == -32602
        assert "--session" in str(refused.message)
    assert [p["path"] for p in world.rpc("project.list", {})["projects"]] == [str(world.repo)]
