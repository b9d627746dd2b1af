"""The journal → ACP ``session/update`` replay (mimirctl/acp/replay.py): on the journal
of a real daemon that ran the scripted fake agent, and on hand-made hostile events.
Every update it produces is checked against the official ACP v1 schema."""

from __future__ import annotations

import json
from typing import Any, Final

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from mimirctl.acp.replay import MAX_RAW_BYTES, MAX_TEXT_CHARS, live_updates, updates_for
from tests.support.acp_schema import AcpSchemaError, validate_update
from tests.support.agents import Client, agent_world, new_session
from tests.support.helpers import DaemonDirs

PERMISSION: Final = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t2", "title": "Write a.txt"},
        "options": [
            {"optionId": "yes", "name": "Allow", "kind": "allow_once"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ],
    },
}


def _update(update: dict[str, Any]) -> dict[str, Any]:
    return {"do": "update", "update": update}


def _chunk(kind: str, text: str) -> dict[str, Any]:
    return {"sessionUpdate": kind, "content": {"type": "text", "text": text}}


def _replayed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    updates = list(updates_for(events))
    for update in updates:
        validate_update(update)
    return updates


def _event(kind: str, data: Any, seq: int = 1) -> dict[str, Any]:
    return {"session_id": "s", "seq": seq, "kind": kind, "data": data, "created_at": "t"}


def _update_event(update: Any) -> dict[str, Any]:
    return _event("update", {"sessionId": "sess-1", "update": update})


def _texts(updates: list[dict[str, Any]], kind: str) -> str:
    return "".join(u["content"]["text"] for u in updates if u["sessionUpdate"] == kind)


PLAN: Final = {
    "sessionUpdate": "plan",
    "entries": [
        {"content": "read the form", "priority": "high", "status": "completed"},
        {"content": "refuse empty passwords", "priority": "medium", "status": "in_progress"},
    ],
}
FIRST_TURN: Final = [
    _update(_chunk("agent_thought_chunk", "The form never checks ")),
    _update(_chunk("agent_thought_chunk", "an empty password.")),
    _update(PLAN),
    {"do": "chunks", "count": 3, "text": "fix"},
    _update(
        {
            "sessionUpdate": "tool_call",
            "toolCallId": "t1",
            "title": "Edit login.py",
            "kind": "edit",
            "status": "pending",
            "locations": [{"path": "/w/login.py", "line": 3}],
        }
    ),
    _update({"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "in_progress"}),
    PERMISSION,
    _update(
        {
            "sessionUpdate": "tool_call_update",
            "toolCallId": "t1",
            "status": "completed",
            "content": [
                {"type": "diff", "path": "/w/login.py", "oldText": "a\n", "newText": "b\n"}
            ],
            "rawOutput": {"ok": True},
        }
    ),
    {"do": "chunks", "count": 2, "text": "done"},
]
#: The second turn starts a tool call and is cancelled before it ends.
SECOND_TURN: Final = [
    _update({"sessionUpdate": "tool_call", "toolCallId": "t3", "title": "Run tests"}),
    {"do": "wait_cancel"},
    {"do": "stop_reason", "value": "cancelled"},
]


async def _journal_of_two_turns(dirs: DaemonDirs) -> list[dict[str, Any]]:
    """The stored events of a session: a turn with thoughts, a plan, messages, a tool
    call and a permission answered; then a turn cancelled mid tool call."""
    scenario = {"prompts": [FIRST_TURN, SECOND_TURN]}
    prompt = [
        {"type": "text", "text": "Refuse empty passwords in "},
        {"type": "resource_link", "uri": "file:///w/login.py", "name": "login.py"},
    ]
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "content": prompt})
            listed = await c.until("permission.list", {}, lambda r: r["permissions"])
            await c.call(
                "permission.respond",
                {"permission": listed["permissions"][0]["id"], "kind": "allow_once"},
            )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "again"})
            await c.until(
                "session.events",
                {"session": session_id, "kind": "update"},
                lambda r: any(e["data"]["update"].get("toolCallId") == "t3" for e in r["events"]),
            )
            await c.call("session.cancel", {"session": session_id})
        found = await c.call("session.events", {"session": session_id})
        events: list[dict[str, Any]] = found["events"]
        return events


