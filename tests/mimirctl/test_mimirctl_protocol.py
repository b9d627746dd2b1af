"""mimirctl and a mimird of another protocol version: on connect, mimirctl asks
``daemon.status`` which protocol mimird speaks, and before it sends anything else
says whether mimird is older or newer, and what to do.

The other versions are played by a real JSON-RPC server on a Unix socket (a
thread of this test); the same version by a real mimird process."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from mimird.wire.codes import PROTOCOL_VERSION, ErrorCode
from tests.support.helpers import DaemonDirs, module_daemon_fixtures, run_mimirctl, short_tmpdir

RUN_TIMEOUT_S: Final = 30
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2

ctl_dirs, mimird_process, dirs = module_daemon_fixtures()


class OtherMimird:
    """A JSON-RPC server on a Unix socket that speaks protocol ``protocol``: it
    answers ``daemon.status``, answers the methods in ``results`` with what they
    map to, and knows no other method. It records the methods it was asked."""

    def __init__(self, path: Path, protocol: int, results: dict[str, Any]) -> None:
        self.path = path
        self.protocol = protocol
        self.results = results
        self.asked: list[str] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        method = request["method"]
        self.asked.append(method)
        if method in self.results:
            result = self.results[method]
        elif method == "daemon.status":
            result = {"version": "9.9.9", "protocol_version": self.protocol}
        else:
            code = ErrorCode.METHOD_NOT_FOUND
            error = {"code": code, "message": f"no method {method!r}", "data": {"kind": code.kind}}
            return {"jsonrpc": "2.0", "id": request["id"], "error": error}
        return {"jsonrpc": "2.0", "id": request["id"], "result": result}

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    answer = self._answer(json.loads(line))
                    conn.sendall(json.dumps(answer).encode() + b"\n")

    @classmethod
    @contextlib.contextmanager
    def running(cls, protocol: int, results: dict[str, Any] | None = None) -> Iterator[OtherMimird]:
        with short_tmpdir() as root:
            server = cls(root / "other.sock", protocol, results or {})
            thread = threading.Thread(target=server.serve, daemon=True)
            thread.start()
            try:
                yield server
            finally:
                server._listener.shutdown(socket.SHUT_RDWR)
                server._listener.close()
                thread.join(timeout=RUN_TIMEOUT_S)


def ctl(server: OtherMimird, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimirctl", "--socket", str(server.path), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def test_an_older_mimird_is_named_with_how_to_restart_it() -> None:
    with OtherMimird.running(PROTOCOL_VERSION - 1) as server:
        result = ctl(server, "project", "ls")
    assert result.returncode == EXIT_ERROR, result
    assert f"protocol {PROTOCOL_VERSION - 1}, older than this mimirctl's" in result.stderr
    assert "restart mimird" in result.stderr
    assert server.asked == ["daemon.status"], "nothing is asked of a mimird of another protocol"


def test_a_newer_mimird_is_named_with_how_to_upgrade_mimirctl() -> None:
    with OtherMimird.running(PROTOCOL_VERSION + 1) as server:
        result = ctl(server, "session", "ls")
    assert result.returncode == EXIT_ERROR, result
    assert f"mimird 9.9.9 speaks protocol {PROTOCOL_VERSION + 1}, newer than" in result.stderr
    assert "upgrade mimirctl" in result.stderr


def test_a_mimird_that_names_no_protocol_is_not_talked_to() -> None:
    with OtherMimird.running(PROTOCOL_VERSION, {"daemon.status": {"version": "0.0.1"}}) as server:
        result = ctl(server, "project", "ls")
    assert result.returncode == EXIT_ERROR, result
    assert "did not say which protocol it speaks" in result.stderr
    assert "Traceback" not in result.stderr
    assert server.asked == ["daemon.status"]


def test_a_command_that_works_asks_the_protocol_once_then_its_method() -> None:
    with OtherMimird.running(PROTOCOL_VERSION, {"project.list": {"projects": []}}) as server:
        result = ctl(server, "project", "ls")
    assert (result.returncode, result.stdout) == (
        0,
        "no projects (use --all to include archived ones)\n",
    )
    assert server.asked == ["daemon.status", "project.list"]


def test_status_warns_about_another_protocol() -> None:
    status = {
        "version": "9.9.9",
        "protocol_version": PROTOCOL_VERSION - 1,
        "pid": 1,
        "uptime_s": 1.0,
        "socket_activated": False,
        "database_size_bytes": 1,
        "database_encrypted": False,
        "schema_revision": "0001",
        "paths": {"socket": "s", "database": "d", "config": None},
        "counts": {"projects": 0, "archived_projects": 0, "sessions": 0, "connections": 1},
    }
    with OtherMimird.running(PROTOCOL_VERSION - 1, {"daemon.status": status}) as server:
        result = ctl(server, "status")
    assert result.returncode == 0, result
    assert "warning: mimird 9.9.9 speaks protocol" in result.stdout
    assert "older than this mimirctl's" in result.stdout
    assert server.asked == ["daemon.status"], "status asks once, and warns itself"


def test_an_error_of_a_mimird_of_the_same_protocol_is_reported_as_it_is(
    dirs: DaemonDirs,
) -> None:
    result = run_mimirctl(dirs, "session", "ls", "--status", "no-such-status")
    assert result.returncode == EXIT_USAGE, result
    assert "protocol" not in result.stderr
    assert result.stderr.startswith("mimirctl: ")


@pytest.mark.parametrize("protocol", [PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1])
def test_an_error_unrelated_to_the_protocol_asks_nothing_more(protocol: int) -> None:
    with OtherMimird.running(protocol) as server:
        result = ctl(server, "session", "show", "abc")  # too short: refused before any call
    assert result.returncode == EXIT_USAGE, result
    assert "protocol" not in result.stderr
    assert server.asked == []
