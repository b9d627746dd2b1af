"""A blocking JSON-RPC client for mimird's Unix socket."""

from __future__ import annotations

import itertools
import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Final

import msgspec

from mimird import paths
from mimird.wire.protocol import Response

DEFAULT_TIMEOUT_S: Final = 60.0
_ENCODER: Final = msgspec.json.Encoder()
_RESPONSE_DECODER: Final = msgspec.json.Decoder(Response)


class ClientError(Exception):
    """Base of everything mimirctl reports to the user."""


class DaemonNotRunning(ClientError):
    def __init__(self, socket_path: Path, reason: str) -> None:
        super().__init__(
            f"mimird is not running ({reason}: {socket_path}). Start it with 'mimird' "
            "(or 'make run'), or under systemd: 'systemctl --user start mimird.socket'"
        )
        self.socket_path = socket_path


class ConnectionLost(ClientError):
    pass


class RpcError(ClientError):
    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def kind(self) -> str | None:
        kind = getattr(self.data, "kind", None)
        return kind if isinstance(kind, str) else None


def resolve_socket(flag: str | None, env: dict[str, str] | None = None) -> Path:
    """--socket, then MIMIR_SOCKET, then the config file's paths.socket, then the default."""
    env = dict(os.environ) if env is None else env
    if flag:
        return Path(flag).expanduser()
    if value := env.get("MIMIR_SOCKET"):
        return Path(value).expanduser()
    config = paths.config_file(env)
    try:
        with config.open("rb") as f:
            configured = tomllib.load(f).get("paths", {}).get("socket")
    except (OSError, tomllib.TOMLDecodeError):
        configured = None
    if isinstance(configured, str) and configured:
        return Path(configured).expanduser()
    return paths.runtime_dir(env) / paths.SOCKET_NAME


class Client:
    """One connection; ``call`` sends a request and waits for its response."""

    def __init__(self, socket_path: Path, *, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self._ids = itertools.count(1)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
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
            raise ClientError(f"cannot connect to {socket_path}: {exc.strerror}") from None
        self._sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The method's result (decoded JSON), or :class:`RpcError`."""
        request_id = next(self._ids)
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        try:
            self._sock.sendall(_ENCODER.encode(request) + b"\n")
            line = self._file.readline()
        except TimeoutError:
            raise ConnectionLost(f"mimird did not answer {method} in time") from None
        except OSError as exc:
            raise ConnectionLost(f"connection to mimird lost: {exc.strerror or exc}") from None
        if not line:
            raise ConnectionLost("mimird closed the connection (is it shutting down?)")
        response = _RESPONSE_DECODER.decode(line)
        if response.error is not msgspec.UNSET:
            error = response.error
            data = None if error.data is msgspec.UNSET else error.data
            raise RpcError(error.code, error.message, data)
        if response.id != request_id:
            raise ConnectionLost(f"mimird answered request {response.id}, expected {request_id}")
        return response.result
