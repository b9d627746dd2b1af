"""Agent kinds: how to start each ACP agent Mimir knows.

Presets cover the common agents; the config file adds or overrides kinds under
``[agents.<name>]`` (command, args, env, description). A kind whose command is
not on the daemon's PATH is listed, marked not found, so that users see why a
session could not start.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from mimird.config import AgentSection
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
