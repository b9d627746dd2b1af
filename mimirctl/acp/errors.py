"""ACP errors the bridge answers with, and mimird's errors turned into them."""

from __future__ import annotations

from typing import Any, Final

from mimirctl.client import RpcError
from mimird.wire.codes import ErrorCode

INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: ACP's "resource not found" (an unknown session).
RESOURCE_NOT_FOUND: Final = -32002
#: ACP's "request cancelled".
REQUEST_CANCELLED: Final = -32800

#: mimird's codes that have an ACP (JSON-RPC) equivalent; others pass as they are.
_CODES: Final[dict[int, int]] = {
    ErrorCode.INVALID_PARAMS: INVALID_PARAMS,
    ErrorCode.NOT_FOUND: RESOURCE_NOT_FOUND,
    # -32002 is ACP's "resource not found": not to be confused with it.
    ErrorCode.ALREADY_EXISTS: INVALID_PARAMS,
}


class Deferred:
    """A handler's result: the request is answered later (a prompt, at its turn's end)."""


DEFERRED: Final = Deferred()


class AcpError(Exception):
    """An error answer to the editor's request."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def from_rpc(error: RpcError) -> AcpError:
    """mimird's error as the editor gets it: its message, and its kind in ``data``."""
    data: dict[str, Any] = {"mimir": error.kind} if error.kind else {}
    if isinstance(error.data, dict) and isinstance(error.data.get("field"), str):
        data["field"] = error.data["field"]
    return AcpError(_CODES.get(error.code, error.code), error.message, data or None)


def invalid(message: str) -> AcpError:
    return AcpError(INVALID_PARAMS, message)
