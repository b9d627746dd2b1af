"""Prompt templates: ``session.prompt`` and ``session.create``'s ``prompt`` with
``template`` + ``vars``, the built-ins, every way a template or its vars can be
wrong (an error that names what, and nothing journaled or sent), and
``template.list``. The agent is the scripted fake ACP agent, a real subprocess."""

from __future__ import annotations

from typing import Any, Final

import trio

from mimird.wire.errors import ErrorCode
from tests.support.agents import Client, agent_world, event_data, received
from tests.support.helpers import DaemonDirs

TEMPLATES: Final = {
    "review": "Review {file} in {project} on {branch} from {base}.\nTask: {task} ({title}) {{ok}}",
    "plain": "Say hello",
    "needs_task": "Do this: {task}",
}


def sent_prompts(world: Any) -> list[str]:
    """The texts of every session/prompt the agent received, in order."""
    return [
        " ".join(block["text"] for block in m["params"]["prompt"])
        for m in received(world)
        if m.get("method") == "session/prompt"
    ]


async def templated_session(c: Client, world: Any, **params: Any) -> dict[str, Any]:
    await c.call(
        "project.update", {"project": world.project, "config": {"prompt_templates": TEMPLATES}}
    )
    session: dict[str, Any] = await c.call(
        "session.create",
        {"project": world.project, "title": "Fix it", "task": "make the tests pass", **params},
    )
    return session


