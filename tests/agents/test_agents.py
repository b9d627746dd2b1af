"""agent.list: presets, the config file's [agents.<name>], and whether each command is found."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.agents.presets import PRESETS, agent_kinds, resolve_command
from mimird.config import AgentSection, Overrides, load_settings
from mimird.errors import AgentUnavailable, ConfigError
from tests.support.helpers import DaemonDirs, TrioClient, in_process_daemon


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _by_name(kinds: list[Any]) -> dict[str, Any]:
    return {kind.name: kind for kind in kinds}


def test_every_preset_is_listed_with_its_acp_command(tmp_path: Path) -> None:
    kinds = _by_name(agent_kinds({}, {"PATH": str(tmp_path)}))
    assert set(kinds) == set(PRESETS)
    assert (kinds["opencode"].command, kinds["opencode"].args) == ("opencode", ["acp"])
    assert (kinds["gemini"].command, kinds["gemini"].args) == ("gemini", ["--acp"])
    assert (kinds["goose"].command, kinds["goose"].args) == ("goose", ["acp"])
    assert not any(kind.found for kind in kinds.values())


def test_a_preset_is_found_on_path_with_the_first_command_that_exists(tmp_path: Path) -> None:
    _executable(tmp_path / "claude-code-acp")
    claude = _by_name(agent_kinds({}, {"PATH": str(tmp_path)}))["claude"]
    assert (claude.found, claude.command, claude.path) == (
        True,
        "claude-code-acp",
        str(tmp_path / "claude-code-acp"),
    )


def test_the_config_file_adds_a_kind_and_can_replace_a_preset(tmp_path: Path) -> None:
    mine = _executable(tmp_path / "bin" / "my-agent")
    configured = {
        "mine": AgentSection(command=str(mine), args=["--acp"], description="mine"),
        "opencode": AgentSection(command="/nowhere/opencode-dev", args=["acp"]),
    }
    kinds = _by_name(agent_kinds(configured, {"PATH": str(tmp_path)}))
    assert (kinds["mine"].source, kinds["mine"].found, kinds["mine"].args) == (
        "config",
        True,
        ["--acp"],
    )
    assert (kinds["opencode"].source, kinds["opencode"].found) == ("config", False)


def test_agent_list_and_starting_find_commands_on_the_same_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon_only = _executable(tmp_path / "daemon-bin" / "daemon-only-agent")
    agent_only = _executable(tmp_path / "agent-bin" / "agent-only-agent")
    kind_only = _executable(tmp_path / "kind-bin" / "kind-only-agent")
    monkeypatch.setenv("PATH", str(daemon_only.parent))
    configured = {
        "daemon": AgentSection(command="daemon-only-agent"),
        "agent": AgentSection(command="agent-only-agent"),
        "kind": AgentSection(command="kind-only-agent", env={"PATH": str(kind_only.parent)}),
    }
    # The layered env (config defaults, project, session) gives the agent its PATH.
    layered = {"PATH": str(agent_only.parent)}
    listed = _by_name(agent_kinds(configured, layered))
    for name in configured:
        try:
            started = resolve_command(name, configured, layered, None).argv[0]
        except AgentUnavailable:
            started = None
        assert (listed[name].found, listed[name].path) == (started is not None, started), name
    assert listed["agent"].path == str(agent_only)
    assert not listed["daemon"].found, "not on the PATH the agent gets"
    # The kind's own env counts, below the layered env: here the layered PATH wins.
    assert not listed["kind"].found
    alone = _by_name(agent_kinds(configured))
    assert alone["daemon"].path == str(daemon_only)
    assert resolve_command("daemon", configured, {}, None).argv == [str(daemon_only)]
    assert alone["kind"].path == str(kind_only)
    assert resolve_command("kind", configured, {}, None).argv == [str(kind_only)]


async def test_agent_list_finds_agents_on_the_path_of_the_config_files_defaults(
    dirs: DaemonDirs,
) -> None:
    mine = await trio.to_thread.run_sync(_executable, dirs.root / "agent-bin" / "my-agent")
    dirs.config.write_text(
        f'[defaults.env]\nPATH = "{mine.parent}"\n\n[agents.mine]\ncommand = "my-agent"\n'
    )
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as client:
        with trio.fail_after(10):
            result = await client.call("agent.list")
    (kind,) = [agent for agent in result["agents"] if agent["name"] == "mine"]
    assert (kind["found"], kind["path"]) == (True, str(mine))


def test_a_bad_agents_section_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[agents.mine]\ncommand = "x"\nargz = []\n')
    with pytest.raises(ConfigError, match=r"config.toml: key 'agents.mine.argz': unknown key"):
        load_settings(Overrides(config=str(config)), {"HOME": str(tmp_path)})


async def test_agent_list_over_the_socket_shows_the_config_files_agents(dirs: DaemonDirs) -> None:
    mine = await trio.to_thread.run_sync(_executable, dirs.root / "bin" / "my-agent")
    dirs.config.write_text(f'[agents.mine]\ncommand = "{mine}"\nargs = ["acp"]\n')
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as client:
        with trio.fail_after(10):
            result = await client.call("agent.list")
    names = [agent["name"] for agent in result["agents"]]
    assert names == sorted(names)
    (kind,) = [agent for agent in result["agents"] if agent["name"] == "mine"]
    assert kind == {
        "name": "mine",
        "command": str(mine),
        "args": ["acp"],
        "source": "config",
        "found": True,
        "path": str(mine),
        "description": "",
        "version": None,
        "installed_at": None,
        "registry": None,
        "registry_date": None,
        "install": None,
    }
    assert os.environ.get("NOTIFY_SOCKET") is None


def test_the_readme_agents_example_loads_once_uncommented(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("[agents.mine]", 1)[1].split("\n\n", 1)[0]
    lines = [line.removeprefix("# ").split("  #")[0] for line in block.splitlines()[1:]]
    config = tmp_path / "config.toml"
    config.write_text("[agents.mine]\n" + "\n".join(lines) + "\n")
    settings = load_settings(Overrides(config=str(config)), {"HOME": str(tmp_path)})
    assert settings.agents["mine"] == AgentSection(
        command="my-acp-agent",
        args=["--acp"],
        env={"MY_AGENT_MODE": "fast"},
        description="my agent",
        missing_file="error",
        stop="eof",
        mode="default",
    )
