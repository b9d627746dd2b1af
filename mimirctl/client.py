"""A blocking JSON-RPC client for mimird's Unix socket.

It speaks the wire with the standard library's ``json``: importing msgspec
alone costs ~45 ms here, half of mimirctl's start-up budget, and short commands
exchange a few hundred bytes. The codes it shares with the daemon come from
``mimird.wire.codes``, which needs nothing else. The socket is ``_socket``'s, the
C module under ``socket``: the Python wrapper (its enum conversions, selectors,
array) costs ~2.7 ms of start-up, and a blocking Unix socket needs none of it.
"""

from __future__ import annotations

import _socket
import itertools
import json
import os

from mimird import paths
from mimird.wire.codes import PROTOCOL_VERSION, ErrorCode
from mimird.wire.lines import END, NEED_DATA, LineSplitter, TooLong

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    from typing import Any, Final, NoReturn

DEFAULT_TIMEOUT_S: Final = 60.0
#: How long the protocol check waits for ``daemon.status``.
PROTOCOL_CHECK_TIMEOUT_S: Final = 5.0
#: Bytes asked of the socket per read.
RECV_SIZE: Final = 1 << 16
#: A message from mimird longer than this ends the connection (a page of events
#: holding agents' long messages can be large, but not this large).
MAX_MESSAGE_BYTES: Final = 1 << 30


#: How mimirctl names itself to mimird (``daemon.status``'s ``client``).
CLIENT_NAME: Final = "mimirctl"


class ClientError(Exception):
    """Base of everything mimirctl reports to the user."""


class DaemonNotRunning(ClientError):
    def __init__(self, socket_path: str, reason: str) -> None:
        super().__init__(
            f"mimird is not running ({reason}: {socket_path}). Start it with 'mimird' "
            "(or 'make run'), or under systemd: 'systemctl --user start mimird.socket'"
        )
        self.socket_path = socket_path


class ConnectionLost(ClientError):
    pass


class BadRequest(ClientError):
    """What was asked cannot be sent as it is (a usage error: exit 2)."""


class SocketPathTooLong(BadRequest):
    """The socket's path cannot be a Unix socket's."""

    def __init__(self, socket_path: str, size: int) -> None:
        super().__init__(
            f"the socket path {socket_path!r} is {size} bytes long, and a Unix socket's path "
            f"holds at most {paths.MAX_SOCKET_PATH_BYTES}: give a shorter --socket "
            "(or MIMIR_SOCKET, or paths.socket in the config file)"
        )


class ProtocolMismatch(ClientError):
    """mimird speaks another protocol version than this mimirctl."""


class RpcError(ClientError):
    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def kind(self) -> str | None:
        kind = self.data.get("kind") if isinstance(self.data, dict) else None
        return kind if isinstance(kind, str) else None


def resolve_socket(flag: str | None, env: dict[str, str] | None = None) -> str:
    """--socket, then MIMIR_SOCKET, then the config file's paths.socket, then the default."""
    env = dict(os.environ) if env is None else env
    if flag:
        return os.path.expanduser(flag)
    if value := env.get("MIMIR_SOCKET"):
        return os.path.expanduser(value)
    config = paths.config_file(env)
    if os.path.exists(config):
        import tomllib  # only when there is a config file: it costs a few ms at start

        try:
            with open(config, "rb") as f:
                configured = tomllib.load(f).get("paths", {}).get("socket")
        except (OSError, tomllib.TOMLDecodeError):
            configured = None
        if isinstance(configured, str) and configured:
            return os.path.expanduser(configured)
    return os.path.join(paths.runtime_dir(env), paths.SOCKET_NAME)


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """``text`` as JSON, as mimird reads it: Python's ``json`` also takes ``NaN``,
    ``Infinity`` and ``-Infinity``, which JSON has not (ValueError here)."""
    return json.loads(text, parse_constant=_not_a_number)