async def test_a_real_sessions_journal_replays_as_valid_acp_updates_in_order(
    dirs: DaemonDirs,
) -> None:
    events = await _journal_of_two_turns(dirs)
    updates = _replayed(events)
    kinds = [u["sessionUpdate"] for u in updates]
    assert kinds == [
        "user_message_chunk",
        "user_message_chunk",
        "agent_thought_chunk",
        "plan",
        "agent_message_chunk",
        "tool_call",
        "tool_call_update",
        "tool_call_update",
        "agent_message_chunk",
        "user_message_chunk",
        "tool_call",
        "tool_call_update",
    ]
    assert updates[0]["content"] == {"type": "text", "text": "Refuse empty passwords in "}
    assert updates[1]["content"] == {
        "type": "resource_link",
        "uri": "file:///w/login.py",
        "name": "login.py",
    }
    # One chunk per stored message, the streamed chunks not again.
    assert updates[2]["content"]["text"] == "The form never checks an empty password."
    assert updates[4]["content"]["text"] == "fix0fix1fix2"
    assert updates[8]["content"]["text"] == "done0done1"
    assert updates[3] == PLAN
    assert updates[5]["locations"] == [{"path": "/w/login.py", "line": 3}]
    assert updates[7]["status"] == "completed"
    assert updates[7]["rawOutput"] == {"ok": True}
    assert updates[9]["content"]["text"] == "again"
    # The cancelled turn's tool call does not stay running in the editor.
    assert updates[10]["toolCallId"] == "t3"
    assert updates[11] == {
        "sessionUpdate": "tool_call_update",
        "toolCallId": "t3",
        "status": "failed",
    }


async def test_replay_of_a_journal_cut_mid_message_ends_with_its_streamed_chunks(
    dirs: DaemonDirs,
) -> None:
    """History read while a message still streams (no ``message`` event yet): its chunks
    are replayed as they came, so the live stream that follows continues them."""
    events = await _journal_of_two_turns(dirs)
    # Cut after the chunks of the first turn's last message, before its message event.
    cut = next(
        i
        for i, e in enumerate(events)
        if e["kind"] == "message" and e["data"]["text"] == "done0done1"
    )
    updates = _replayed(events[:cut])
    tail = [u for u in updates if u["sessionUpdate"] == "agent_message_chunk"]
    assert [u["content"]["text"] for u in tail] == ["fix0fix1fix2", "done0", "done1"]


def test_a_message_in_pieces_replays_each_piece_once_and_uncovered_chunks_at_the_end() -> None:
    chunks = [_update_event(_chunk("agent_message_chunk", t)) for t in ("aaaa", "bbbb", "cc")]
    piece = _event("message", {"role": "agent", "text": "aaaab", "piece": 1, "continued": True})
    events = [*chunks, piece]
    updates = _replayed(events)
    # The piece, then what no message covers yet (the live stream goes on from there).
    assert [u["content"]["text"] for u in updates] == ["aaaab", "bbb", "cc"]
    rest = _event("message", {"role": "agent", "text": "bbbcc", "piece": 2})
    assert [u["content"]["text"] for u in _replayed([*events, rest])] == ["aaaab", "bbbcc"]


def test_chunks_a_crash_left_without_a_message_are_replayed_at_the_turns_end() -> None:
    events = [
        _update_event(_chunk("agent_message_chunk", "half an ans")),
        _event("turn_ended", {"stop_reason": "interrupted"}),
        _event("prompt", {"content": [{"type": "text", "text": "go on"}]}),
    ]
    updates = _replayed(events)
    assert [u["sessionUpdate"] for u in updates] == ["agent_message_chunk", "user_message_chunk"]


def test_long_text_is_split_into_chunks_that_join_to_it() -> None:
    text = "x" * (2 * MAX_TEXT_CHARS + 5)
    events = [
        _event("prompt", {"content": [{"type": "text", "text": text}]}),
        _event("message", {"role": "thought", "text": text, "message_id": "m1"}),
    ]
    updates = _replayed(events)
    assert _texts(updates, "user_message_chunk") == text
    assert _texts(updates, "agent_thought_chunk") == text
    assert len(updates) == 6
    assert all(u.get("messageId") == "m1" for u in updates[3:])


