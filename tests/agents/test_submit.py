"""``session.submit``: the prompt's turn belongs to the daemon, not to the call.
It answers once the prompt is journaled; the caller going away changes nothing
(where a ``session.prompt`` caller going away cancels the turn); errors before
the prompt is journaled are the call's."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from mimird.agents import budget
from tests.support.agents import Client, agent_world, event_data, new_session
from tests.support.helpers import DaemonDirs

PERMISSION = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [{"optionId": "yes", "name": "Allow", "kind": "allow_once"}],
    },
}
SCENARIO = {"prompts": [[PERMISSION, {"do": "chunks", "count": 2}], []]}


async def test_submit_answers_at_once_and_the_turn_outlives_the_caller(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as client:
        session_id = await new_session(world, client)
        with trio.fail_after(10):
            async with Client.connect(world.daemon.socket) as caller:
                submitted = await caller.call(
                    "session.submit", {"session": session_id, "text": "go"}
                )
        # The caller is gone; the turn goes on, waiting for its permission answer.
        assert submitted["session"] == session_id
        prompts = await client.call("session.events", {"session": session_id, "kind": "prompt"})
        assert [e["seq"] for e in prompts["events"]] == [submitted["prompt_seq"]]
        pending = await client.until(
            "permission.list", {"session": session_id}, lambda r: r["permissions"]
        )
        await client.call(
            "permission.respond",
            {"permission": pending["permissions"][0]["id"], "kind": "allow_once"},
        )
        await client.until("session.get", {"session": session_id}, lambda s: s["status"] == "idle")
        ended = await event_data(client, session_id, "turn_ended")
        assert [e["stop_reason"] for e in ended] == ["end_turn"]
        second = await client.call("session.submit", {"session": session_id, "text": "again"})
        assert second["prompt_seq"] > submitted["prompt_seq"]


async def test_submit_errors_before_the_prompt_is_journaled(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as client:
        session_id = await new_session(world, client)
        both = await client.error(
            "session.submit",
            {"session": session_id, "text": "x", "content": [{"type": "text", "text": "x"}]},
        )
        assert both["data"]["kind"] == "invalid_params"
        missing = await client.error("session.submit", {"session": "01nosuch0000", "text": "x"})
        assert missing["data"]["kind"] == "not_found"
        await client.call("session.submit", {"session": session_id, "text": "go"})
        busy = await client.error("session.submit", {"session": session_id, "text": "again"})
        assert busy["data"]["kind"] == "busy"
        # Only the prompt that was taken is journaled.
        assert len(await event_data(client, session_id, "prompt")) == 1


@pytest.mark.parametrize("then", ["prompt", "complete"])
async def test_a_call_sent_on_seeing_turn_ended_is_not_refused_for_the_turn(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    # A client (an editor through mimirctl acp, a script) acts when turn_ended
    # arrives, while the daemon still finishes the turn (its budget check, made
    # slow here): the next prompt, or the completion, waits for that end instead of
    # being refused "busy" / "a turn is running".
    after_turn = budget.Guard.after_turn

    async def slow_after_turn(self: budget.Guard) -> budget.Reached | None:
        await trio.sleep(0.5)
        return await after_turn(self)

    monkeypatch.setattr(budget.Guard, "after_turn", slow_after_turn)
    scenario: dict[str, Any] = {"prompts": [[], []]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as client:
        session_id = await new_session(world, client)
        await client.call("subscribe", {"session": session_id, "after_seq": 0})
        await client.call("session.submit", {"session": session_id, "text": "one"})
        await client.wait_for(lambda e: e["kind"] == "turn_ended")
        if then == "complete":
            done = await client.call_raw("session.complete", {"session": session_id})
            assert "error" not in done, done
            assert done["result"]["status"] == "completed"
            return
        second = await client.call_raw("session.submit", {"session": session_id, "text": "two"})
        assert "error" not in second, second
        await client.wait_for(
            lambda e: e["kind"] == "turn_ended" and e["seq"] > second["result"]["prompt_seq"]
        )
