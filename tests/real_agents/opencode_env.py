"""The HOME, config file and environment that make a real opencode run offline
against a fake LLM server (tests/support/fake_llm.py).

Used by the agents tier directly, and by any test that has the Mimir daemon
start opencode: the environment here is what the agent process must see.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mimird.processes import child_environment

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
OPENCODE_BIN: Final = REPO_ROOT / ".ci" / "agents" / "node_modules" / ".bin" / "opencode"
PROVIDER: Final = "fake"
MODEL: Final = "m"

#: Switches that keep opencode from reaching the network on its own: the models.dev
#: catalog, self-update, sharing, LSP server downloads, the default plugins (which
#: it would install from npm in the background) and Claude Code's files.
OFFLINE_SWITCHES: Final = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",
}


def opencode_config(llm_base_url: str, *, asks: bool = True) -> dict[str, Any]:
    """An opencode config whose only model is the fake LLM at ``llm_base_url``
    (which ends in ``/v1``), and that asks before every edit or shell command (with
    ``asks`` false, no ``permission``: opencode's own default, which asks for neither)."""
    model = {"name": "Fake model", "tool_call": True, "limit": {"context": 128000, "output": 4096}}
    config = {
        "$schema": "https://opencode.ai/config.json",
        "model": f"{PROVIDER}/{MODEL}",
        "small_model": f"{PROVIDER}/{MODEL}",
        "enabled_providers": [PROVIDER],
        "autoupdate": False,
        "share": "disabled",
        "permission": {"edit": "ask", "bash": "ask"},
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake LLM",
                "options": {"baseURL": llm_base_url, "apiKey": "dummy"},
                "models": {MODEL: model},
            }
        },
    }
    if not asks:
        del config["permission"]
    return config


@dataclass(frozen=True)
class OpencodeHome:
    """A private HOME for opencode (its database and snapshots go there) with
    the config file beside it."""

    home: Path
    config: Path

    def layered_env(self) -> dict[str, str]:
        """The variables opencode needs on top of an allowlisted environment."""
        return {"HOME": str(self.home), "OPENCODE_CONFIG": str(self.config), **OFFLINE_SWITCHES}

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment for an opencode process, built like Mimir
        builds an agent's (:func:`mimird.processes.child_environment`)."""
        return child_environment(self.layered_env(), os.environ if base is None else base)


def make_opencode_home(root: Path, llm_base_url: str, *, asks: bool = True) -> OpencodeHome:
    """Create ``root/home`` and ``root/opencode.json`` for the fake LLM at ``llm_base_url``
    (``asks``: see :func:`opencode_config`)."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    config = root / "opencode.json"
    config.write_text(json.dumps(opencode_config(llm_base_url, asks=asks), indent=2) + "\n")
    return OpencodeHome(home=home, config=config)