HOSTILE: Final[list[Any]] = [
    None,
    "update",
    {"kind": "update"},
    {"kind": "update", "data": None},
    {"kind": "update", "data": {"update": "text"}},
    {"kind": "update", "data": {"update": {"sessionUpdate": 7}}},
    _update_event({"sessionUpdate": "agent_message_chunk", "content": {"type": "text"}}),
    _update_event({"sessionUpdate": "agent_message_chunk", "content": {"type": "image"}}),
    _update_event({"sessionUpdate": "tool_call", "toolCallId": "t"}),  # no title
    _update_event({"sessionUpdate": "tool_call", "toolCallId": 5, "title": "x"}),
    _update_event({"sessionUpdate": "tool_call", "toolCallId": "t" * 5000, "title": "x"}),
    _update_event({"sessionUpdate": "tool_call_update", "toolCallId": None}),
    _update_event({"sessionUpdate": "plan", "entries": "all of it"}),
    _update_event({"sessionUpdate": "current_mode_update", "currentModeId": ["a"]}),
    _update_event({"sessionUpdate": "usage_update", "used": "many", "size": 1}),
    _update_event({"sessionUpdate": "compaction_update"}),  # not in stable v1
    _update_event({"sessionUpdate": "config_option_update", "configOptions": []}),
    _update_event(
        {"sessionUpdate": "user_message_chunk", "content": {"type": "text", "text": "x"}}
    ),
    _event("prompt", {"content": "not a list"}),
    _event("prompt", {"content": [{"type": "resource", "resource": {"uri": "u"}}]}),
    _event("message", {"role": "agent", "text": None}),
    _event("message", {"role": "narrator", "text": "x"}),
    _event("permission_requested", {"permission": "p"}),
    _event("turn_ended", "ended"),
]


@pytest.mark.parametrize("event", HOSTILE, ids=lambda e: json.dumps(e)[:60])
def test_a_malformed_stored_event_is_skipped_not_raised_on(event: Any) -> None:
    assert _replayed([event]) == []


def test_bad_optional_fields_are_dropped_and_the_update_kept() -> None:
    call = {
        "sessionUpdate": "tool_call",
        "toolCallId": "t1",
        "title": "T" * 10_000,
        "kind": "summon",
        "status": "exploded",
        "content": [
            {"type": "content", "content": {"type": "text", "text": "ok"}},
            {"type": "content", "content": {"type": "video"}},
            {"type": "diff", "path": "/a", "oldText": 3, "newText": "b"},
            {"type": "terminal", "terminalId": "term-1"},
            "junk",
        ],
        "locations": [{"path": "/a", "line": -1}, {"line": 2}],
        "rawInput": {"blob": "x" * (MAX_RAW_BYTES + 1)},
        "rawOutput": float("nan"),
        "extra": "field",
    }
    updates = _replayed([_update_event(call)])
    assert len(updates) == 1
    replayed = updates[0]
    assert len(replayed["title"]) == 4096
    assert "kind" not in replayed
    assert "status" not in replayed
    assert replayed["content"] == [
        {"type": "content", "content": {"type": "text", "text": "ok"}},
        {"type": "terminal", "terminalId": "term-1"},
    ]
    assert replayed["locations"] == [{"path": "/a"}]
    assert "rawInput" not in replayed
    assert "rawOutput" not in replayed
    assert "extra" not in replayed


def test_unhashable_values_where_a_name_is_expected_are_dropped() -> None:
    """Regression (found by the fuzz test below): a list as a tool call's kind raised."""
    call = {"sessionUpdate": "tool_call", "toolCallId": "t", "title": "x", "kind": [], "status": {}}
    plan = {"sessionUpdate": "plan", "entries": [{"content": "c", "priority": [], "status": {}}]}
    assert _replayed([_update_event(call), _update_event(plan)]) == [
        {"sessionUpdate": "tool_call", "toolCallId": "t", "title": "x"},
        {"sessionUpdate": "plan", "entries": []},
    ]


