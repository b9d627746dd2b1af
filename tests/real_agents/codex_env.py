"""The HOME, CODEX_HOME (with its config.toml), TMPDIR and environment that make
Codex's ACP adapter (`codex-acp`, pinned in .ci/agents) run offline against the
fake LLM server (tests/support/fake_llm.py, which speaks OpenAI Responses too).

Used by any test that has the Mimir daemon start the adapter: the environment
here is what the agent process must see. Codex runs the commands it considers
safe in its sandbox, which needs bubblewrap (``bwrap``; .ci/install-system-deps).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mimird.processes import child_environment

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
#: The launcher (a node script) that runs the binary of the platform package npm chose.
CODEX_BIN: Final = REPO_ROOT / ".ci" / "agents" / "node_modules" / ".bin" / "codex-acp"
PROVIDER: Final = "fake"
#: A model codex knows by name: another one works too, with a warning about its metadata.
MODEL: Final = "gpt-5.1-codex"
API_KEY_VAR: Final = "FAKE_API_KEY"


def codex_config(llm_base_url: str, *, untrusted: bool = True) -> str:
    """codex's ``config.toml``: its only model provider is the fake LLM at
    ``llm_base_url`` (which ends in ``/v1``), spoken to in the Responses format, with
    no retries (a failed request fails the turn at once).

    ``approval_policy = "untrusted"`` (unless ``untrusted`` is false: codex's own
    default, ``on-request``) makes codex ask (``session/request_permission``) before
    any command it does not consider safe; ``sandbox_mode = "read-only"`` runs the
    safe ones (``git status``, for one) without asking, in its sandbox. No test sends
    ``session/set_mode``: codex-acp's modes set ``on-request`` approval, under which
    it asks for little."""
    approval = 'approval_policy = "untrusted"\n' if untrusted else ""
    return (
        f"model = {json.dumps(MODEL)}\n"
        f"model_provider = {json.dumps(PROVIDER)}\n"
        f"{approval}"
        'sandbox_mode = "read-only"\n'
        "\n"
        f"[model_providers.{PROVIDER}]\n"
        'name = "Fake LLM"\n'
        f"base_url = {json.dumps(llm_base_url)}\n"
        'wire_api = "responses"\n'
        f"env_key = {json.dumps(API_KEY_VAR)}\n"
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )


@dataclass(frozen=True)
class CodexHome:
    """A private HOME that is also CODEX_HOME (config.toml, sessions, sqlite state,
    shell snapshots go there), and a TMPDIR beside it."""

    home: Path
    tmpdir: Path

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    def layered_env(self) -> dict[str, str]:
        """The variables the adapter needs on top of an allowlisted environment.
        TMPDIR must not contain CODEX_HOME: codex then refuses to put its sandbox
        helpers in TMPDIR, and every sandboxed command fails (pytest's temporary
        directories are under /tmp)."""
        return {
            "HOME": str(self.home),
            "CODEX_HOME": str(self.home),
            "TMPDIR": str(self.tmpdir),
            API_KEY_VAR: "sk-dummy",
        }

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment for an adapter process, built like Mimir builds
        an agent's (:func:`mimird.processes.child_environment`)."""
        return child_environment(self.layered_env(), os.environ if base is None else base)


def make_codex_home(root: Path, llm_base_url: str, *, untrusted: bool = True) -> CodexHome:
    """Create ``root/home`` (with ``config.toml`` for the fake LLM at ``llm_base_url``,
    :attr:`FakeLlm.base_url`) and ``root/tmp``."""
    home = root / "home"
    tmpdir = root / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmpdir.mkdir(parents=True, exist_ok=True)
    made = CodexHome(home=home, tmpdir=tmpdir)
    made.config.write_text(codex_config(llm_base_url, untrusted=untrusted))
    return made


def codex_config_section(codex_bin: Path, home: CodexHome, args: tuple[str, ...] = ()) -> str:
    """Mimir's config file section ``[agents.codex]`` for the pinned adapter in ``home``
    (the ``codex`` preset's quirks apply: it is stopped with SIGTERM)."""
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in home.layered_env().items())
    listed = f"args = {json.dumps(list(args))}\n" if args else ""
    return f"[agents.codex]\ncommand = {json.dumps(str(codex_bin))}\n{listed}env = {{ {env} }}\n"