class Client:
    """One connection; ``call`` sends a request and waits for its response."""

    def __init__(self, socket_path: str, *, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self._ids = itertools.count(1)
        if (size := len(os.fsencode(socket_path))) > paths.MAX_SOCKET_PATH_BYTES:
            raise SocketPathTooLong(socket_path, size)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(socket_path))
        except FileNotFoundError:
            sock.close()
            raise DaemonNotRunning(socket_path, "no socket") from None
        except ConnectionRefusedError:
            sock.close()
            raise DaemonNotRunning(socket_path, "nothing listens on the socket") from None
        except PermissionError:
            sock.close()
            raise ClientError(
                f"permission denied on {socket_path}: mimird serves only its own user"
            ) from None
        except OSError as exc:
            sock.close()
            raise ClientError(f"cannot connect to {socket_path}: {exc.strerror or exc}") from None
        self._sock = sock
        # Our own splitter rather than sock.makefile(): a caller that waits on the socket
        # with select() must know whether a whole message is already read (buffered).
        self._lines = LineSplitter(MAX_MESSAGE_BYTES)
        #: Messages read but not handled yet, oldest first: the notifications that
        #: arrived while :meth:`call` waited for its response, and whatever a command
        #: put aside to handle later.
        self.notifications: list[dict[str, Any]] = []

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        """The socket's file descriptor, for select()."""
        return self._sock.fileno()

    def buffered(self) -> bool:
        """Whether :meth:`read` has a whole message without reading the socket."""
        return self._lines.has_line()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a request without waiting; returns its id (see :meth:`read`)."""
        request_id = next(self._ids)
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        try:
            frame = json.dumps(request, separators=(",", ":"), allow_nan=False)
        except ValueError:
            raise BadRequest(
                f"cannot send {method}: a number in it is NaN or infinite, which JSON cannot hold"
            ) from None
        try:
            self._sock.sendall(frame.encode() + b"\n")
        except OSError as exc:
            lost = ConnectionLost(f"connection to mimird lost: {exc.strerror or exc}")
            self._raise_last_words(lost)
        return request_id

    def _raise_last_words(self, lost: ConnectionLost) -> NoReturn:
        """Raise the error the daemon closed the connection with (its connection
        limit), if it left one to read; else ``lost``."""
        try:
            message = self.read()
        except ClientError:
            raise lost from None
        if _about_the_connection(message):
            self.result(message)
        raise lost from None

    def set_timeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def read(self, waiting_for: str = "mimird") -> dict[str, Any]:
        """The next message: a response or a notification (``method`` set)."""
        ended = False
        while (line := self._lines.next_event()) is NEED_DATA:
            try:
                data = self._sock.recv(RECV_SIZE)
            except TimeoutError:
                raise ConnectionLost(f"{waiting_for} did not answer in time") from None
            except OSError as exc:
                raise ConnectionLost(f"connection to mimird lost: {exc.strerror or exc}") from None
            self._lines.feed(data)
            ended = not data
        # A line given only once the stream ended had no newline: it was cut short.
        if line is END or ended:
            raise ConnectionLost("mimird closed the connection (is it shutting down?)")
        if isinstance(line, TooLong):
            raise ConnectionLost(
                f"mimird sent a message longer than {MAX_MESSAGE_BYTES} bytes: {line.head[:200]!r}"
            )
        assert isinstance(line, bytes)
        try:
            message = json.loads(line)
        except ValueError:
            raise ConnectionLost(
                f"mimird sent something that is not JSON: {line[:200]!r}"
            ) from None
        if not isinstance(message, dict):
            raise ConnectionLost(f"mimird sent something that is not a response: {line[:200]!r}")
        return message

    @staticmethod
    def result(response: dict[str, Any]) -> Any:
        """A response's result, or its error raised as :class:`RpcError`."""
        if isinstance(error := response.get("error"), dict):
            raise RpcError(error.get("code", 0), error.get("message", "error"), error.get("data"))
        return response.get("result")

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The method's result (decoded JSON), or :class:`RpcError`. Notifications
        that arrive meanwhile are kept in ``notifications``."""
        request_id = self.send(method, params)
        while True:
            message = self.read(method)
            if "method" in message:
                self.notifications.append(message)
                continue
            if _about_the_connection(message):
                return self.result(message)
            if message.get("id") != request_id:
                raise ConnectionLost(
                    f"mimird answered request {message.get('id')}, expected {request_id}"
                )
            return self.result(message)


def protocol_skew(status: Any) -> str | None:
    """What to tell the user when ``status`` (``daemon.status``'s result) says mimird
    speaks another protocol than this mimirctl; ``None`` when both speak the same."""
    theirs = status.get("protocol_version") if isinstance(status, dict) else None
    if theirs == PROTOCOL_VERSION:
        return None
    version = status.get("version") if isinstance(status, dict) else None
    daemon = f"mimird {version}" if isinstance(version, str) else "mimird"
    if isinstance(theirs, int) and theirs < PROTOCOL_VERSION:
        return (
            f"{daemon} speaks protocol {theirs}, older than this mimirctl's {PROTOCOL_VERSION}: "
            "restart mimird so that it runs the version installed with this mimirctl "
            "('systemctl --user restart mimird', or stop it and start 'mimird')"
        )
    if isinstance(theirs, int):
        return (
            f"{daemon} speaks protocol {theirs}, newer than this mimirctl's {PROTOCOL_VERSION}: "
            "upgrade mimirctl (the one installed with mimird), or run mimird's own mimirctl"
        )
    return (
        f"{daemon} did not say which protocol it speaks: it is not the mimird this mimirctl knows"
    )


def _about_the_connection(message: dict[str, Any]) -> bool:
    """An error with id null is about the connection, not a request: the daemon's
    connection limit, a frame it could not take. It closes the connection next."""
    return message.get("id") is None and "error" in message


def check_protocol(client: Client) -> str | None:
    """Ask mimird which protocol it speaks (one ``daemon.status``): what
    :func:`protocol_skew` says, or ``None`` when the protocols agree. A mimird that
    does not answer the question in :data:`PROTOCOL_CHECK_TIMEOUT_S` is not the
    mimird this mimirctl knows; a connection lost meanwhile is reported as such."""
    client.set_timeout(PROTOCOL_CHECK_TIMEOUT_S)
    try:
        # Named, so that the audit log says which client made the calls that follow.
        status = client.call("daemon.status", {"client": CLIENT_NAME})
    except RpcError as exc:
        if exc.code == ErrorCode.CONNECTION_LIMIT:
            raise
        status = None
        if exc.code == ErrorCode.INVALID_PARAMS:
            # A mimird older than the client param: ask again, to say what it speaks.
            try:
                status = client.call("daemon.status")
            except RpcError:
                status = None
    client.set_timeout(DEFAULT_TIMEOUT_S)
    return protocol_skew(status)