def test_an_oversized_embedded_resource_becomes_a_link_to_it() -> None:
    big = {"uri": "file:///w/big.log", "text": "x" * (4 * 1024 * 1024 + 1)}
    events = [_event("prompt", {"content": [{"type": "resource", "resource": big}]})]
    assert _replayed(events) == [
        {
            "sessionUpdate": "user_message_chunk",
            "content": {"type": "resource_link", "uri": "file:///w/big.log", "name": "big.log"},
        }
    ]


def test_a_mode_the_client_chose_replays_as_current_mode_update() -> None:
    events = [
        _event("mode_changed", {"mode": "plan", "by": "client", "via": "session/set_mode"}),
        _event("mode_changed", {"mode": "code", "by": "agent"}),
        _update_event({"sessionUpdate": "current_mode_update", "currentModeId": "code"}),
    ]
    assert _replayed(events) == [
        {"sessionUpdate": "current_mode_update", "currentModeId": "plan"},
        {"sessionUpdate": "current_mode_update", "currentModeId": "code"},
    ]


def test_the_schema_check_itself_rejects_a_bad_update() -> None:
    with pytest.raises(AcpSchemaError, match="toolCallId"):
        validate_update({"sessionUpdate": "tool_call", "title": "no id"})


JSON: Final = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
#: Updates close to valid ones: the right tags and member names, any values.
NEAR_UPDATES: Final = st.fixed_dictionaries(
    {
        "sessionUpdate": st.sampled_from(
            [
                "agent_message_chunk",
                "agent_thought_chunk",
                "tool_call",
                "tool_call_update",
                "plan",
                "current_mode_update",
                "available_commands_update",
                "usage_update",
                "session_info_update",
                "user_message_chunk",
                "bogus",
            ]
        )
    },
    optional={
        "content": JSON
        | st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image", "resource"])},
            optional={"text": JSON, "data": JSON, "mimeType": JSON, "resource": JSON},
        ),
        "toolCallId": JSON | st.text(min_size=1, max_size=5),
        "title": JSON,
        "status": st.sampled_from(["pending", "in_progress", "completed", "failed", "x"]),
        "kind": JSON,
        "entries": JSON,
        "locations": JSON,
        "rawInput": JSON,
        "currentModeId": JSON,
        "availableCommands": JSON,
        "used": JSON,
        "size": JSON,
        "title ": JSON,
        "updatedAt": JSON,
        "messageId": JSON,
    },
)
EVENTS: Final = st.lists(
    st.one_of(
        st.builds(_update_event, NEAR_UPDATES),
        st.builds(
            _event,
            st.sampled_from(["prompt", "message", "mode_changed", "turn_ended", "agent_exited"]),
            JSON,
        ),
        st.builds(
            _event,
            st.just("message"),
            st.fixed_dictionaries(
                {"role": st.sampled_from(["agent", "thought", "x"]), "text": st.text(max_size=10)},
                optional={"continued": st.booleans(), "message_id": JSON},
            ),
        ),
        JSON,
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(EVENTS)
def test_any_journal_replays_without_raising_and_only_as_valid_acp(events: list[Any]) -> None:
    _replayed(events)  # validates every update it yields


def test_live_events_forward_the_agents_chunks_and_checked_updates() -> None:
    chunk = _chunk("agent_message_chunk", "hel")
    call = {"sessionUpdate": "tool_call", "toolCallId": "t", "title": "x", "rawOutput": 1}
    prompt = _event("prompt", {"content": [{"type": "text", "text": "hi"}]})
    assert live_updates(_update_event(chunk)) == [chunk]
    assert live_updates(_update_event({**call, "junk": 1})) == [call]
    assert live_updates(_event("message", {"role": "agent", "text": "hello"})) == []
    assert live_updates(prompt) == []
    assert live_updates(prompt, prompts=True) == [
        {"sessionUpdate": "user_message_chunk", "content": {"type": "text", "text": "hi"}}
    ]
    assert live_updates(_event("mode_changed", {"mode": "plan", "by": "client"})) == [
        {"sessionUpdate": "current_mode_update", "currentModeId": "plan"}
    ]


@settings(max_examples=100, deadline=None)
@given(EVENTS)
def test_any_live_event_converts_without_raising_and_only_as_valid_acp(events: list[Any]) -> None:
    for event in events:
        for update in live_updates(event, prompts=True):
            validate_update(update)
