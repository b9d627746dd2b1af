"""Installed agents through the one resolver: agent.list and starting agree, a preset's
name stands for its registry id and keeps its quirks, a tampered record is not trusted."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mimird.agents.installed import InstalledAgent, record_path, write_record
from mimird.agents.presets import PRESETS, agent_kinds, resolve_command
from mimird.config import AgentSection
from mimird.errors import AgentUnavailable


def installed(agents_dir: Path, agent_id: str, version: str, command: str) -> InstalledAgent:
    record = InstalledAgent(
        id=agent_id,
        name=agent_id,
        version=version,
        distribution="npx",
        package=f"@example/{agent_id}",
        command=command,
        args=["--acp"],
        env={"FROM_MANIFEST": "1"},
        registry="snapshot",
        registry_date="2026-02-07",
        installed_at="2026-12-07T00:00:00+00:00",
    )
    executable = record.executable(agents_dir)
    executable.parent.mkdir(parents=True, exist_ok=True)
    executable.write_text("#!/bin/sh\nexit 0\n")
    executable.chmod(executable.stat().st_mode | stat.S_IXUSR)
    write_record(agents_dir, record)
    return record


def test_an_installed_agent_is_listed_and_started_alike(tmp_path: Path) -> None:
    agents_dir = tmp_path / "agents"
    record = installed(agents_dir, "qwen-code", "0.9.1", "node_modules/.bin/qwen")
    [kind] = [
        k for k in agent_kinds({}, {"PATH": str(tmp_path)}, agents_dir) if k.name == "qwen-code"
    ]
    command = resolve_command("qwen-code", {}, {"PATH": str(tmp_path)}, agents_dir)
    path = str(record.executable(agents_dir))
    assert (kind.found, kind.source, kind.path, kind.version) == (True, "installed", path, "0.9.1")
    assert (kind.registry, kind.registry_date, kind.install) == ("snapshot", "2026-02-07", None)
    assert command.argv == [path, "--acp"]
    assert command.env["FROM_MANIFEST"] == "1"


def test_a_presets_registry_agent_stands_for_the_preset_with_its_quirks(tmp_path: Path) -> None:
    agents_dir = tmp_path / "agents"
    record = installed(agents_dir, "claude-code-acp", "0.16.0", "node_modules/.bin/claude-code-acp")
    kinds = {k.name: k for k in agent_kinds({}, {"PATH": str(tmp_path)}, agents_dir)}
    assert "claude-code-acp" not in kinds
    assert (kinds["claude"].source, kinds["claude"].version) == ("installed", "0.16.0")
    for name in ("claude", "claude-code-acp"):
        command = resolve_command(name, {}, {"PATH": str(tmp_path)}, agents_dir)
        assert command.argv[0] == str(record.executable(agents_dir))
        assert command.quirks == PRESETS["claude"].quirks


def test_the_config_files_section_wins_over_an_installed_agent(tmp_path: Path) -> None:
    agents_dir = tmp_path / "agents"
    installed(agents_dir, "gemini", "0.27.3", "node_modules/.bin/gemini")
    mine = tmp_path / "my-gemini"
    mine.write_text("#!/bin/sh\n")
    mine.chmod(0o755)
    configured = {"gemini": AgentSection(command=str(mine))}
    command = resolve_command("gemini", configured, {"PATH": str(tmp_path)}, agents_dir)
    assert command.argv == [str(mine)]


def test_a_missing_preset_says_the_command_that_installs_it(tmp_path: Path) -> None:
    kinds = {k.name: k for k in agent_kinds({}, {"PATH": str(tmp_path)}, tmp_path / "agents")}
    assert kinds["opencode"].install == "mimirctl agent install opencode"
    assert kinds["claude"].install == "mimirctl agent install claude"
    assert kinds["goose"].install is None  # not in the registry's snapshot
    with pytest.raises(AgentUnavailable, match="mimirctl agent install gemini"):
        resolve_command("gemini", {}, {"PATH": str(tmp_path)}, tmp_path / "agents")


@pytest.mark.parametrize("command", ["../../../bin/sh", "/bin/sh"])
def test_a_tampered_record_is_not_trusted(tmp_path: Path, command: str) -> None:
    agents_dir = tmp_path / "agents"
    installed(agents_dir, "qwen-code", "0.9.1", "node_modules/.bin/qwen")
    path = record_path(agents_dir, "qwen-code")
    path.write_text(path.read_text().replace("node_modules/.bin/qwen", command))
    names = {k.name for k in agent_kinds({}, {"PATH": str(tmp_path)}, agents_dir)}
    assert "qwen-code" not in names
    with pytest.raises(AgentUnavailable, match="unknown agent kind"):
        resolve_command("qwen-code", {}, {"PATH": str(tmp_path)}, agents_dir)
