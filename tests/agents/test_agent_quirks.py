"""Presets that know their agents' quirks, each played by the scripted fake agent
behaving as the real one does: gemini-cli reading a file before creating it
(``missing_file``), agents that ignore EOF on stdin (``stop``), claude's default mode
that never asks (a kind's default ``mode``). The handoff of a conversation that
could not be loaded is in test_agent_handoff.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mimird.agents.presets import PRESETS, Quirks, resolve_command
from mimird.config import AgentSection, parse_config_file
from mimird.errors import ConfigError
from tests.support.agents import Client, agent_world, event_data, new_session, received
from tests.support.helpers import DaemonDirs

#: What ACP answers a missing file with (reference/acp.md: resource not found).
RESOURCE_NOT_FOUND = -32002


def _answers(world: Any) -> dict[Any, dict[str, Any]]:
    """The client's answers to the fake agent's requests, by request id."""
    return {m["id"]: m for m in received(world) if "id" in m and "method" not in m}


def _reads(dirs: DaemonDirs) -> list[dict[str, Any]]:
    """gemini-cli's way of creating a file: it reads it first."""
    return [
        {"do": "request", "id": "new", "method": "fs/read_text_file", "params": {"path": "new.py"}},
        {
            "do": "request",
            "id": "outside",
            "method": "fs/read_text_file",
            "params": {"path": str(dirs.root / "nowhere.txt")},
        },
        {
            "do": "request",
            "id": "deep",
            "method": "fs/read_text_file",
            "params": {"path": "no/such/dir/x.txt"},
        },
    ]


# ---- missing_file ------------------------------------------------------------------------


