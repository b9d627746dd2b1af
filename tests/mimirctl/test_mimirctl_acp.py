"""``mimirctl acp`` as an editor starts it: a real subprocess on stdio, against a
real mimird whose agent is the scripted fake ACP agent. initialize, session/new,
a prompt relayed with its updates in order, cancel, set_mode/set_model, list."""

from __future__ import annotations

from tests.mimirctl.acp_world import INIT, World, chunk, script, started, world
from tests.support.acp_client import text_of

__all__ = ["world"]


def test_initialize_says_what_is_true(world: World) -> None:
    with world.editor() as editor:
        result = editor.call("initialize", INIT)
    assert result["protocolVersion"] == 1
    caps = result["agentCapabilities"]
    assert caps["loadSession"] is True
    assert caps["sessionCapabilities"] == {"list": {}}
    # Nothing known of the fake kind yet: the baseline only.
    assert caps["promptCapabilities"] == {"image": False, "audio": False, "embeddedContext": False}
    assert result["authMethods"] == []
    assert result["agentInfo"]["name"] == "mimir"
    assert "fake" in result["agentInfo"]["title"]


def test_new_session_registers_the_project_and_relays_a_turn(world: World) -> None:
    with world.editor() as editor:
        session_id = started(editor, world)
        stored = world.rpc("session.get", {"session": session_id})
        assert stored["workspace"]["kind"] == "in_place"
        assert stored["workspace"]["path"] == str(world.repo)
        assert stored["agent"] == "fake"
        project = world.rpc("project.get", {"project": stored["project_id"]})
        assert project["path"] == str(world.repo)

        steps = [chunk(f"part {i} ") for i in range(20)]
        result = editor.call("session/prompt", {"sessionId": session_id, "prompt": script(*steps)})
        assert result == {"stopReason": "end_turn"}
        texts = text_of(list(editor.updates(session_id)), "agent_message_chunk")
        assert texts == [f"part {i} " for i in range(20)]
        # The editor's own prompt is not echoed back to it.
        assert text_of(list(editor.updates(session_id)), "user_message_chunk") == []
