"""systemd without systemd as PID 1: a fake ``NOTIFY_SOCKET`` (an ``AF_UNIX``
datagram socket the test binds) and ``systemd-socket-activate`` (DESIGN.md,
"systemd"; reference A4, A7)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mimird import systemd
from mimird.store.migrate import head_revision
from tests.support.helpers import (
    READY_TIMEOUT_S,
    DaemonDirs,
    DaemonProcess,
    blocking_call,
    start_daemon_process,
)

pytestmark = pytest.mark.timeout(60)

STOP_TIMEOUT_S = 20.0
#: The systemd variables that are meant for mimird alone and must not reach its children.
SYSTEMD_VARIABLES = (
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
)


@pytest.fixture(autouse=True)
def config_file(dirs: DaemonDirs) -> None:
    # DaemonDirs.env() names the config file explicitly, and an explicit file must exist.
    dirs.config.write_text("")


# ---- a fake service manager --------------------------------------------------------


Message = dict[str, str]


def parse_notification(datagram: bytes) -> Message:
    """``b"READY=1\\nSTATUS=x"`` -> ``{"READY": "1", "STATUS": "x"}``."""
    fields = (line.split("=", 1) for line in datagram.decode().splitlines())
    return {key: value for key, value in fields}


@dataclass
class NotifySocket:
    """The receiving end of sd_notify, as systemd would bind it."""

    sock: socket.socket
    address: str  # the value of NOTIFY_SOCKET

    def wait_for(
        self,
        key: str,
        value: str = "1",
        *,
        process: subprocess.Popen[bytes] | None = None,
        timeout: float = READY_TIMEOUT_S,
    ) -> tuple[Message, list[Message]]:
        """Receive until a message has ``key=value``: return it and all received so far."""
        received: list[Message] = []
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(min(remaining, 0.5))
            try:
                message = parse_notification(self.sock.recv(4096))
            except TimeoutError:
                if process is not None and process.poll() is not None:
                    raise AssertionError(
                        f"process exited with {process.returncode} before {key}={value}; "
                        f"received {received}"
                    ) from None
                continue
            received.append(message)
            if message.get(key) == value:
                return message, received
        raise AssertionError(f"no {key}={value} within {timeout}s; received {received}")

    def pending(self) -> list[Message]:
        """Whatever has arrived and not been read, without waiting."""
        messages = []
        self.sock.setblocking(False)
        try:
            while True:
                messages.append(parse_notification(self.sock.recv(4096)))
        except BlockingIOError:
            return messages
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def notify(dirs: DaemonDirs) -> Iterator[NotifySocket]:
    path = dirs.root / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield NotifySocket(sock, str(path))


@pytest.fixture
def abstract_notify() -> Iterator[NotifySocket]:
    name = f"mimir-test-notify-{os.getpid()}-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield NotifySocket(sock, "@" + name)


@contextlib.contextmanager
def notified_daemon(dirs: DaemonDirs, notify: NotifySocket, **env: str) -> Iterator[DaemonProcess]:
    daemon = start_daemon_process(
        dirs, env=dirs.env(NOTIFY_SOCKET=notify.address, **env), wait=False
    )
    try:
        yield daemon
    finally:
        daemon.kill()


# ---- sd_notify from a daemon started by hand -----------------------------------------


def test_client_is_served_the_moment_ready_arrives(dirs: DaemonDirs, notify: NotifySocket) -> None:
    with notified_daemon(dirs, notify) as daemon:
        notify.wait_for("READY", process=daemon.proc)
        # No retry loop: READY=1 promises that the socket accepts and migrations ran.
        response = blocking_call(dirs.socket, "daemon.status")
    assert response["result"]["pid"] == daemon.proc.pid
    assert response["result"]["schema_revision"] == head_revision()


def test_ready_carries_status_and_mainpid(dirs: DaemonDirs, notify: NotifySocket) -> None:
    with notified_daemon(dirs, notify) as daemon:
        ready, _ = notify.wait_for("READY", process=daemon.proc)
    assert str(dirs.socket) in ready["STATUS"]
    assert ready["MAINPID"] == str(daemon.proc.pid)


def test_sigterm_sends_stopping_then_exits_zero(dirs: DaemonDirs, notify: NotifySocket) -> None:
    with notified_daemon(dirs, notify) as daemon:
        notify.wait_for("READY", process=daemon.proc)
        daemon.proc.send_signal(signal.SIGTERM)
        stopping, _ = notify.wait_for("STOPPING")
        assert daemon.proc.wait(STOP_TIMEOUT_S) == 0
    assert "STATUS" in stopping


def test_ready_reaches_an_abstract_namespace_notify_socket(
    dirs: DaemonDirs, abstract_notify: NotifySocket
) -> None:
    with notified_daemon(dirs, abstract_notify) as daemon:
        ready, _ = abstract_notify.wait_for("READY", process=daemon.proc)
    assert ready["MAINPID"] == str(daemon.proc.pid)


def test_daemon_that_cannot_start_never_sends_ready(dirs: DaemonDirs, notify: NotifySocket) -> None:
    dirs.runtime.mkdir(mode=0o700)
    dirs.socket.write_text("not a socket")  # makes the start fail after the store opened
    with notified_daemon(dirs, notify) as daemon:
        assert daemon.proc.wait(STOP_TIMEOUT_S) == 1
    assert "is not a socket" in daemon.stderr
    assert all("READY" not in message for message in notify.pending())


def test_watchdog_pings_arrive_repeatedly(dirs: DaemonDirs, notify: NotifySocket) -> None:
    with notified_daemon(dirs, notify, WATCHDOG_USEC="200000") as daemon:
        _, before = notify.wait_for("READY", process=daemon.proc)
        pings = sum(m.get("WATCHDOG") == "1" for m in before)
        while pings < 3:
            notify.wait_for("WATCHDOG", process=daemon.proc, timeout=10)
            pings += 1


# ---- the protocols' environment handling, in-process ---------------------------------


def test_watchdog_interval_is_half_of_watchdog_usec_and_removes_the_variables() -> None:
    env = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(env) == pytest.approx(0.1)
    assert env == {}


def test_watchdog_meant_for_another_process_is_ignored() -> None:
    env = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    assert systemd.watchdog_interval(env) is None
    assert env == {}


def test_listen_fds_meant_for_another_process_are_ignored_and_removed() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "mimird", "HOME": "/h"}
    assert systemd.take_listen_fds(env) == []
    assert env == {"HOME": "/h"}


def test_notify_socket_of_an_unsupported_kind_is_rejected() -> None:
    with pytest.raises(OSError, match="unsupported NOTIFY_SOCKET"):
        systemd.Notifier("relative/path")


# ---- socket activation ---------------------------------------------------------------


def socket_activate_command() -> str:
    command = shutil.which("systemd-socket-activate")
    if command is None:
        pytest.fail(
            "systemd-socket-activate is not installed; run `make system-deps` "
            "(Debian package 'systemd') to test socket activation"
        )
    return command


@dataclass
class Activator:
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def socket_activated(
    dirs: DaemonDirs, env: dict[str, str], command: list[str]
) -> Iterator[Activator]:
    """``systemd-socket-activate -l <socket> -E ... <command>``, listening once this yields.

    Without ``--accept`` the activator execs the command in its own process on the first
    connection (so ``proc`` becomes mimird). It runs in its own process group, killed
    in ``finally`` whatever state the test left it in."""
    activate = socket_activate_command()
    dirs.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    args = [activate, "-l", str(dirs.socket), "--fdname=mimird"]
    for name, value in env.items():
        args += ["-E", f"{name}={value}"]
    log_path = dirs.root / "activator.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*args, *command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    activator = Activator(proc, log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not listening(dirs.socket):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"systemd-socket-activate did not listen:\n{activator.log}")
            time.sleep(0.01)
        yield activator
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def listening(path: Path) -> bool:
    """Whether a socket listens at ``path`` (read off /proc/net/unix, which a connect
    would not be: the activator starts its command on the first connection). The file
    exists from bind(), before listen(): a connect in between is refused."""
    accepting = 0x10000  # __SO_ACCEPTCON in the Flags column
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == str(path) and int(fields[3], 16) & accepting:
                return True
    return False


def activation_env(dirs: DaemonDirs, notify: NotifySocket, **extra: str) -> dict[str, str]:
    """What the service unit would give mimird: its dirs and NOTIFY_SOCKET (no LISTEN_*;
    systemd-socket-activate adds those itself)."""
    env = dirs.env(NOTIFY_SOCKET=notify.address, **extra)
    return {
        name: env[name]
        for name in env
        if name.startswith(("MIMIR_", "NOTIFY_SOCKET", "WATCHDOG_"))
        or name in ("HOME", "PYTHONUNBUFFERED", "PYTHONPATH")
    }


def send_status_request(path: Path) -> socket.socket:
    """Connect (which makes the activator start mimird) and send daemon.status."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(READY_TIMEOUT_S)
    client.connect(str(path))
    client.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "daemon.status"}\n')
    return client


