"""Agent kinds: how to start each ACP agent Mimir knows.

Presets cover the common agents; the config file adds or overrides kinds under
``[agents.<name>]`` (command, args, env, description). One resolver finds a
kind's command, on the PATH the agent gets (the daemon's allowlisted environment,
the kind's env, then the layered config env): starting an agent
(:func:`resolve_command`) and ``agent.list`` (:func:`agent_kinds`) both use it, so
a kind listed as found is one that starts. A kind whose command is not found is
listed, marked not found, so that users see why a session could not start, with the
command that installs it when the registry has it.

Agents Mimir installed (``mimirctl agent install``: :mod:`mimird.agents.install`,
records in ``<data dir>/agents``) are kinds too, named by their registry id, or by the
preset that names them (``claude`` for the registry's ``claude-code-acp``). Order: the
config file's section, then an installed agent, then the preset's PATH candidates.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from mimird.agents.installed import InstalledAgent, read_installed
from mimird.agents.registry import snapshot
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
    #: Under the kind's own env (an installed agent's, a config section's) and the
    #: layered env, which may override each variable.
    env: Mapping[str, str] = field(default_factory=dict)
    #: The ACP Registry's id of this agent, when it is not the preset's name.
    registry_id: str | None = None
    #: Its quirks (see :class:`Quirks`).
    quirks: Quirks = Quirks()


#: opencode's permissions that make it ask before every edit, command and fetch.
OPENCODE_ASKS: Final = '{"edit": "ask", "bash": "ask", "webfetch": "ask"}'

PRESETS: Final[dict[str, Preset]] = {
    "opencode": Preset(
        ("opencode",),
        ("acp",),
        "opencode (npm opencode-ai)",
        # By default it edits and runs commands without asking: make it ask, so that the
        # tool policy decides (OPENCODE_PERMISSION is merged over its config's permission).
        env={"OPENCODE_PERMISSION": OPENCODE_ASKS},
    ),
    "claude": Preset(
        ("claude-agent-acp", "claude-code-acp"),
        (),
        "Claude Code through its ACP adapter (npm @agentclientprotocol/claude-agent-acp or "
        "@zed-industries/claude-code-acp)",
        registry_id="claude-code-acp",
        # It ignores EOF; its own default mode ("auto") never asks permission.
        quirks=Quirks(stop="term", mode="default"),
    ),
    "codex": Preset(
        ("codex-acp",),
        (),
        "Codex through its ACP adapter (npm @zed-industries/codex-acp)",
        registry_id="codex-acp",
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
    source: Literal["preset", "config", "installed"]
    description: str
    quirks: Quirks = Quirks()
    installed: InstalledAgent | None = None


def _quirks(section: AgentSection, preset: Quirks) -> Quirks:
    """A config section's quirks: each one it does not set is the preset's of that name."""
    return Quirks(
        missing_file=section.missing_file or preset.missing_file,
        stop=section.stop or preset.stop,
        mode=section.mode if section.mode is not None else preset.mode,
    )


def registry_id(kind: str) -> str:
    """The registry id a kind installs from (``mimirctl agent install KIND``)."""
    preset = PRESETS.get(kind)
    return (preset.registry_id if preset is not None else None) or kind


#: Registry ids that a preset of another name stands for.
_ALIASES: Final = {p.registry_id: n for n, p in PRESETS.items() if p.registry_id}


def kind_of(agent_id: str) -> str:
    """The kind an installed registry agent is listed as (its preset's name, or its id)."""
    return _ALIASES.get(agent_id, agent_id)


def _spec(
    kind: str,
    configured: Mapping[str, AgentSection],
    installed: Mapping[str, InstalledAgent] | None = None,
    agents_dir: Path | None = None,
) -> _Spec | None:
    if kind not in configured:
        kind = _ALIASES.get(kind, kind)
    preset = PRESETS.get(kind)
    # A preset's env stays under the kind's own (an installed agent's, a config section's).
    base_env = preset.env if preset is not None else {}
    record = (installed or {}).get(registry_id(kind))
    if kind not in configured and record is not None and agents_dir is not None:
        # An installed agent keeps the quirks of the preset that stands for it.
        return _Spec(
            (str(record.executable(agents_dir)),),
            tuple(record.args),
            {**base_env, **record.env},
            "installed",
            record.description or record.name,
            installed=record,
            quirks=preset.quirks if preset is not None else Quirks(),
        )
    if kind in configured:
        section = configured[kind]
        quirks = _quirks(section, preset.quirks if preset is not None else Quirks())
        return _Spec(
            (section.command,),
            tuple(section.args),
            {**base_env, **section.env},
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
    kind: str,
    configured: Mapping[str, AgentSection],
    layered_env: Mapping[str, str],
    agents_dir: Path | None,
) -> AgentCommand:
    """The command line and environment for an agent kind, found on the PATH the
    agent will get (or installed in ``agents_dir``). Raises :class:`AgentUnavailable`
    when it cannot be found. Sync (it looks at PATH): run it in a thread."""
    installed = read_installed(agents_dir)
    spec = _spec(kind, configured, installed, agents_dir)
    if spec is None:
        known = ", ".join(sorted(_kind_names(configured, installed)))
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
            f"on PATH ({search_path}); {_how_to_get(kind)}",
            field="agent",
            id=kind,
        )
    return AgentCommand(kind, [found, *spec.args], env, spec.quirks)


def _kind_names(
    configured: Mapping[str, AgentSection], installed: Mapping[str, InstalledAgent]
) -> set[str]:
    return {*PRESETS, *configured, *(i for i in installed if i not in _ALIASES)}


def install_command(kind: str) -> str | None:
    """The command that installs a kind, when Mimir's registry snapshot has it."""
    return f"mimirctl agent install {kind}" if registry_id(kind) in snapshot().agents else None


def _how_to_get(kind: str) -> str:
    command = install_command(kind)
    get = f"run '{command}', or install it yourself" if command else "install it"
    return f"{get}, or set [agents.{kind}] command in the config file"


def agent_kinds(
    configured: Mapping[str, AgentSection],
    layered_env: Mapping[str, str] | None = None,
    agents_dir: Path | None = None,
) -> list[AgentKind]:
    """Every kind, presets first overridden by the config file's, sorted by name,
    each found (or not) exactly as :func:`resolve_command` would find it with
    ``layered_env`` (``agent.list`` gives the config file's ``[defaults]`` env).
    Sync (it looks at PATH): run it in a thread."""
    layered = layered_env or {}
    installed = read_installed(agents_dir)
    kinds: list[AgentKind] = []
    for name in sorted(_kind_names(configured, installed)):
        spec = _spec(name, configured, installed, agents_dir)
        assert spec is not None
        command, found, _ = _resolve(spec, layered)
        record = spec.installed
        kinds.append(
            AgentKind(
                name=name,
                command=command,
                args=list(spec.args),
                source=spec.source,
                found=found is not None,
                path=found,
                description=spec.description,
                version=record.version if record else None,
                installed_at=record.installed_at if record else None,
                registry=record.registry if record else None,
                registry_date=record.registry_date if record else None,
                install=None if found else install_command(name),
            )
        )
    return kinds