async def test_missing_file_empty_answers_a_missing_file_with_empty_content(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [_reads(dirs)]}
    async with (
        agent_world(dirs, scenario, agent={"missing_file": "empty"}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        sid = await new_session(world, c)
        await c.call("session.prompt", {"session": sid, "text": "create new.py"})
        answers = _answers(world)
        assert answers["new"]["result"] == {"content": ""}
        assert answers["deep"]["result"] == {"content": ""}
        # The sandbox comes first: a path outside the workspace is still refused.
        assert "outside" in answers["outside"]["error"]["message"]
        reads = await event_data(c, sid, "file_read")
        assert reads == [
            {"path": "new.py", "chars": 0, "missing": True},
            {"path": "no/such/dir/x.txt", "chars": 0, "missing": True},
        ]
        refused = await event_data(c, sid, "file_refused")
        assert [r["path"] for r in refused] == [str(dirs.root / "nowhere.txt")]
        assert not (await workspace_path(c, sid) / "new.py").exists(), "reading made nothing"


async def test_missing_file_error_is_the_default_answer(dirs: DaemonDirs) -> None:
    async with (
        agent_world(dirs, {"prompts": [_reads(dirs)]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        sid = await new_session(world, c)
        await c.call("session.prompt", {"session": sid, "text": "create new.py"})
        answers = _answers(world)
        assert answers["new"]["error"]["code"] == RESOURCE_NOT_FOUND
        assert "does not exist" in answers["new"]["error"]["message"]
        assert await event_data(c, sid, "file_read") == []


async def workspace_path(c: Client, sid: str) -> Path:
    return Path((await c.call("session.get", {"session": sid}))["workspace"]["path"])


# ---- stop ------------------------------------------------------------------------------


@pytest.mark.parametrize(("stop", "seen"), [("term", ["SIGTERM"]), ("eof", ["eof", "SIGTERM"])])
async def test_stop_term_sends_sigterm_before_closing_stdin(
    dirs: DaemonDirs, stop: str, seen: list[str]
) -> None:
    # An agent that ignores EOF, as claude-agent-acp and codex-acp do: with "eof" the
    # stop closes stdin and waits stop_grace_s for nothing, then SIGTERM; with
    # "term" SIGTERM is the first thing the agent gets.
    signals = dirs.root / "signals.txt"
    scenario = {"ignore_eof": True, "signals": str(signals)}
    async with (
        agent_world(dirs, scenario, agent={"stop": stop}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        sid = await new_session(world, c)
        await c.call("session.prompt", {"session": sid, "text": "hi"})
        await c.call("session.stop", {"session": sid})
        assert signals.read_text().splitlines() == seen
        exited = await event_data(c, sid, "agent_exited")
        assert exited[-1]["expected"] is True
        assert exited[-1]["signal"] == "SIGTERM"
        assert (await c.call("session.get", {"session": sid}))["status"] == "stopped"


# ---- the kind's default mode -------------------------------------------------------------

MODES = {"modes": ["auto", "default", "plan"]}


def _set_modes(world: Any) -> list[str]:
    return [m["params"]["modeId"] for m in received(world) if m.get("method") == "session/set_mode"]


async def test_a_kinds_default_mode_is_set_at_the_agents_start(dirs: DaemonDirs) -> None:
    # claude-agent-acp starts in "auto", which never asks permission: its preset
    # sets "default", so that Mimir's permission flow applies.
    async with (
        agent_world(dirs, MODES, agent={"mode": "default"}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        sid = await new_session(world, c)
        await c.call("session.resume", {"session": sid})
        assert _set_modes(world) == ["default"]
        changed = await event_data(c, sid, "mode_changed")
        assert changed == [
            {"mode": "default", "by": "config", "previous": "auto", "via": "session/set_mode"}
        ]
        session = await c.call("session.get", {"session": sid})
        assert session["agent_state"]["modes"]["currentModeId"] == "default"


async def test_the_layered_mode_wins_over_the_kinds_default(dirs: DaemonDirs) -> None:
    async with (
        agent_world(dirs, MODES, agent={"mode": "default"}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session = await c.call(
            "session.create", {"project": world.project, "config": {"mode": "plan"}}
        )
        await c.call("session.resume", {"session": session["id"]})
        assert _set_modes(world) == ["plan"]


# ---- presets and the config file -------------------------------------------------------------


def test_the_presets_know_their_agents_quirks() -> None:
    assert PRESETS["gemini"].quirks == Quirks(missing_file="empty")
    assert PRESETS["claude"].quirks == Quirks(stop="term", mode="default")
    assert PRESETS["codex"].quirks == Quirks(stop="term")
    assert PRESETS["opencode"].quirks == Quirks()


def test_a_config_section_keeps_the_presets_quirks_it_does_not_set() -> None:
    python = sys.executable
    configured = {
        "gemini": AgentSection(command=python),
        "claude": AgentSection(command=python, stop="eof"),
        "codex": AgentSection(command=python, mode="plan"),
        "mine": AgentSection(command=python, missing_file="empty"),
    }
    quirks = {kind: resolve_command(kind, configured, {}, None).quirks for kind in configured}
    assert quirks == {
        "gemini": Quirks(missing_file="empty"),
        "claude": Quirks(stop="eof", mode="default"),
        "codex": Quirks(stop="term", mode="plan"),
        "mine": Quirks(missing_file="empty"),
    }


def test_opencode_is_made_to_ask_and_a_kinds_env_or_the_layers_may_say_otherwise() -> None:
    """opencode edits and runs commands without asking unless its config says ask: the
    preset's OPENCODE_PERMISSION makes it ask, so that the tool policy decides. It
    stays under a config section's env (and an installed agent's), which, like the
    layered env, may set the variable otherwise."""
    python = sys.executable
    asks = json.loads(PRESETS["opencode"].env["OPENCODE_PERMISSION"])
    assert asks == {"edit": "ask", "bash": "ask", "webfetch": "ask"}
    plain = {"opencode": AgentSection(command=python, env={"HOME": "/h"})}
    started = resolve_command("opencode", plain, {}, None)
    assert json.loads(started.env["OPENCODE_PERMISSION"]) == asks
    assert started.env["HOME"] == "/h"
    own = {"opencode": AgentSection(command=python, env={"OPENCODE_PERMISSION": "{}"})}
    assert resolve_command("opencode", own, {}, None).env["OPENCODE_PERMISSION"] == "{}"
    layered = resolve_command("opencode", plain, {"OPENCODE_PERMISSION": '"allow"'}, None)
    assert layered.env["OPENCODE_PERMISSION"] == '"allow"'
    assert (
        "OPENCODE_PERMISSION"
        not in resolve_command("mine", {"mine": plain["opencode"]}, {}, None).env
    )


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('missing_file = "ignore"', "agents.fake.missing_file"),
        ('stop = "kill"', "agents.fake.stop"),
        ('mode = ""', "agents.fake.mode"),
        ('mode = " plan"', "agents.fake.mode"),
        ('mode = "pl\\u0007an"', "agents.fake.mode"),
        ("stop = 1", "agents.fake.stop"),
    ],
)
def test_a_bad_quirk_in_the_config_file_names_its_key(tmp_path: Path, line: str, key: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[agents.fake]\ncommand = "x"\n{line}\n')
    with pytest.raises(ConfigError) as caught:
        parse_config_file(path)
    assert f"key '{key}'" in str(caught.value)