def read_response(client: socket.socket) -> Any:
    with client.makefile("rb") as f:
        return msgspec.json.decode(f.readline())


def test_socket_activated_daemon_serves_the_connection_that_started_it(
    dirs: DaemonDirs, notify: NotifySocket
) -> None:
    command = [sys.executable, "-m", "mimird", "--log-format", "json"]
    with (
        socket_activated(dirs, activation_env(dirs, notify), command) as activator,
        send_status_request(dirs.socket) as client,
    ):
        ready, _ = notify.wait_for("READY", process=activator.proc)
        response = read_response(client)
    assert "result" in response, (response, activator.log)
    status = response["result"]
    assert status["socket_activated"] is True
    assert status["schema_revision"] == head_revision()
    assert str(status["pid"]) == ready["MAINPID"]


def test_socket_activated_daemon_leaves_the_socket_file_to_systemd(
    dirs: DaemonDirs, notify: NotifySocket
) -> None:
    command = [sys.executable, "-m", "mimird", "--log-format", "json"]
    with socket_activated(dirs, activation_env(dirs, notify), command) as activator:
        with send_status_request(dirs.socket) as client:
            ready, _ = notify.wait_for("READY", process=activator.proc)
            read_response(client)
        os.kill(int(ready["MAINPID"]), signal.SIGTERM)
        notify.wait_for("STOPPING", process=activator.proc)
        assert activator.proc.wait(STOP_TIMEOUT_S) == 0, activator.log
        assert dirs.socket.exists()


