"""The systemd protocols, without libsystemd.

``sd_notify`` is one datagram of ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``;
socket activation hands us listening sockets as inherited file descriptors
starting at 3. Both are stable, documented protocols (sd_notify(3),
sd_listen_fds(3)).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import MutableMapping
from typing import Final

import structlog
import trio

log = structlog.get_logger("mimird.systemd")

SD_LISTEN_FDS_START: Final = 3


class Notifier:
    """Sends sd_notify messages; does nothing when there is no ``NOTIFY_SOCKET``."""

    def __init__(self, address: str | None) -> None:
        self._address: str | None = None
        if address:
            if address[0] not in "/@":
                raise OSError(errno.EAFNOSUPPORT, f"unsupported NOTIFY_SOCKET {address!r}")
            # A leading '@' names a socket in Linux's abstract namespace.
            self._address = "\0" + address[1:] if address[0] == "@" else address

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> None:
        """``notify(READY=1, STATUS="serving")``. Failures are logged, never raised:
        the daemon must not die because the service manager went away."""
        if self._address is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message)
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc), fields=sorted(fields))


def watchdog_interval(env: MutableMapping[str, str]) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec=``), or None.

    Removes the variables so children do not inherit them."""
    usec = env.pop("WATCHDOG_USEC", None)
    pid = env.pop("WATCHDOG_PID", None)
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None


async def run_watchdog(notifier: Notifier, interval: float) -> None:
    while True:
        notifier.notify(WATCHDOG=1)
        await trio.sleep(interval)


def take_listen_fds(env: MutableMapping[str, str]) -> list[socket.socket]:
    """Adopt the sockets systemd passed us, if they are meant for this process.

    The variables are removed (as ``sd_listen_fds(1)`` does) and the fds made
    close-on-exec, so no agent ever inherits them."""
    pid = env.pop("LISTEN_PID", None)
    count = env.pop("LISTEN_FDS", None)
    env.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None or pid != str(os.getpid()):
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets
