"""Only the daemon's own uid can use the socket (DESIGN.md, Invariant 6): a private
directory, a 0600 socket and 0600 lock files, and an ``SO_PEERCRED`` check."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import structlog
import trio

from mimird.daemon import run_daemon
from mimird.errors import ConfigError, StartupError
from mimird.paths import MAX_SOCKET_PATH_BYTES
from mimird.rpc.registry import PeerCredentials
from mimird.rpc.server import peer_credentials
from tests.support.helpers import DaemonDirs, InProcessDaemon, TrioClient, in_process_daemon

DEADLINE_S: Final = 10.0
FOREIGN_UID: Final = os.geteuid() + 1


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def socket_path_of_length(dirs: DaemonDirs, length: int) -> Path:
    prefix = os.fsencode(dirs.root) + b"/"
    path = Path(os.fsdecode(prefix + b"s" * (length - len(prefix))))
    assert len(os.fsencode(path)) == length
    return path


def make_public_socket_dir(dirs: DaemonDirs) -> None:
    dirs.runtime.mkdir()
    dirs.runtime.chmod(0o755)


# ---- modes ----------------------------------------------------------------------------


async def test_socket_directory_is_private(daemon: InProcessDaemon) -> None:
    assert mode(daemon.socket.parent) == 0o700


async def test_socket_is_readable_and_writable_by_owner_only(daemon: InProcessDaemon) -> None:
    assert stat.S_ISSOCK(os.lstat(daemon.socket).st_mode)
    assert mode(daemon.socket) == 0o600


async def test_lock_files_are_readable_and_writable_by_owner_only(daemon: InProcessDaemon) -> None:
    lock_paths = daemon.dirs.settings().lock_paths
    assert [path.name for path in lock_paths] == ["mimird.sock.lock", "mimir.db.lock"]
    assert [mode(path) for path in lock_paths] == [0o600, 0o600]


async def test_modes_do_not_depend_on_the_umask(dirs: DaemonDirs) -> None:
    old_umask = os.umask(0)
    try:
        async with in_process_daemon(dirs) as daemon:
            paths = [daemon.socket.parent, daemon.socket, *dirs.settings().lock_paths]
            modes = [mode(path) for path in paths]
    finally:
        os.umask(old_umask)
    assert modes == [0o700, 0o600, 0o600, 0o600]


# ---- refusing to start ----------------------------------------------------------------


async def test_daemon_refuses_a_socket_directory_others_can_enter(dirs: DaemonDirs) -> None:
    make_public_socket_dir(dirs)
    with trio.fail_after(DEADLINE_S), pytest.raises(StartupError) as raised:
        await run_daemon(dirs.settings(), trio.Event())
    assert f"directory {dirs.runtime} has mode 0755" in str(raised.value)
    assert "must be private (0700)" in str(raised.value)
    assert not dirs.socket.exists()


def test_daemon_process_exits_non_zero_naming_the_public_socket_directory(
    dirs: DaemonDirs,
) -> None:
    make_public_socket_dir(dirs)
    result = subprocess.run(
        [sys.executable, "-m", "mimird"],
        env=dirs.env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S * 3,
        check=False,
    )
    assert result.returncode != 0
    assert f"directory {dirs.runtime} has mode 0755" in result.stderr
    assert f"chmod 700 {dirs.runtime}" in result.stderr
    assert not dirs.socket.exists()


def test_socket_path_longer_than_107_bytes_is_a_config_error_naming_it(
    dirs: DaemonDirs,
) -> None:
    too_long = socket_path_of_length(dirs, MAX_SOCKET_PATH_BYTES + 1)
    with pytest.raises(ConfigError, match="socket path") as raised:
        dirs.settings(MIMIR_SOCKET=str(too_long))
    assert str(too_long) in str(raised.value)
    assert raised.value.exit_code == 78


async def test_socket_path_of_exactly_107_bytes_is_served(dirs: DaemonDirs) -> None:
    longest = socket_path_of_length(dirs, MAX_SOCKET_PATH_BYTES)
    settings = dirs.settings(MIMIR_SOCKET=str(longest))
    async with in_process_daemon(dirs, settings=settings) as daemon:
        assert daemon.socket == longest
        async with TrioClient.connect(longest) as client:
            with trio.fail_after(DEADLINE_S):
                status = await client.call("daemon.status")
    assert status["paths"]["socket"] == str(longest)


# ---- peer credentials -----------------------------------------------------------------


async def test_peer_with_a_foreign_uid_is_disconnected_without_a_response(
    dirs: DaemonDirs,
) -> None:
    checked: list[PeerCredentials] = []

    def foreign_peer(sock: socket.socket) -> PeerCredentials:
        real = peer_credentials(sock)
        checked.append(real)
        return PeerCredentials(pid=real.pid, uid=FOREIGN_UID, gid=real.gid)

    async with (
        in_process_daemon(dirs, credentials=foreign_peer) as daemon,
        TrioClient.connect(daemon.socket) as client,
    ):
        with trio.fail_after(DEADLINE_S):
            with contextlib.suppress(trio.BrokenResourceError):  # already disconnected
                await client.send_line(b'{"jsonrpc":"2.0","id":1,"method":"daemon.status"}')
            received = bytearray()
            try:
                while data := await client.stream.receive_some():
                    received += data
            except trio.BrokenResourceError:
                pass  # closed with our request unread: Linux reports a reset
    assert received == b""
    assert len(checked) == 1


# ---- a real second uid ------------------------------------------------------------------
#
# The tests run as root: a child process that drops to nobody's uid and gid (no
# supplementary groups) tries the socket, and each layer of Invariant 6 is met alone,
# the ones before it opened for the test only.

#: What the child does as the other uid, stdlib only; it prints what happened as JSON.
FOREIGN_CLIENT: Final = """
import errno, json, os, socket, sys
path = sys.argv[1]
out = {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(), "pid": os.getpid()}
def attempt(key, action):
    try:
        out[key] = action()
    except OSError as exc:
        out[key] = errno.errorcode.get(exc.errno, type(exc).__name__)
