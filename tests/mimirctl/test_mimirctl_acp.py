"""``mimirctl acp`` as an editor starts it: a real subprocess on stdio, against a
real mimird whose agent is the scripted fake ACP agent. initialize, session/new,
a prompt relayed with its updates in order, cancel, set_mode/set_model, list."""

from __future__ import annotations

from tests.mimirctl.acp_world import INIT, World, chunk, script, started, world
from tests.support.acp_client import text_of
from tests.support.helpers import make_repo

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
        # The session is named after its first prompt's first line, and the editor told.
        title = world.rpc("session.get", {"session": session_id})["title"]
        assert title.startswith('[{"do": "update"')
        assert len(title) <= 80
        infos = [
            u for u in editor.updates(session_id) if u["sessionUpdate"] == "session_info_update"
        ]
        assert infos == [{"sessionUpdate": "session_info_update", "title": title}]
        assert editor.call("session/list", {})["sessions"][0]["title"] == title


def test_cancel_ends_the_prompt_cancelled(world: World) -> None:
    with world.editor() as editor:
        session_id = started(editor, world)
        asking = editor.send(
            "session/prompt",
            {
                "sessionId": session_id,
                "prompt": script(
                    chunk("working"),
                    {"do": "wait_cancel"},
                    {"do": "stop_reason", "value": "cancelled"},
                ),
            },
        )
        editor.wait_for(lambda m: m.get("method") == "session/update")
        editor.notify("session/cancel", {"sessionId": session_id})
        assert editor.result(asking) == {"stopReason": "cancelled"}
        # The next prompt goes through.
        result = editor.call("session/prompt", {"sessionId": session_id, "prompt": script()})
        assert result == {"stopReason": "end_turn"}


def test_usage_is_passed_on(world: World) -> None:
    usage = {"totalTokens": 30, "inputTokens": 20, "outputTokens": 10}
    with world.editor() as editor:
        session_id = started(editor, world)
        prompt = script({"do": "result", "value": {"usage": usage}})
        result = editor.call("session/prompt", {"sessionId": session_id, "prompt": prompt})
    assert result["stopReason"] == "end_turn"
    assert result["usage"] == usage


def test_prompts_from_other_clients_show_as_user_messages(world: World) -> None:
    with world.editor() as editor:
        session_id = started(editor, world)
        world.rpc("session.prompt", {"session": session_id, "content": script(chunk("hi"))})
        editor.wait_for(
            lambda m: (
                m.get("method") == "session/update"
                and m["params"]["update"]["sessionUpdate"] == "agent_message_chunk"
            )
        )
        users = text_of(list(editor.updates(session_id)), "user_message_chunk")
        assert users == [script(chunk("hi"))[0]["text"]]


def test_list_shows_the_directorys_sessions(world: World) -> None:
    other = make_repo(world.dirs.root / "other")
    with world.editor() as editor:
        session_id = started(editor, world)
        other_session = editor.call("session/new", {"cwd": str(other), "mcpServers": []})
        listed = editor.call("session/list", {"cwd": str(world.repo / "src")})
        assert [s["sessionId"] for s in listed["sessions"]] == [session_id]
        assert listed["sessions"][0]["cwd"] == str(world.repo)
        assert "updatedAt" in listed["sessions"][0]
        everything = editor.call("session/list", {})["sessions"]
        assert {s["sessionId"] for s in everything} == {session_id, other_session["sessionId"]}
        unknown = world.dirs.root / "elsewhere"
        unknown.mkdir()
        assert editor.call("session/list", {"cwd": str(unknown)}) == {"sessions": []}


def test_updates_that_are_not_acp_v1_are_not_passed_on(world: World) -> None:
    bad = [
        {"do": "update", "update": {"sessionUpdate": "tool_call", "title": "no id"}},
        {"do": "update", "update": {"sessionUpdate": "compaction_update", "x": 1}},
        {"do": "update", "update": {"sessionUpdate": "agent_message_chunk", "content": "text"}},
    ]
    with world.editor() as editor:
        session_id = started(editor, world)
        prompt = script(*bad, chunk("fine"))
        result = editor.call("session/prompt", {"sessionId": session_id, "prompt": prompt})
        assert result == {"stopReason": "end_turn"}
        kinds = [
            u["sessionUpdate"]
            for u in editor.updates(session_id)
            if u["sessionUpdate"] != "session_info_update"
        ]
        assert kinds == ["agent_message_chunk"]
    # Journaled all the same.
    stored = [e for e in world.events(session_id) if e["kind"] == "update"]
    assert len(stored) == 4
