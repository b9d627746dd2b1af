"""Agent kinds: how to start each ACP agent Mimir knows.

Presets cover the common agents; the config file adds or overrides kinds under
``[agents.<name>]`` (command, args, env, description). One resolver finds a
kind's command, on the PATH the agent gets (the daemon's allowlisted environment,
the kind's env, then the layered config env): starting an agent
(:func:`resolve_command`) and ``agent.list`` (:func:`agent_kinds`) both use it, so
a kind listed as found is one that starts. A kind whose command is not found is
listed, marked not found, so that users see why a session could not start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from mimird.config import AgentSection
from mimird.errors import AgentUnavailable
from mimird.processes import child_environment
from mimird.wire.types import AgentKind

MissingFile = Literal["error", "empty"]
StopHow = Literal["eof", "term"]


@dataclass(frozen=True, slots=True)
class Quirks:
    """What Mimir does differently for a kind, because its agent needs it.

    ``missing_file``: how ``fs/read_text_file`` of a missing file (inside the
    workspace) is answered: ``"error"`` (-32002, as ACP documents) or ``"empty"``
    (``{"content": ""}``: gemini-cli reads a file before it creates it, and cannot
    read the error). ``stop``: ``"eof"`` closes stdin and waits ``stop_grace_s``
    before SIGTERM; ``"term"`` sends SIGTERM to the group at once (agents that
    ignore EOF). ``mode``: the mode set at the agent's start when the layered
    config gives none (None: the agent's own)."""

    missing_file: MissingFile = "error"
    stop: StopHow = "eof"
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class Preset:
    #: Commands to try, in order; the first one on PATH is used.
    commands: tuple[str, ...]
    args: tuple[str, ...] = ()
    description: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    #: Its quirks (see :class:`Quirks`).
    quirks: Quirks = Quirks()


PRESETS: Final[dict[str, Preset]] = {
    "opencode": Preset(("opencode",), ("acp",), "opencode (npm opencode-ai)"),
    "claude": Preset(
        ("claude-agent-acp", "claude-code-acp"),
        (),
        "Claude Code through its ACP adapter (npm @agentclientprotocol/claude-agent-acp or "
        "@zed-industries/claude-code-acp)",
        # It ignores EOF; its own default mode ("auto") never asks permission.
        quirks=Quirks(stop="term", mode="default"),
    ),
    "codex": Preset(
        ("codex-acp",),
        (),
        "Codex through its ACP adapter (npm @zed-industries/codex-acp)",
        quirks=Quirks(stop="term"),  # it ignores EOF
    ),
    "gemini": Preset(
        ("gemini",),
        ("--acp",),
        "Gemini CLI (npm @google/gemini-cli)",
        # It reads a file before creating it, and cannot read the "not found" error.
        quirks=Quirks(missing_file="empty"),
    ),
    "goose": Preset(("goose",), ("acp",), "goose"),
}


@dataclass(frozen=True, slots=True)
class AgentCommand:
    kind: str
    argv: list[str]
    env: dict[str, str]
    quirks: Quirks = Quirks()


@dataclass(frozen=True, slots=True)
class _Spec:
    """What a kind says about starting it: from a preset or the config file."""

    candidates: tuple[str, ...]
    args: tuple[str, ...]
    env: Mapping[str, str]
    source: Literal["preset", "config"]
    description: str
    quirks: Quirks = Quirks()


def _quirks(section: AgentSection, preset: Quirks) -> Quirks:
    """A config section's quirks: each one it does not set is the preset's of that name."""
    return Quirks(
        missing_file=section.missing_file or preset.missing_file,
        stop=section.stop or preset.stop,
        mode=section.mode if section.mode is not None else preset.mode,
    )


def _spec(kind: str, configured: Mapping[str, AgentSection]) -> _Spec | None:
    preset = PRESETS.get(kind)
    if kind in configured:
        section = configured[kind]
        quirks = _quirks(section, preset.quirks if preset is not None else Quirks())
        return _Spec(
            (section.command,),
            tuple(section.args),
            section.env,
            "config",
            section.description,
            quirks,
        )
    if preset is not None:
        return _Spec(
            preset.commands, preset.args, preset.env, "preset", preset.description, preset.quirks
        )
    return None


def _resolve(spec: _Spec, layered_env: Mapping[str, str]) -> tuple[str, str | None, dict[str, str]]:
    """(command, where it was found or None, the agent's environment): the first
    candidate found on the PATH of the environment the agent gets (the daemon's
    allowlisted environment, the kind's env, then the layered env)."""
    env = child_environment({**spec.env, **layered_env})
    search_path = env.get("PATH", os.defpath)
    for candidate in spec.candidates:
        found = shutil.which(candidate, path=search_path)
        if found is not None:
            return candidate, found, env
    return spec.candidates[0], None, env


def resolve_command(
    kind: str, configured: Mapping[str, AgentSection], layered_env: Mapping[str, str]
) -> AgentCommand:
    """The command line and environment for an agent kind, found on the PATH the
    agent will get. Raises :class:`AgentUnavailable` when it cannot be found.
    Sync (it looks at PATH): run it in a thread."""
    spec = _spec(kind, configured)
    if spec is None:
        known = ", ".join(sorted({*PRESETS, *configured}))
        raise AgentUnavailable(
            f"unknown agent kind {kind!r}; known kinds: {known} (add one as [agents.{kind}] "
            "in the config file)",
            field="agent",
            id=kind,
        )
    _, found, env = _resolve(spec, layered_env)
    if found is None:
        search_path = env.get("PATH", os.defpath)
        raise AgentUnavailable(
            f"agent {kind!r}: command {' or '.join(repr(c) for c in spec.candidates)} not found "
            f"on PATH ({search_path}); install it, or set [agents.{kind}] command in the config "
            "file",
            field="agent",
            id=kind,
        )
    return AgentCommand(kind, [found, *spec.args], env, spec.quirks)


def agent_kinds(
    configured: Mapping[str, AgentSection], layered_env: Mapping[str, str] | None = None
) -> list[AgentKind]:
    """Every kind, presets first overridden by the config file's, sorted by name,
    each found (or not) exactly as :func:`resolve_command` would find it with
    ``layered_env`` (``agent.list`` gives the config file's ``[defaults]`` env).
    Sync (it looks at PATH): run it in a thread."""
    layered = layered_env or {}
    kinds: list[AgentKind] = []
    for name in sorted({*PRESETS, *configured}):
        spec = _spec(name, configured)
        assert spec is not None
        command, found, _ = _resolve(spec, layered)
        kinds.append(
            AgentKind(
                name=name,
                command=command,
                args=list(spec.args),
                source=spec.source,
                found=found is not None,
                path=found,
                description=spec.description,
            )
        )
    return kinds
