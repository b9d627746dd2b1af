"""One daemon per socket and per database: locks, and the listening socket.

The recipe (non-activated start): take an ``flock`` on a lock file beside the
socket and one beside the database (the kernel drops them when the process
dies, so there are no stale PID files); if the socket path exists, probe it:
alive means another process serves it (refuse), dead means a crashed daemon
left it (unlink); then bind under ``umask(0o077)`` so the socket is 0600 from
its first instant, and listen.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from mimird.errors import StartupError

LISTEN_BACKLOG: Final = 128
PROBE_TIMEOUT_S: Final = 1.0


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (0700) if needed, then check it is a real directory that
    only we can use — the directory, not the socket mode, is the real gate."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create directory {path}: {exc.strerror}") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StartupError(f"{path} must be a directory, not a symlink or file")
    if st.st_uid != os.geteuid():
        raise StartupError(
            f"directory {path} belongs to uid {st.st_uid}, not to us ({os.geteuid()})"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise StartupError(
            f"directory {path} has mode {mode:04o}; the socket's directory must be private "
            f"(0700): run 'chmod 700 {path}' or choose another --socket"
        )


@contextlib.contextmanager
def instance_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the life of the daemon."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StartupError(
                f"another mimird (pid {holder}) is already running with this {what} "
                f"(lock {path} is held); stop it first or use another --{what}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def socket_is_alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                return False
            raise
        return True


def bind_unix_listener(path: Path) -> socket.socket:
    """Bind and listen on ``path``; the caller holds the instance lock."""
    ensure_private_dir(path.parent)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise StartupError(
                f"{path} exists and is not a socket; remove it or choose another --socket"
            )
        if socket_is_alive(path):
            raise StartupError(
                f"socket {path} is in use by another process; is another mimird running "
                "with a different database?"
            )
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        # 0o177: the socket is created 0600 (a socket's mode starts from 0777), so
        # there is never an instant when another user could connect.
        old_umask = os.umask(0o177)
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(old_umask)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {exc.strerror}") from None
    return sock


def check_activated_socket(sock: socket.socket) -> None:
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise StartupError(
            f"socket passed by systemd is {sock.family!r}/{sock.type!r}; mimird needs a Unix "
            "stream socket (ListenStream=%t/mimir/mimird.sock)"
        )
