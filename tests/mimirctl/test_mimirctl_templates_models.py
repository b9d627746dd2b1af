"""``mimirctl prompt --template/--var``, ``mimirctl template ls``, ``session new
--model/--mode/--prompt/--template`` and ``session model|mode ID VALUE``: mimirctl
as a real process against a real daemon, the agent the scripted fake ACP agent."""

from __future__ import annotations

import json
from typing import Any, Final

from mimirctl.commands import EXIT_INVALID_STATE, EXIT_USAGE
from tests.mimirctl.test_mimirctl_attach import mimirctl
from tests.support.agents import Client, agent_world, event_data, new_session, received
from tests.support.helpers import DaemonDirs

OFFERS: Final = {"models": ["small", "large"], "modes": ["ask", "code"]}
TEMPLATES: Final = {"review": "Review {file} on {branch} for {focus}.", "hello": "Hello"}


async def with_templates(c: Client, world: Any) -> None:
    await c.call(
        "project.update", {"project": world.project, "config": {"prompt_templates": TEMPLATES}}
    )


def prompts_received(world: Any) -> list[str]:
    return [
        m["params"]["prompt"][0]["text"]
        for m in received(world)
        if m.get("method") == "session/prompt"
    ]


async def test_prompt_with_a_template_and_vars(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        await with_templates(c, world)
        sid = await new_session(world, c)
        done = await mimirctl(
            dirs,
            "prompt",
            sid,
            "--template",
            "review",
            "--var",
            "file=src/app.py",
            "--var",
            "focus=a=b",
        )
        assert done.returncode == 0, done.stderr
        branch = (await c.call("session.get", {"session": sid}))["workspace"]["branch"]
        expected = f"Review src/app.py on {branch} for a=b."
        assert prompts_received(world) == [expected]
        assert f"> {expected}" in done.stdout.decode()


async def test_prompt_with_a_missing_var_exits_2_naming_it(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        await with_templates(c, world)
        sid = await new_session(world, c)
        done = await mimirctl(dirs, "prompt", sid, "--template", "review", "--var", "file=x")
        assert done.returncode == EXIT_USAGE
        assert "needs a value for {focus}" in done.stderr.decode()
        for args in (["text", "--template", "hello"], [], ["--var", "a=b", "text"]):
            bad = await mimirctl(dirs, "prompt", sid, *args)
            assert bad.returncode == EXIT_USAGE, args
        bad = await mimirctl(dirs, "prompt", sid, "--template", "hello", "--var", "novalue")
        assert "is not KEY=VALUE" in bad.stderr.decode()
        assert prompts_received(world) == []


async def test_template_ls_shows_each_template_its_layer_and_placeholders(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        await with_templates(c, world)
        session = await c.call(
            "session.create",
            {"project": world.project, "config": {"prompt_templates": {"hello": "Hi {task}"}}},
        )
        done = await mimirctl(dirs, "template", "ls", "--session", session["id"])
        assert done.returncode == 0, done.stderr
        lines = done.stdout.decode().splitlines()
        assert lines[0].split() == ["NAME", "SOURCE", "PLACEHOLDERS", "TEXT"]
        assert lines[1].split() == ["hello", "session", "{task}", "Hi", "{task}"]
        assert lines[2].split()[:5] == ["review", "project", "{file}", "{branch}", "{focus}"]
        assert lines[-1].startswith("built-ins (no --var needed): {task}, {title}")
        by_project = await mimirctl(dirs, "template", "ls", "-p", "demo", "--json")
        listed = json.loads(by_project.stdout)
        assert [(t["name"], t["source"]) for t in listed["templates"]] == [
            ("hello", "project"),
            ("review", "project"),
        ]
        none = await mimirctl(dirs, "template", "ls")
        assert none.stdout.decode().startswith("no prompt templates")


async def test_session_new_with_model_mode_and_a_first_prompt(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        await with_templates(c, world)
        done = await mimirctl(
            dirs,
            "session",
            "new",
            "demo",
            "--model",
            "large",
            "--mode",
            "code",
            "--template",
            "review",
            "--var",
            "file=a.py",
            "--var",
            "focus=bugs",
            "--json",
        )
        assert done.returncode == 0, done.stderr
        session = json.loads(done.stdout)
        assert session["config"] == {"model": "large", "mode": "code"}
        await c.until(
            "session.events",
            {"session": session["id"], "kind": "turn_ended"},
            lambda found: found["events"],
        )
        methods = [m["method"] for m in received(world) if "id" in m and "method" in m]
        assert methods.index("session/set_model") < methods.index("session/prompt")
        assert prompts_received(world) == [
            f"Review a.py on {session['workspace']['branch']} for bugs."
        ]
        # A template that cannot be filled: nothing is made.
        bad = await mimirctl(dirs, "session", "new", "demo", "--template", "review")
        assert bad.returncode == EXIT_USAGE
        assert len((await c.call("session.list", {}))["sessions"]) == 1


async def test_session_model_and_mode_set_them_and_say_how(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        done = await mimirctl(dirs, "session", "model", sid, "large")
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode() == (
            "model set to large (the agent was told: session/set_model)\n"
        )
        refused = await mimirctl(dirs, "session", "mode", sid, "yolo")
        assert refused.returncode == EXIT_USAGE
        assert "it offers: ask, code" in refused.stderr.decode()
        await c.call("session.stop", {"session": sid})
        stored = await mimirctl(dirs, "session", "mode", sid, "code")
        assert stored.stdout.decode() == "mode code stored: applied when the agent next starts\n"
        assert [d["model"] for d in await event_data(c, sid, "model_changed")] == ["large"]


async def test_session_model_of_an_agent_offering_none_exits_6(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        done = await mimirctl(dirs, "session", "model", sid, "large")
        assert done.returncode == EXIT_INVALID_STATE
        assert "offers no choice of model" in done.stderr.decode()


async def test_session_show_says_the_agents_current_model_and_mode(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, OFFERS) as world, Client.connect(world.daemon.socket) as c:
        sid = await new_session(world, c)
        before = await mimirctl(dirs, "session", "show", sid)
        assert "model:" not in before.stdout.decode(), "no agent has said anything yet"
        await c.call("session.resume", {"session": sid})
        await c.call("session.set_mode", {"session": sid, "mode": "code"})
        shown = (await mimirctl(dirs, "session", "show", sid)).stdout.decode().splitlines()
        assert [line.split() for line in shown if line.startswith(("model:", "mode:"))] == [
            ["model:", "small"],
            ["mode:", "code"],
        ]
