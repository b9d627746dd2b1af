"""How mimirctl is put together: the forms it checks are the daemon's own, and a
short command loads only what it needs. (Import cycles and what mimirctl may
import of mimird: tests/daemon/test_layout.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from typing import Final

from mimirctl.cli import WORDS
from mimird.wire import formats, types
from tests.support.helpers import short_tmpdir

RUN_TIMEOUT_S: Final = 30


def test_the_forms_mimirctl_checks_are_the_ones_the_daemon_checks() -> None:
    session_ref = typing.get_args(types.SessionRef)[1]
    timestamp = typing.get_args(types.Timestamp)[1]
    assert session_ref.min_length == formats.MIN_ID_PREFIX
    assert timestamp.pattern == formats.TIMESTAMP_PATTERN


# ---- what a short command loads -------------------------------------------------------

#: Modules a short command does without: each costs start-up time (msgspec ~26 ms,
#: typing ~3.4 ms, socket's Python wrapper ~2.7 ms, shutil ~2 ms, datetime ~1.8 ms).
NOT_ON_SHORT_PATHS: Final = ("msgspec", "typing", "socket", "shutil", "datetime", "mimirctl.ask")


def modules_loaded_by(*args: str) -> set[str]:
    """The modules loaded by ``mimirctl ARGS`` run with no daemon to answer."""
    with short_tmpdir() as root:
        code = (
            "import json, sys\n"
            "from mimirctl.cli import main\n"
            f"code = main({list(args)!r})\n"
            "print(json.dumps(sorted(sys.modules)))\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIMIR_")}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "MIMIR_SOCKET": str(root / "none.sock")},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=True,
        )
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return set(loaded)


def test_status_loads_only_its_own_command_module_and_nothing_heavy() -> None:
    loaded = modules_loaded_by("status")
    commands = {m for m in loaded if m.startswith("mimirctl.commands.")}
    assert commands == {"mimirctl.commands.daemon"}
    assert sorted(m for m in NOT_ON_SHORT_PATHS if m in loaded) == []


def test_session_ls_loads_the_session_commands_only() -> None:
    loaded = modules_loaded_by("session", "ls")
    commands = {m for m in loaded if m.startswith("mimirctl.commands.")}
    assert commands == {"mimirctl.commands.session"}
    assert "msgspec" not in loaded


def test_help_lists_every_command_word() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mimirctl", "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    assert set(WORDS) <= set(result.stdout.split())
