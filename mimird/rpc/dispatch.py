"""From a frame to a response: envelope, method lookup, params, handler, audit.

Decoding happens in two stages so that each failure gets its own code: bytes
that are not JSON are -32700; JSON that is not a request is -32600; an unknown
method is -32601; params that do not fit the method's type are -32602, with
``data.field`` naming the offending field.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec
import structlog
from msgspec import UNSET

from mimird.errors import MimirError
from mimird.rpc.audit import AuditLog
from mimird.rpc.registry import CallContext, Method, Registry
from mimird.wire.errors import ErrorCode, ErrorData
from mimird.wire.protocol import ErrorObject, Request, RequestId, Response

log = structlog.get_logger("mimird.rpc")

_REQUEST_DECODER: Final = msgspec.json.Decoder(Request)
_BATCH_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])
_ENCODER: Final = msgspec.json.Encoder()
_AT_PATH: Final = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED_FIELD: Final = re.compile(r"(?:unknown|missing required) field `(?P<name>[^`]+)`")
_WHITESPACE: Final = b" \t\r\n"


def encode_error(
    request_id: RequestId,
    code: ErrorCode,
    message: str,
    *,
    field: str | None = None,
    id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> bytes:
    error = ErrorObject(
        code=int(code),
        message=message,
        data=ErrorData(kind=code.kind, field=field, id=id, detail=detail),
    )
    return _ENCODER.encode(Response(id=request_id, error=error))


def _salvage_id(raw: bytes | msgspec.Raw) -> RequestId:
    """The id of a request that failed validation, if it has a usable one."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if isinstance(value, dict):
        candidate = value.get("id")
        if candidate is None or type(candidate) in (int, str):
            return candidate
    return None


def describe_validation_error(error: msgspec.ValidationError) -> tuple[str | None, str]:
    """(offending field as a dotted path, message) from msgspec's error text."""
    text = str(error)
    match = _AT_PATH.search(text)
    path = match.group("path") if match else ""
    reason = _AT_PATH.sub("", text)
    if named := _NAMED_FIELD.search(reason):
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    path = path.replace("[", ".").replace("]", "")
    return (path or None), reason


class Dispatcher:
    def __init__(self, registry: Registry, audit: AuditLog) -> None:
        self._registry = registry
        self._audit = audit

    async def handle_frame(self, frame: bytes, ctx: CallContext) -> bytes | None:
        """The bytes to send back (without the newline), or None for notifications."""
        if frame.lstrip(_WHITESPACE)[:1] == b"[":
            return await self._handle_batch(frame, ctx)
        return await self._handle_one(frame, ctx)

    async def _handle_batch(self, frame: bytes, ctx: CallContext) -> bytes | None:
        try:
            items = _BATCH_DECODER.decode(frame)
        except msgspec.DecodeError as exc:
            return encode_error(None, ErrorCode.PARSE_ERROR, f"frame is not valid JSON: {exc}")
        if not items:
            return encode_error(None, ErrorCode.INVALID_REQUEST, "empty batch")
        responses = [r for item in items if (r := await self._handle_one(item, ctx)) is not None]
        if not responses:
            return None  # a batch of notifications gets no answer at all
        return b"[" + b",".join(responses) + b"]"

    async def _handle_one(self, raw: bytes | msgspec.Raw, ctx: CallContext) -> bytes | None:
        try:
            request = _REQUEST_DECODER.decode(raw)
        except msgspec.ValidationError as exc:
            field, reason = describe_validation_error(exc)
            return encode_error(
                _salvage_id(raw),
                ErrorCode.INVALID_REQUEST,
                f"not a JSON-RPC 2.0 request: {reason}" + (f" (at '{field}')" if field else ""),
                field=field,
            )
        except msgspec.DecodeError as exc:
            return encode_error(None, ErrorCode.PARSE_ERROR, f"frame is not valid JSON: {exc}")

        notification = request.id is UNSET
        request_id: RequestId = None if request.id is UNSET else request.id
        method = self._registry.get(request.method)
        if method is None:
            if notification:
                return None
            return encode_error(
                request_id,
                ErrorCode.METHOD_NOT_FOUND,
                f"no method named {request.method!r}; rpc.discover lists them",
                field="method",
            )
        response = await self._call(method, request, request_id, ctx)
        return None if notification else response

    async def _call(
        self, method: Method, request: Request, request_id: RequestId, ctx: CallContext
    ) -> bytes:
        raw_params = b"{}" if request.params is UNSET else bytes(request.params)
        stripped = raw_params.strip(_WHITESPACE)
        if stripped == b"null":
            raw_params = b"{}"
        elif stripped[:1] != b"{":
            return encode_error(
                request_id,
                ErrorCode.INVALID_PARAMS,
                f"params of {method.name} must be an object (params are passed by name)",
                field="params",
            )
        try:
            params = method.decoder.decode(raw_params)
        except msgspec.ValidationError as exc:
            field, reason = describe_validation_error(exc)
            message = f"invalid params for {method.name}: {reason}"
            if field:
                message += f" (field '{field}')"
            return encode_error(request_id, ErrorCode.INVALID_PARAMS, message, field=field)

        try:
            result = await method.handler(ctx, params)
            encoded = _ENCODER.encode(Response(id=request_id, result=result))
        except MimirError as exc:
            if method.mutating:
                await self._audit.record(ctx, method.name, raw_params, params, error=exc)
            return _ENCODER.encode(
                Response(
                    id=request_id,
                    error=ErrorObject(code=int(exc.code), message=exc.message, data=exc.data()),
                )
            )
        except Exception:
            log.exception("rpc_handler_crashed", method=method.name)
            if method.mutating:
                await self._audit.record(
                    ctx, method.name, raw_params, params, error=MimirError("internal error")
                )
            return encode_error(
                request_id,
                ErrorCode.INTERNAL_ERROR,
                f"internal error in {method.name}; the daemon logged the details",
            )
        if method.mutating:
            await self._audit.record(ctx, method.name, raw_params, params, result=result)
        return encoded