# mimird's own main(), then a child process started the way an agent would be:
# it reports the names of the environment variables it inherited.
_REPORT_CHILD_ENV = """
import subprocess, sys
from mimird.cli import main
code = main(["--log-format", "json"])
with open(sys.argv[1], "w") as out:
    subprocess.run(
        [sys.executable, "-c", "import os; print(chr(10).join(sorted(os.environ)))"],
        stdout=out, check=True,
    )
sys.exit(code)
"""


@pytest.mark.slow
def test_socket_activated_daemon_passes_no_systemd_variables_or_key_to_children(
    dirs: DaemonDirs, notify: NotifySocket
) -> None:
    # /proc/<pid>/environ cannot show this: the kernel reports the environment as it
    # was at exec, whatever the process unset since. What matters is what children get.
    inherited = dirs.root / "child-env.txt"
    env = activation_env(
        dirs,
        notify,
        WATCHDOG_USEC="10000000",
        MIMIR_DB_KEY="key-that-children-must-not-see",
    )
    command = [sys.executable, "-c", _REPORT_CHILD_ENV, str(inherited)]
    with socket_activated(dirs, env, command) as activator:
        with send_status_request(dirs.socket) as client:
            ready, _ = notify.wait_for("READY", process=activator.proc)
            assert read_response(client)["result"]["socket_activated"] is True
        os.kill(int(ready["MAINPID"]), signal.SIGTERM)
        assert activator.proc.wait(STOP_TIMEOUT_S) == 0, activator.log
    names = set(inherited.read_text().split())
    assert "MIMIR_DATA_DIR" in names  # the report is real
    assert names.isdisjoint({*SYSTEMD_VARIABLES, "MIMIR_DB_KEY"})
