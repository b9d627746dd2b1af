"""What every test of mimird.workspaces shares: git with no user or system config and
no identity from the environment, so that what Mimir's git calls do (commits with
Mimir's identity, hooks, fsyncs) does not depend on the machine running the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_")) or name in ("EMAIL", "GIT_DIR"):
            monkeypatch.delenv(name)
