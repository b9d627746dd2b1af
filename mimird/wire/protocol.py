"""JSON-RPC 2.0 envelopes, NDJSON framing constants, and shared codecs."""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

from mimird.wire.codes import PROTOCOL_VERSION
from mimird.wire.errors import ErrorData

__all__ = ["PROTOCOL_VERSION", "ErrorObject", "Notification", "Request", "Response"]

#: Default maximum size of one NDJSON frame, in bytes (the newline excluded).
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024

RequestId = int | str | None


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request or notification. ``id`` UNSET means notification; ``None`` is a real id."""

    jsonrpc: Literal["2.0"]
    method: str
    params: msgspec.Raw | UnsetType = UNSET
    id: RequestId | UnsetType = UNSET


class ErrorObject(msgspec.Struct, kw_only=True):
    code: int
    message: str
    data: ErrorData | UnsetType = UNSET


class Response(msgspec.Struct, kw_only=True):
    # No omit_defaults here: it would drop "jsonrpc" and "id": null. UNSET fields
    # (result xor error) are the only ones left out.
    jsonrpc: Literal["2.0"] = "2.0"
    id: RequestId
    result: Any | UnsetType = UNSET
    error: ErrorObject | UnsetType = UNSET


class Notification(msgspec.Struct, kw_only=True):
    jsonrpc: Literal["2.0"] = "2.0"
    method: str
    params: Any
