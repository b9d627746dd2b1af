"""``mimirctl acp`` killed mid-turn loses nothing and stops nothing: the turn goes on
in mimird, and a new ``mimirctl acp`` with ``session/load`` replays the whole
history (nothing missing, nothing twice), asks the permission request still
waiting, and follows the live end of the turn. Also: first answer wins when
another client answers a permission request the editor was asked."""

from __future__ import annotations

import collections
import json

from tests.mimirctl.acp_world import (
    INIT,
    SELECTED_YES,
    World,
    chunk,
    is_permission,
    permission,
    script,
    started,
    world,
)
from tests.support.acp_client import text_of

__all__ = ["world"]


def test_killed_mid_turn_then_loaded_replays_everything_once_and_follows(world: World) -> None:
    steps = [
        chunk("one "),
        chunk("two "),
        {"do": "tool_call"},
        permission("first"),
        chunk("after first "),
        permission("second"),
        chunk("after second"),
    ]
    prompt = script(*steps)
    with world.editor() as first:
        session_id = started(first, world)
        asking = first.send("session/prompt", {"sessionId": session_id, "prompt": prompt})
        request = first.wait_for(is_permission)
        assert request["params"]["sessionId"] == session_id
        assert request["params"]["toolCall"]["title"] == "first"
        assert [o["optionId"] for o in request["params"]["options"]] == ["yes", "no"]
        first.answer(request["id"], SELECTED_YES)
        second_request = first.wait_for(is_permission)
        assert second_request["params"]["toolCall"]["title"] == "second"
        assert text_of(list(first.updates(session_id)), "agent_message_chunk") == [
            "one ",
            "two ",
            "after first ",
        ]
        first.process.kill()  # the editor window is gone, mid-turn
        first.process.wait(30)
        assert asking not in first._answers

    # The turn goes on without it: still waiting for the second answer.
    status = world.rpc("session.get", {"session": session_id})["status"]
    assert status == "awaiting_permission"

    with world.editor() as second:
        second.call("initialize", INIT)
        loaded = second.call(
            "session/load", {"sessionId": session_id, "cwd": str(world.repo), "mcpServers": []}
        )
        assert isinstance(loaded, dict)
        replayed = list(second.updates(session_id))
        # Nothing asked before the answer: the editor knows the session only then.
        assert not any(is_permission(m) for m in second.received)
        # The pending request is asked again, of this editor, after the load's answer.
        request = second.wait_for(is_permission)
        assert request["params"]["toolCall"]["title"] == "second"
        second.answer(request["id"], SELECTED_YES)
        # The live end of the turn.
        second.wait_for(
            lambda m: (
                m.get("method") == "session/update"
                and m["params"]["update"].get("content", {}).get("text") == "after second"
            )
        )
        everything = list(second.updates(session_id))

    assert text_of(replayed, "user_message_chunk") == [json.dumps(steps)]
    # Replayed as whole messages (the kit's replay), then live as the agent streams:
    # every piece of text once, in order.
    chunks = text_of(everything, "agent_message_chunk")
    assert "".join(chunks) == "one two after first after second"
    tool_updates = [u for u in everything if u["sessionUpdate"].startswith("tool_call")]
    assert [u["sessionUpdate"] for u in tool_updates] == ["tool_call", "tool_call_update"]
    assert tool_updates[-1]["status"] == "completed"
    counts = collections.Counter(json.dumps(u, sort_keys=True) for u in everything)
    assert max(counts.values()) == 1, counts

    world.wait_status(session_id, "idle")
    events = world.events(session_id)
    ended = [e["data"] for e in events if e["kind"] == "turn_ended"]
    assert [e["stop_reason"] for e in ended] == ["end_turn"]
    answered = [e["data"] for e in events if e["kind"] == "permission_answered"]
    assert [(a["outcome"], a["option_id"]) for a in answered] == [
        ("selected", "yes"),
        ("selected", "yes"),
    ]


def test_another_client_answers_first_and_the_editors_request_is_withdrawn(
    world: World,
) -> None:
    with world.editor() as editor:
        session_id = started(editor, world)
        prompt = script(permission("write"), chunk("done"))
        asking = editor.send("session/prompt", {"sessionId": session_id, "prompt": prompt})
        request = editor.wait_for(is_permission)
        pending = world.rpc("permission.list", {"session": session_id})["permissions"]
        assert len(pending) == 1
        world.rpc("permission.respond", {"permission": pending[0]["id"], "option_id": "no"})
        withdrawn = editor.wait_for(lambda m: m.get("method") == "$/cancel_request")
        assert withdrawn["params"] == {"requestId": request["id"]}
        # The editor's late answer is not taken, and breaks nothing.
        editor.answer(request["id"], SELECTED_YES)
        assert editor.result(asking) == {"stopReason": "end_turn"}
        # The bridge still answers.
        assert editor.call("session/list", {})["sessions"]

    answered = [e["data"] for e in world.events(session_id) if e["kind"] == "permission_answered"]
    assert [a["option_id"] for a in answered] == ["no"]


def test_with_session_the_editors_new_session_is_that_one(world: World) -> None:
    project = world.rpc("project.add", {"path": str(world.repo)})
    made = world.rpc("session.create", {"project": project["id"], "workspace": "in_place"})
    world.rpc("session.prompt", {"session": made["id"], "content": script(chunk("earlier"))})
    with world.editor("--session", made["id"][:8]) as editor:
        editor.call("initialize", INIT)
        new = editor.call("session/new", {"cwd": str(world.repo), "mcpServers": []})
        assert new["sessionId"] == made["id"]
        # Its history comes right after the answer (the editor knows the id then).
        assert list(editor.updates(made["id"])) == []
        editor.wait_for(lambda m: m.get("method") == "session/update")
        result = editor.call(
            "session/prompt", {"sessionId": made["id"], "prompt": script(chunk("now"))}
        )
        assert result == {"stopReason": "end_turn"}
        assert text_of(list(editor.updates(made["id"])), "agent_message_chunk") == [
            "earlier",
            "now",
        ]
    assert len(world.rpc("session.list", {})["sessions"]) == 1


def test_loading_the_session_again_while_its_events_stream_keeps_the_bridge_up(
    world: World,
) -> None:
    """A session/load of the session being followed drops its connection for a new
    one; events already waiting on the dropped one (seen readable in the same
    wake-up as the editor's line) are not read from it. The bridge died of it with
    a ValueError (the dropped connection's descriptor, -1, unregistered again)."""
    flood = {"do": "chunks", "count": 3000, "text": "word "}
    with world.editor() as editor:
        session_id = started(editor, world)
        asking = editor.send("session/prompt", {"sessionId": session_id, "prompt": script(flood)})
        editor.wait_for(lambda m: m.get("method") == "session/update")
        params = {"sessionId": session_id, "cwd": str(world.repo), "mcpServers": []}
        loads = [editor.send("session/load", params) for _ in range(20)]
        for load in loads:
            assert "result" in editor.response(load, timeout=60)
        assert editor.response(asking, timeout=60)["result"]["stopReason"] == "end_turn"
        assert editor.process.poll() is None
        assert editor.close_stdin() == 0
    assert "Traceback" not in (world.dirs.root / "acp-stderr.log").read_text()
