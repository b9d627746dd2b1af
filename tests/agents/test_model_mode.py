"""The agent's model and mode: the ``model``/``mode`` config keys applied through ACP
right after the agent starts, ``session.set_model``/``set_mode`` while it runs and
while it does not, values checked against what the agent offers, agents that
offer no choice or refuse it, and the agent's own changes journaled. The agent is
the scripted fake ACP agent; what it received is read from its record."""

from __future__ import annotations

from typing import Any, Final

from mimird.wire.errors import ErrorCode
from tests.support.agents import Client, agent_world, event_data, new_session, received
from tests.support.helpers import DaemonDirs

OFFERS: Final = {"models": ["small", "large"], "modes": ["ask", "code"]}
SET_METHODS: Final = ("session/set_model", "session/set_mode", "session/set_config_option")


def settings_sent(world: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every set_model/set_mode/set_config_option the agent received: (method, params)
    without the session id."""
    return [
        (m["method"], {k: v for k, v in m["params"].items() if k != "sessionId"})
        for m in received(world)
        if m.get("method") in SET_METHODS
    ]


def methods_received(world: Any) -> list[str]:
    return [m["method"] for m in received(world) if "method" in m and "id" in m]


async def test_configured_model_and_mode_are_set_right_after_the_session_starts(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call(
            "session.create",
            {"project": world.project, "config": {"model": "large", "mode": "code"}},
        )
        await c.call("session.prompt", {"session": session["id"], "text": "go"})
        assert settings_sent(world) == [
            ("session/set_model", {"modelId": "large"}),
            ("session/set_mode", {"modeId": "code"}),
        ]
        # Before the session took its first prompt.
        methods = methods_received(world)
        assert methods.index("session/set_mode") < methods.index("session/prompt")
        assert await event_data(c, session["id"], "model_changed") == [
            {"model": "large", "by": "config", "previous": "small", "via": "session/set_model"}
        ]
        assert await event_data(c, session["id"], "mode_changed") == [
            {"mode": "code", "by": "config", "previous": "ask", "via": "session/set_mode"}
        ]
        state = (await c.call("session.get", {"session": session["id"]}))["agent_state"]
        assert state["models"]["currentModelId"] == "large"
        assert state["modes"]["currentModeId"] == "code"


async def test_a_configured_value_the_agent_already_has_is_not_sent(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call(
            "session.create", {"project": world.project, "config": {"model": "small"}}
        )
        await c.call("session.resume", {"session": session["id"]})
        assert settings_sent(world) == []
        assert await event_data(c, session["id"], "model_changed") == []


async def test_after_a_load_that_does_not_say_the_model_it_is_set_again(
    dirs: DaemonDirs,
) -> None:
    # The agent loads its ACP session, and its answer does not say its model: the one
    # known (from its earlier life) may not be the one it has now.
    can_load = {"protocolVersion": 1, "agentCapabilities": {"loadSession": True}}
    scenario = {
        **OFFERS,
        "load_hides_choices": True,
        "results": {"initialize": can_load, "session/load": {}},
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call(
            "session.create", {"project": world.project, "config": {"model": "large"}}
        )
        sid = session["id"]
        await c.call("session.resume", {"session": sid})
        await c.call("session.stop", {"session": sid})
        await c.call("session.resume", {"session": sid})
        assert "session/load" in methods_received(world)
        assert settings_sent(world) == [("session/set_model", {"modelId": "large"})] * 2


async def test_set_model_and_set_mode_while_the_agent_runs_tell_it_and_store_the_value(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        result = await c.call("session.set_model", {"session": sid, "model": "large"})
        assert result == {
            "session": sid,
            "key": "model",
            "value": "large",
            "applied": True,
            "via": "session/set_model",
            "offered": ["small", "large"],
        }
        mode = await c.call("session.set_mode", {"session": sid, "mode": "code"})
        assert (mode["applied"], mode["via"]) == (True, "session/set_mode")
        assert settings_sent(world) == [
            ("session/set_model", {"modelId": "large"}),
            ("session/set_mode", {"modeId": "code"}),
        ]
        assert await event_data(c, sid, "model_changed") == [
            {"model": "large", "by": "client", "previous": "small", "via": "session/set_model"}
        ]
        entries = (await c.call("session.config", {"session": sid}))["entries"]
        stored = {e["key"]: (e["value"], e["source"]) for e in entries}
        assert stored["model"] == ("large", "session")
        assert stored["mode"] == ("code", "session")
        # The next start of the agent (a new ACP session: the fake cannot load one)
        # sets them again.
        await c.call("session.stop", {"session": sid})
        await c.call("session.resume", {"session": sid})
        assert settings_sent(world)[2:] == [
            ("session/set_model", {"modelId": "large"}),
            ("session/set_mode", {"modeId": "code"}),
        ]


async def test_a_value_the_agent_does_not_offer_is_refused_listing_those_it_does(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        for running in (True, False):
            before = await c.call("session.get", {"session": sid})
            error = await c.error("session.set_model", {"session": sid, "model": "huge"})
            assert error["code"] == ErrorCode.INVALID_PARAMS
            assert "does not offer the model 'huge'; it offers: small, large" in error["message"]
            assert error["data"]["detail"] == {"offered": ["small", "large"]}
            error = await c.error("session.set_mode", {"session": sid, "mode": "yolo"})
            assert "it offers: ask, code" in error["message"]
            after = await c.call("session.get", {"session": sid})
            assert after["config"] == before["config"] == {}
            assert after["last_seq"] == before["last_seq"], f"journaled (running: {running})"
            if running:
                await c.call("session.stop", {"session": sid})
        assert settings_sent(world) == []


async def test_set_mode_while_the_agent_is_stopped_is_applied_at_its_next_start(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        await c.call("session.stop", {"session": sid})
        result = await c.call("session.set_mode", {"session": sid, "mode": "code"})
        assert (result["applied"], result["via"]) == (False, None)
        assert settings_sent(world) == []
        await c.call("session.resume", {"session": sid})
        assert settings_sent(world) == [("session/set_mode", {"modeId": "code"})]
        [changed] = await event_data(c, sid, "mode_changed")
        assert changed["by"] == "config"


async def test_a_session_whose_agent_never_started_takes_any_value_checked_at_the_start(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        result = await c.call("session.set_model", {"session": sid, "model": "huge"})
        assert (result["applied"], result["offered"]) == (False, [])
        await c.call("session.resume", {"session": sid})
        assert settings_sent(world) == []
        assert await event_data(c, sid, "setting_failed") == [
            {
                "key": "model",
                "value": "huge",
                "reason": "the agent does not offer the model 'huge'",
                "offered": ["small", "large"],
            }
        ]
        session = await c.call("session.get", {"session": sid})
        assert session["status"] == "idle", "the agent runs with its own model"


async def test_an_agent_that_offers_no_models_gives_a_clear_error(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        error = await c.error("session.set_model", {"session": sid, "model": "large"})
        assert error["code"] == ErrorCode.INVALID_STATE
        assert "offers no choice of model" in error["message"]
        assert settings_sent(world) == []
        assert (await c.call("session.get", {"session": sid}))["config"] == {}


async def test_an_agent_without_session_set_model_gives_a_clear_error(dirs: DaemonDirs) -> None:
    scenario = {**OFFERS, "set_model": False}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        error = await c.error("session.set_model", {"session": sid, "model": "large"})
        assert error["code"] == ErrorCode.INVALID_STATE
        assert "the agent refused session/set_model: method not found" in error["message"]
        assert "(code -32601)" in error["message"]
        assert (await c.call("session.get", {"session": sid}))["config"] == {}
        assert await event_data(c, sid, "model_changed") == []


async def test_config_options_are_used_where_the_agent_offers_them(dirs: DaemonDirs) -> None:
    scenario = {**OFFERS, "config_options": True}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call(
            "session.create", {"project": world.project, "config": {"mode": "code"}}
        )
        sid = session["id"]
        await c.call("session.resume", {"session": sid})
        result = await c.call("session.set_model", {"session": sid, "model": "large"})
        assert result["via"] == "session/set_config_option"
        assert settings_sent(world) == [
            ("session/set_config_option", {"configId": "mode", "value": "code"}),
            ("session/set_config_option", {"configId": "model", "value": "large"}),
        ]
        options = (await c.call("session.get", {"session": sid}))["agent_state"]["config_options"]
        assert {o["id"]: o["currentValue"] for o in options} == {"model": "large", "mode": "code"}


async def test_the_agents_own_change_of_mode_is_journaled(dirs: DaemonDirs) -> None:
    update = {"sessionUpdate": "current_mode_update", "currentModeId": "code"}
    scenario = {**OFFERS, "prompts": [[{"do": "update", "update": update}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.prompt", {"session": sid, "text": "switch"})
        assert await event_data(c, sid, "mode_changed") == [
            {"mode": "code", "by": "agent", "previous": "ask"}
        ]
        state = (await c.call("session.get", {"session": sid}))["agent_state"]
        assert state["modes"]["currentModeId"] == "code"


async def test_a_change_the_agent_announces_while_mimird_makes_it_is_journaled_once(
    dirs: DaemonDirs,
) -> None:
    scenario = {**OFFERS, "announce_mode": True}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        await c.call("session.set_mode", {"session": sid, "mode": "code"})
        # The agent's own notice came first; anything after the answer is in the journal
        # by the time the next call's events are.
        await c.call("session.prompt", {"session": sid, "text": "after"})
        assert await event_data(c, sid, "mode_changed") == [
            {"mode": "code", "by": "client", "previous": "ask", "via": "session/set_mode"}
        ]
        assert len(await event_data(c, sid, "update")) == 1, "the notice itself is journaled"


async def test_an_agents_own_change_said_both_ways_is_journaled_once(dirs: DaemonDirs) -> None:
    # As claude does: current_mode_update and config_option_update for one change.
    options = [
        {
            "id": "mode",
            "name": "Mode",
            "category": "mode",
            "type": "select",
            "currentValue": "code",
            "options": [{"value": "ask", "name": "Ask"}, {"value": "code", "name": "Code"}],
        }
    ]
    steps = [
        {
            "do": "update",
            "update": {"sessionUpdate": "current_mode_update", "currentModeId": "code"},
        },
        {
            "do": "update",
            "update": {"sessionUpdate": "config_option_update", "configOptions": options},
        },
    ]
    new = {
        "sessionId": "sess-1",
        "modes": {"currentModeId": "ask", "availableModes": [{"id": "ask"}, {"id": "code"}]},
        "configOptions": [{**options[0], "currentValue": "ask"}],
    }
    scenario = {"results": {"session/new": new}, "prompts": [steps]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.prompt", {"session": sid, "text": "switch"})
        assert await event_data(c, sid, "mode_changed") == [
            {"mode": "code", "by": "agent", "previous": "ask"}
        ]


async def test_bad_values_are_refused_by_the_config_and_the_methods(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        for value in ("", " padded", "x" * 201, "a\nb"):
            error = await c.error("session.set_model", {"session": sid, "model": value})
            assert error["code"] == ErrorCode.INVALID_PARAMS, value
            error = await c.error("session.update", {"session": sid, "config": {"mode": value}})
            assert error["code"] == ErrorCode.INVALID_PARAMS, value
            assert error["data"]["field"] == "config.mode"
        error = await c.error("session.set_mode", {"session": "0" * 26, "mode": "code"})
        assert error["code"] == ErrorCode.NOT_FOUND