attempt("list_directory", lambda: [os.listdir(os.path.dirname(path)), "ok"][1])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
attempt("connect", lambda: [sock.connect(path), "ok"][1])
if out["connect"] == "ok":
    # Nothing sent first: a peer that is served would wait here until it asks.
    attempt("received", lambda: sock.recv(65536).decode("utf-8", "replace"))
    request = b'{"jsonrpc":"2.0","id":1,"method":"daemon.status"}\\n'
    attempt("send", lambda: [sock.sendall(request), "ok"][1])
print(json.dumps(out))
"""
NOBODY: Final = 65534
#: An interpreter nobody may run (the test's own may live under root's private home).
SYSTEM_PYTHON: Final = shutil.which("python3", path="/usr/bin:/bin")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or SYSTEM_PYTHON is None,
    reason="becoming another uid needs root, and a python3 in /usr/bin or /bin",
)


async def as_another_uid(socket_path: Path) -> dict[str, Any]:
    """Run FOREIGN_CLIENT as nobody against ``socket_path``; what it saw."""
    with trio.fail_after(DEADLINE_S * 2):
        done = await trio.run_process(
            [str(SYSTEM_PYTHON), "-I", "-S", "-c", FOREIGN_CLIENT, str(socket_path)],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd="/",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    assert (seen["uid"], seen["euid"], seen["groups"]) == (NOBODY, NOBODY, [])
    return seen


@contextlib.contextmanager
def modes(*changes: tuple[Path, int]) -> Iterator[None]:
    """These paths with these modes, their own modes back afterwards."""
    before = [(path, mode(path)) for path, _ in changes]
    try:
        for path, wanted in changes:
            path.chmod(wanted)
        yield
    finally:
        for path, old in reversed(before):
            path.chmod(old)


@needs_root
async def test_another_uid_is_stopped_by_the_private_socket_directory(
    daemon: InProcessDaemon,
) -> None:
    # The test's own directory may be entered, so that the socket's directory is
    # what refuses.
    with modes((daemon.dirs.root, 0o711)):
        seen = await as_another_uid(daemon.socket)
    assert mode(daemon.socket.parent) == 0o700
    assert (seen["list_directory"], seen["connect"]) == ("EACCES", "EACCES")


@needs_root
async def test_another_uid_is_stopped_by_the_owner_only_socket(daemon: InProcessDaemon) -> None:
    # Both directories opened to others (after the start: mimird refuses to start in
    # a directory others can enter); the 0600 socket is what refuses.
    with modes((daemon.dirs.root, 0o711), (daemon.socket.parent, 0o711)):
        seen = await as_another_uid(daemon.socket)
    assert mode(daemon.socket) == 0o600
    assert seen["connect"] == "EACCES"


@needs_root
async def test_another_uid_that_reaches_the_socket_is_disconnected_without_a_word(
    daemon: InProcessDaemon,
) -> None:
    # Directories and socket opened to others: only the SO_PEERCRED check is left.
    opened = ((daemon.dirs.root, 0o711), (daemon.socket.parent, 0o711), (daemon.socket, 0o666))
    with structlog.testing.capture_logs() as logs, modes(*opened):
        seen = await as_another_uid(daemon.socket)
    assert seen["connect"] == "ok"
    # Closed by the daemon before the client asked anything: end of stream, no bytes;
    # then nothing can be sent.
    assert seen["received"] == ""
    assert seen["send"] == "EPIPE"
    refused = [e for e in logs if e["event"] == "rpc_peer_refused"]
    assert [(e["uid"], e["pid"]) for e in refused] == [(NOBODY, seen["pid"])]
    # The daemon goes on serving its own uid.
    async with TrioClient.connect(daemon.socket) as client:
        with trio.fail_after(DEADLINE_S):
            status = await client.call("daemon.status")
    assert status["pid"] == os.getpid()


async def test_peer_credentials_of_a_real_connection_are_our_own(dirs: DaemonDirs) -> None:
    path = dirs.root / "peer.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
            accepted, _ = listener.accept()
            with accepted:
                credentials = peer_credentials(accepted)
    assert credentials == PeerCredentials(pid=os.getpid(), uid=os.geteuid(), gid=os.getegid())
