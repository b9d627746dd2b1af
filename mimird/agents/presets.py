"""Agent kinds: how to start each ACP agent Mimir knows.

Presets cover the common agents; the config file adds or overrides kinds under
``[agents.<name>]`` (command, args, env, description). A kind whose command is
not on the daemon's PATH is listed, marked not found, so that users see why a
session could not start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from mimird.config import AgentSection
from mimird.errors import AgentUnavailable
from mimird.processes import child_environment
from mimird.wire.types import AgentKind


@dataclass(frozen=True, slots=True)
class Preset:
    #: Commands to try, in order; the first one on PATH is used.
    commands: tuple[str, ...]
    args: tuple[str, ...] = ()
    description: str = ""
    env: Mapping[str, str] = field(default_factory=dict)


PRESETS: Final[dict[str, Preset]] = {
    "opencode": Preset(("opencode",), ("acp",), "opencode (npm opencode-ai)"),
    "claude": Preset(
        ("claude-agent-acp", "claude-code-acp"),
        (),
        "Claude Code through its ACP adapter (npm @agentclientprotocol/claude-agent-acp or "
        "@zed-industries/claude-code-acp)",
    ),
    "codex": Preset(
        ("codex-acp",), (), "Codex through its ACP adapter (npm @zed-industries/codex-acp)"
    ),
    "gemini": Preset(("gemini",), ("--acp",), "Gemini CLI (npm @google/gemini-cli)"),
    "goose": Preset(("goose",), ("acp",), "goose"),
}


def agent_kinds(configured: Mapping[str, AgentSection], path: str | None = None) -> list[AgentKind]:
    """Every kind, presets first overridden by the config file's, sorted by name.
    Sync (it looks at PATH): run it in a thread."""
    kinds: dict[str, AgentKind] = {}
    for name, preset in PRESETS.items():
        found = next(
            ((c, where) for c in preset.commands if (where := shutil.which(c, path=path))), None
        )
        command = found[0] if found else preset.commands[0]
        kinds[name] = AgentKind(
            name=name,
            command=command,
            args=list(preset.args),
            source="preset",
            found=found is not None,
            path=found[1] if found else None,
            description=preset.description,
        )
    for name, section in configured.items():
        where = shutil.which(section.command, path=path)
        kinds[name] = AgentKind(
            name=name,
            command=section.command,
            args=list(section.args),
            source="config",
            found=where is not None,
            path=where,
            description=section.description,
        )
    return [kinds[name] for name in sorted(kinds)]


@dataclass(frozen=True, slots=True)
class AgentCommand:
    kind: str
    argv: list[str]
    env: dict[str, str]


def resolve_command(
    kind: str, configured: Mapping[str, AgentSection], layered_env: Mapping[str, str]
) -> AgentCommand:
    """The command line and environment for an agent kind, found on the PATH the
    agent will get. Raises :class:`AgentUnavailable` when it cannot be found."""
    kind_env: dict[str, str] = {}
    if kind in configured:
        section = configured[kind]
        candidates: tuple[str, ...] = (section.command,)
        args = list(section.args)
        kind_env = dict(section.env)
    elif kind in PRESETS:
        preset = PRESETS[kind]
        candidates, args, kind_env = preset.commands, list(preset.args), dict(preset.env)
    else:
        known = ", ".join(sorted({*PRESETS, *configured}))
        raise AgentUnavailable(
            f"unknown agent kind {kind!r}; known kinds: {known} (add one as [agents.{kind}] "
            "in the config file)",
            field="agent",
            id=kind,
        )
    env = child_environment({**kind_env, **layered_env})
    search_path = env.get("PATH", os.defpath)
    for candidate in candidates:
        found = shutil.which(candidate, path=search_path)
        if found is not None:
            return AgentCommand(kind, [found, *args], env)
    raise AgentUnavailable(
        f"agent {kind!r}: command {' or '.join(repr(c) for c in candidates)} not found on "
        f"PATH ({search_path}); install it, or set [agents.{kind}] command in the config file",
        field="agent",
        id=kind,
    )
