"""Fixtures of the agents tier: the installed agent binaries, a fake LLM server,
and a private HOME and config per test."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real_agents.claude_env import CLAUDE_ACP_BIN, ClaudeHome, make_claude_home
from tests.real_agents.codex_env import CODEX_BIN, CodexHome, make_codex_home
from tests.real_agents.gemini_env import GEMINI_BIN, GeminiHome, make_gemini_home
from tests.real_agents.opencode_env import OPENCODE_BIN, OpencodeHome, make_opencode_home
from tests.support.fake_llm import FakeLlm, serve_fake_llm


def _pinned(name: str, path: Path) -> Path:
    """``path``, the agent pinned in .ci/agents; fail the test (never skip it) when it
    is not installed."""
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{name} is not installed at {path}; run `make install-agents` "
            "(or use `make test-agents`, which installs it)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def opencode_bin() -> Path:
    """The pinned opencode from .ci/agents; a missing one fails the test (never skips it)."""
    return _pinned("opencode", OPENCODE_BIN)


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The pinned claude-agent-acp from .ci/agents; a missing one fails the test."""
    return _pinned("claude-agent-acp", CLAUDE_ACP_BIN)


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    """The pinned codex-acp from .ci/agents; a missing one, or a missing bubblewrap
    (codex's sandbox), fails the test."""
    _pinned("codex-acp", CODEX_BIN)
    if shutil.which("bwrap") is None:
        pytest.fail(
            "bwrap is missing: codex's sandbox needs bubblewrap; run `make system-deps`",
            pytrace=False,
        )
    return CODEX_BIN


@pytest.fixture(scope="session")
def gemini_bin() -> Path:
    """The pinned Gemini CLI from .ci/agents; a missing one fails the test."""
    return _pinned("gemini", GEMINI_BIN)


@pytest.fixture
def fake_llm() -> Iterator[FakeLlm]:
    """A fake LLM server (OpenAI Chat Completions and Responses, Anthropic Messages,
    Gemini API) with an empty script; tests add replies with ``fake_llm.script(...)``."""
    with serve_fake_llm() as llm:
        yield llm


@pytest.fixture
def opencode_home(tmp_path: Path, fake_llm: FakeLlm) -> OpencodeHome:
    """A private HOME and an opencode config pointing at ``fake_llm``."""
    return make_opencode_home(tmp_path / "opencode", fake_llm.base_url)


@pytest.fixture
def claude_home(tmp_path: Path, fake_llm: FakeLlm) -> ClaudeHome:
    """A private HOME and Claude config directory pointing at ``fake_llm``."""
    return make_claude_home(tmp_path / "claude", fake_llm.anthropic_base_url)


@pytest.fixture
def codex_home(tmp_path: Path, fake_llm: FakeLlm) -> CodexHome:
    """A private HOME and CODEX_HOME (with a config.toml pointing at ``fake_llm``)
    and a TMPDIR outside them."""
    return make_codex_home(tmp_path / "codex", fake_llm.base_url)


@pytest.fixture
def gemini_home(tmp_path: Path, fake_llm: FakeLlm) -> GeminiHome:
    """A private HOME with Gemini CLI settings, and the environment pointing it at
    ``fake_llm``."""
    return make_gemini_home(tmp_path / "gemini", fake_llm.gemini_base_url)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A git repository with one commit, for the agent to work in."""
    root = tmp_path / "workspace"
    root.mkdir()
    (root / "README.md").write_text("A workspace for a real agent.\n")
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@mimir.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@mimir.invalid",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return root
