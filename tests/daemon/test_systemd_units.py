"""The shipped user units are valid for systemd (checked with systemd-analyze, no PID 1 needed)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_service_is_type_notify_and_needs_its_socket() -> None:
    service = _unit("mimird.service")
    assert service["Service"]["Type"] == "notify"
    assert service["Unit"]["Requires"] == "mimird.socket"
    assert service["Service"]["KillMode"] == "mixed"


def test_socket_is_private_and_where_mimird_looks_by_default() -> None:
    socket_unit = _unit("mimird.socket")
    assert socket_unit["Socket"]["ListenStream"] == "%t/mimir/mimird.sock"
    assert socket_unit["Socket"]["SocketMode"] == "0600"
    assert socket_unit["Socket"]["DirectoryMode"] == "0700"


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: run 'make system-deps' (Debian package systemd)")
    mimird = Path(sys.executable).with_name("mimird")
    assert mimird.exists(), "mimird is not installed next to this Python: run 'make install-test'"
    # What `make install-systemd` does: point ExecStart at the installed mimird.
    service = (UNITS / "mimird.service").read_text()
    (tmp_path / "mimird.service").write_text(
        service.replace("ExecStart=%h/.local/bin/mimird", f"ExecStart={mimird}")
    )
    shutil.copy(UNITS / "mimird.socket", tmp_path / "mimird.socket")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(
        [analyze, "verify", "--user", "mimird.socket", "mimird.service"],
        cwd=tmp_path,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
