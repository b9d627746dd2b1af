"""The HOME (with its ``.gemini/settings.json``) and environment that make Gemini
CLI (`gemini --acp`, pinned in .ci/agents) run offline against the fake LLM server
(tests/support/fake_llm.py, which speaks the Gemini API too).

``GOOGLE_GEMINI_BASE_URL`` (the server's root, no ``/v1beta``) makes Gemini CLI use
gateway auth: no ``authenticate`` call is needed, and the dummy ``GEMINI_API_KEY``
is only sent along. ``-m gemini-2.5-flash`` fixes the model, so there is no model
router's classifier call (to another model) before each turn.

By default Gemini CLI asks (``session/request_permission``) before running a
``run_shell_command`` it does not consider safe, and the request carries no
``rawInput``: the command is only in the tool call's ``title``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mimird.processes import child_environment

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
#: A node script (the package's bundle); no platform binary.
GEMINI_BIN: Final = REPO_ROOT / ".ci" / "agents" / "node_modules" / ".bin" / "gemini"
MODEL: Final = "gemini-2.5-flash"
ARGS: Final = ("--acp", "-m", MODEL)
#: Nothing leaves the machine, and nothing updates itself.
SETTINGS: Final[dict[str, Any]] = {
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


@dataclass(frozen=True)
class GeminiHome:
    """A private HOME (Gemini CLI keeps settings, history and temporary files in
    ``HOME/.gemini``) and the fake LLM's root URL."""

    home: Path
    llm_base_url: str

    @property
    def settings(self) -> Path:
        return self.home / ".gemini" / "settings.json"

    def layered_env(self) -> dict[str, str]:
        """The variables Gemini CLI needs on top of an allowlisted environment."""
        return {
            "HOME": str(self.home),
            "GOOGLE_GEMINI_BASE_URL": self.llm_base_url,
            "GEMINI_API_KEY": "fake-key",
            "NO_BROWSER": "true",
        }

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment for a Gemini CLI process, built like Mimir builds
        an agent's (:func:`mimird.processes.child_environment`)."""
        return child_environment(self.layered_env(), os.environ if base is None else base)


def make_gemini_home(root: Path, llm_base_url: str) -> GeminiHome:
    """Create ``root/home`` with settings that keep Gemini CLI offline and pointed at
    the fake LLM at ``llm_base_url`` (:attr:`FakeLlm.gemini_base_url`)."""
    made = GeminiHome(home=root / "home", llm_base_url=llm_base_url)
    made.settings.parent.mkdir(parents=True, exist_ok=True)
    made.settings.write_text(json.dumps(SETTINGS, indent=2) + "\n")
    return made


def gemini_config_section(gemini_bin: Path, home: GeminiHome, args: tuple[str, ...] = ARGS) -> str:
    """Mimir's config file section ``[agents.gemini]`` for the pinned Gemini CLI in
    ``home`` (the ``gemini`` preset's quirks apply)."""
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in home.layered_env().items())
    return (
        f"[agents.gemini]\ncommand = {json.dumps(str(gemini_bin))}\n"
        f"args = {json.dumps(list(args))}\nenv = {{ {env} }}\n"
    )