async def test_a_template_is_filled_with_vars_and_built_ins_and_journaled_with_its_name(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session = await templated_session(c, world)
        result = await c.call(
            "session.prompt",
            {"session": session["id"], "template": "review", "vars": {"file": "src/app.py"}},
        )
        assert result["stop_reason"] == "end_turn"
        branch = session["workspace"]["branch"]
        expected = (
            f"Review src/app.py in demo on {branch} from main.\n"
            "Task: make the tests pass (Fix it) {ok}"
        )
        assert sent_prompts(world) == [expected]
        [prompt] = await event_data(c, session["id"], "prompt")
        assert prompt == {"content": [{"type": "text", "text": expected}], "template": "review"}
        # A plain prompt's event has no template.
        await c.call("session.prompt", {"session": session["id"], "text": "again"})
        assert "template" not in (await event_data(c, session["id"], "prompt"))[1]


async def test_a_var_overrides_a_built_in(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session = await templated_session(c, world)
        await c.call(
            "session.prompt",
            {"session": session["id"], "template": "needs_task", "vars": {"task": "other work"}},
        )
        assert sent_prompts(world) == ["Do this: other work"]


async def test_a_missing_variable_is_invalid_params_naming_it_and_nothing_is_sent(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session = await templated_session(c, world, task="")
        before = await c.call("session.get", {"session": session["id"]})
        error = await c.error("session.prompt", {"session": session["id"], "template": "review"})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert "{file}" in error["message"]
        assert "{task} (the session has no task)" in error["message"]
        assert error["data"]["field"] == "vars.file"
        assert error["data"]["detail"] == {"template": "review", "missing": ["file", "task"]}
        after = await c.call("session.get", {"session": session["id"]})
        assert after["last_seq"] == before["last_seq"]
        assert after["status"] == "created", "the agent was not even started"
        assert sent_prompts(world) == []


async def test_an_unknown_template_is_refused_naming_the_templates_that_exist(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session = await templated_session(c, world)
        error = await c.error("session.prompt", {"session": session["id"], "template": "reveiw"})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert "no prompt template 'reveiw'" in error["message"]
        assert "templates: needs_task, plain, review" in error["message"]
        assert error["data"]["field"] == "template"
        assert error["data"]["detail"] == {"templates": ["needs_task", "plain", "review"]}


async def test_exactly_one_of_text_content_or_template_is_taken(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session = await templated_session(c, world)
        sid = session["id"]
        for params, field, words in (
            ({"text": "a", "template": "plain"}, "template", "not text and template"),
            ({}, "text", "give exactly one of text, content or template"),
            ({"text": "a", "vars": {"x": "1"}}, "vars", "vars go with template"),
        ):
            error = await c.error("session.prompt", {"session": sid, **params})
            assert error["code"] == ErrorCode.INVALID_PARAMS, params
            assert words in error["message"], (params, error)
            assert error["data"]["field"] == field, (params, error)
        assert sent_prompts(world) == []


async def test_vars_are_bounded_and_so_is_the_prompt_they_make(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        templates = {**TEMPLATES, "many": "{x}" * 101}
        await c.call(
            "project.update",
            {"project": world.project, "config": {"prompt_templates": templates}},
        )
        sid = (await c.call("session.create", {"project": world.project}))["id"]
        cases = [
            ({f"v{i}": "v" for i in range(101)}, "length <= 100 (field 'vars')"),
            ({"1x": "v"}, "is not a name"),
            ({"file": "v" * 100_001}, "longer than 100000 characters"),
            # 101 times 100,000 characters: refused before anything that long is made.
            ({"x": "v" * 100_000}, "more than the 10000000 a prompt may have"),
        ]
        for vars_, words in cases:
            name = "many" if "x" in vars_ else "review"
            error = await c.error(
                "session.prompt", {"session": sid, "template": name, "vars": vars_}
            )
            assert error["code"] == ErrorCode.INVALID_PARAMS
            assert words in error["message"], error
        assert sent_prompts(world) == []


async def test_a_template_that_cannot_be_filled_is_refused_in_the_config(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        project = await c.call("project.get", {"project": world.project})
        for text, words in (
            ("Use { alone", "bad template syntax"),
            ("{x.__class__}", "is not a name"),
            ("{0}", "is not a name"),
            ("{}", "has no name"),
            ("{x!r}", "takes no format spec or conversion"),
        ):
            error = await c.error(
                "project.update",
                {"project": world.project, "config": {"prompt_templates": {"t": text}}},
            )
            assert error["code"] == ErrorCode.INVALID_PARAMS, text
            assert words in error["message"], (text, error)
            assert error["data"]["field"] == "config.prompt_templates.t"
        assert await c.call("project.get", {"project": world.project}) == project


async def test_session_create_sends_a_first_prompt_and_answers_at_once(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "echo"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        await c.call(
            "project.update",
            {"project": world.project, "config": {"prompt_templates": TEMPLATES}},
        )
        text = await c.call(
            "session.create", {"project": world.project, "title": "a", "prompt": "hello there"}
        )
        templated = await c.call(
            "session.create",
            {
                "project": world.project,
                "title": "b",
                "task": "the task",
                "prompt": {"template": "needs_task"},
            },
        )
        for session in (text, templated):
            assert session["status"] == "created"
            await c.until(
                "session.events",
                {"session": session["id"], "kind": "turn_ended"},
                lambda found: found["events"],
            )
        assert sorted(sent_prompts(world)) == ["Do this: the task", "hello there"]
        [prompt] = await event_data(c, templated["id"], "prompt")
        assert prompt["template"] == "needs_task"
        [message] = await event_data(c, text["id"], "message")
        assert message["text"] == "hello there"


async def test_session_create_with_a_prompt_that_cannot_be_made_creates_nothing(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        await c.call(
            "project.update",
            {"project": world.project, "config": {"prompt_templates": TEMPLATES}},
        )
        for prompt, words in (
            ({"template": "review"}, "{file}"),
            ({"template": "nope"}, "no prompt template 'nope'"),
            ({"template": "plain", "vars": {"file": "x" * 100_001}}, "longer than"),
        ):
            error = await c.error("session.create", {"project": world.project, "prompt": prompt})
            assert error["code"] == ErrorCode.INVALID_PARAMS
            assert words in error["message"], error
        # A private copy (a project that is not a git repository) has no branch: {branch}
        # has no value, and that is said before anything is made.
        plain = world.repo.parent / "plain"
        plain.mkdir()
        (plain / "f.txt").write_text("x\n")
        await c.call("project.add", {"path": str(plain), "name": "plain"})
        error = await c.error(
            "session.create",
            {
                "project": "plain",
                "config": {"prompt_templates": {"b": "on {branch}"}},
                "prompt": {"template": "b"},
            },
        )
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert "{branch} (the session has no branch)" in error["message"]
        listed = await c.call("session.list", {"include_archived": True, "include_deleted": True})
        assert listed["sessions"] == []


async def test_a_first_prompt_that_cannot_be_sent_is_journaled_as_prompt_failed(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call(
            "session.create",
            {"project": world.project, "agent": "no-such-agent", "prompt": "hello"},
        )
        with trio.fail_after(10):
            found = await c.until(
                "session.events",
                {"session": session["id"], "kind": "prompt_failed"},
                lambda found: found["events"],
            )
        data = found["events"][0]["data"]
        assert data["error"] == "agent_unavailable"
        assert "no-such-agent" in data["reason"]
        assert await event_data(c, session["id"], "prompt") == []


async def test_template_list_shows_the_effective_templates_and_their_layers(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        await c.call(
            "project.update",
            {"project": world.project, "config": {"prompt_templates": {"a": "A {x}", "b": "B"}}},
        )
        session = await c.call(
            "session.create",
            {"project": world.project, "config": {"prompt_templates": {"b": "{task} b"}}},
        )
        by_session = await c.call("template.list", {"session": session["id"]})
        assert by_session["templates"] == [
            {
                "name": "a",
                "text": "A {x}",
                "source": "project",
                "placeholders": ["x"],
                "problem": None,
            },
            {
                "name": "b",
                "text": "{task} b",
                "source": "session",
                "placeholders": ["task"],
                "problem": None,
            },
        ]
        assert by_session["builtins"] == ["task", "title", "branch", "base", "project"]
        by_project = await c.call("template.list", {"project": "demo"})
        assert [(t["name"], t["source"]) for t in by_project["templates"]] == [
            ("a", "project"),
            ("b", "project"),
        ]
        assert (await c.call("template.list", {}))["templates"] == []
        error = await c.error("template.list", {"project": "ghost"})
        assert error["code"] == ErrorCode.NOT_FOUND
