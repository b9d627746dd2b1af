"""The HOME, Claude config directory and environment that make Claude Code's ACP
adapter (`claude-agent-acp`, pinned in .ci/agents) run offline against the fake
LLM server (tests/support/fake_llm.py, which speaks Anthropic Messages too).

Used by any test that has the Mimir daemon start the adapter: the environment
here is what the agent process must see.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mimird.processes import child_environment

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
CLAUDE_ACP_BIN: Final = REPO_ROOT / ".ci" / "agents" / "node_modules" / ".bin" / "claude-agent-acp"

#: Switches that keep Claude Code from reaching the network on its own (telemetry,
#: error reports, self-update, feature flags) and from making a main-looking call
#: of its own after each turn (the next-prompt suggestion, which offers tools and
#: would take a scripted reply).
OFFLINE_SWITCHES: Final = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION": "false",
}


def claude_settings() -> dict[str, Any]:
    """The user settings: ask before every edit or command. With no ``defaultMode``
    the adapter starts in ``auto`` mode, in which Claude Code decides on its own
    and never sends ``session/request_permission``."""
    return {"permissions": {"defaultMode": "default"}}


@dataclass(frozen=True)
class ClaudeHome:
    """A private HOME and Claude config directory (its settings, transcripts and
    caches go there) for the fake LLM at ``llm_base_url`` (no ``/v1``)."""

    home: Path
    config_dir: Path
    llm_base_url: str

    def layered_env(self) -> dict[str, str]:
        """The variables the adapter needs on top of an allowlisted environment.
        ``IS_SANDBOX=1`` lets it offer ``bypassPermissions`` when run as root (without
        it that mode is silently unavailable); the tests never choose that mode."""
        return {
            "HOME": str(self.home),
            "CLAUDE_CONFIG_DIR": str(self.config_dir),
            "ANTHROPIC_BASE_URL": self.llm_base_url,
            "ANTHROPIC_API_KEY": "dummy",
            "IS_SANDBOX": "1",
            **OFFLINE_SWITCHES,
        }

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment for an adapter process, built like Mimir builds
        an agent's (:func:`mimird.processes.child_environment`)."""
        return child_environment(self.layered_env(), os.environ if base is None else base)


def make_claude_home(root: Path, llm_base_url: str, *, settings: bool = True) -> ClaudeHome:
    """Create ``root/home`` and (unless ``settings`` is false: Claude Code's own
    defaults) ``root/home/.claude/settings.json`` for the fake LLM at
    ``llm_base_url`` (:attr:`FakeLlm.anthropic_base_url`)."""
    home = root / "home"
    config_dir = home / ".claude"
    config_dir.mkdir(parents=True, exist_ok=True)
    if settings:
        text = json.dumps(claude_settings(), indent=2) + "\n"
        (config_dir / "settings.json").write_text(text)
    return ClaudeHome(home=home, config_dir=config_dir, llm_base_url=llm_base_url)


def claude_config_section(claude_bin: Path, home: ClaudeHome) -> str:
    """Mimir's config file section ``[agents.claude]`` for the pinned adapter in ``home``."""
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in home.layered_env().items())
    return f"[agents.claude]\ncommand = {json.dumps(str(claude_bin))}\nenv = {{ {env} }}\n"
