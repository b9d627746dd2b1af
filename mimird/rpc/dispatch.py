"""From a frame to a response: envelope, method lookup, params, handler, audit.

Decoding happens in two stages so that each failure gets its own code: bytes
that are not JSON are -32700; JSON that is not a request is -32600; an unknown
method is -32601; params that do not fit the method's type are -32602, with
``data.field`` naming the offending field.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import structlog
from msgspec import UNSET

from mimird import readable
from mimird.errors import MimirError
from mimird.metrics import Metrics
from mimird.rpc.audit import AuditLog
from mimird.rpc.registry import CallContext, Method, Registry
from mimird.validation import describe_validation_error
from mimird.wire.errors import ErrorCode, ErrorData
from mimird.wire.jsonrpc import surrogates_mended
from mimird.wire.protocol import ErrorObject, Request, RequestId, Response

log = structlog.get_logger("mimird.rpc")

_REQUEST_DECODER: Final = msgspec.json.Decoder(Request)
_BATCH_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])
_ENCODER: Final = msgspec.json.Encoder()
_WHITESPACE: Final = b" \t\r\n"
#: msgspec recurses once per nesting level and raises RecursionError (not a
#: DecodeError) when a frame nests deeper than the interpreter's limit.
_TOO_DEEP: Final = "frame nests arrays or objects too deeply"


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
    return readable.encode(_ENCODER, Response(id=request_id, error=error))


def _salvage_id(raw: bytes | msgspec.Raw) -> RequestId:
    """The id of a request that failed validation, if it has a usable one."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(value, dict):
        candidate = value.get("id")
        if candidate is None or type(candidate) in (int, str):
            return candidate
    return None


@dataclass(slots=True)
class Call:
    """A request that decoded and validated, ready to run."""

    method: Method
    params: Any
    raw_params: bytes
    request_id: RequestId
    notification: bool


@dataclass(slots=True)
class Rejected:
    """A call of a mutating method refused for its params: its answer is ready, but
    the refusal is audited (the params are hostile: stored masked and bounded)."""

    method: Method
    raw_params: bytes
    request_id: RequestId
    notification: bool
    response: bytes
    message: str


#: What ``prepare`` makes of a frame: an answer already (bytes), nothing to answer
#: (None), one call (or a refused mutating call), or a batch of those.
Prepared = bytes | Call | Rejected | list[bytes | Call | Rejected] | None


class Dispatcher:
    """Decodes frames (``prepare``, synchronous) and runs what they ask (``execute``).

    The split lets the server answer malformed input and run short calls inline,
    and spawn a task only for the methods that may take long (``Method.concurrent``).
    """

    def __init__(self, registry: Registry, audit: AuditLog, metrics: Metrics | None = None) -> None:
        self._registry = registry
        self._audit = audit
        self._metrics = Metrics() if metrics is None else metrics

    def prepare(self, frame: bytes) -> Prepared:
        if not frame.isascii():  # ASCII is UTF-8; the check copies nothing
            try:
                # msgspec checks UTF-8 only in the strings it decodes (not in skipped or
                # Raw values), and raises UnicodeDecodeError rather than a DecodeError.
                frame.decode()
            except UnicodeDecodeError as exc:
                return encode_error(None, ErrorCode.PARSE_ERROR, f"frame is not valid UTF-8: {exc}")
        if frame[:1] == b"{":  # the common case, without a stripped copy of the frame
            return self._prepare_one(frame)
        if frame.lstrip(_WHITESPACE)[:1] == b"[":
            return self._prepare_batch(frame)
        return self._prepare_one(frame)

    @staticmethod
    def is_concurrent(prepared: Call | Rejected | list[bytes | Call | Rejected]) -> bool:
        if isinstance(prepared, Call):
            return prepared.method.concurrent
        if isinstance(prepared, Rejected):
            return False
        items = prepared
        return any(isinstance(item, Call) and item.method.concurrent for item in items)

    async def execute(
        self, prepared: Call | Rejected | list[bytes | Call | Rejected], ctx: CallContext
    ) -> bytes | None:
        """Run the call(s); the bytes to send back, or None when nothing is owed."""
        if isinstance(prepared, Call | Rejected):
            response = await self.call(prepared, ctx)
            return None if prepared.notification else response
        responses = []
        for item in prepared:
            if isinstance(item, bytes):
                responses.append(item)
            elif (response := await self.call(item, ctx)) is not None and not item.notification:
                responses.append(response)
        if not responses:
            return None  # a batch of notifications gets no answer at all
        return b"[" + b",".join(responses) + b"]"

    @staticmethod
    def refuse(
        prepared: Call | Rejected | list[bytes | Call | Rejected], code: ErrorCode, message: str
    ) -> bytes | None:
        """Answer every call in ``prepared`` with an error instead of running it."""
        items = prepared if isinstance(prepared, list) else [prepared]
        responses = [
            item if isinstance(item, bytes) else encode_error(item.request_id, code, message)
            for item in items
            if isinstance(item, bytes) or not item.notification
        ]
        if not responses:
            return None
        if isinstance(prepared, list):
            return b"[" + b",".join(responses) + b"]"
        return responses[0]

    async def handle_frame(self, frame: bytes, ctx: CallContext) -> bytes | None:
        """``prepare`` then ``execute``: the bytes to send back, or None."""
        prepared = self.prepare(frame)
        if prepared is None or isinstance(prepared, bytes):
            return prepared
        return await self.execute(prepared, ctx)

    def _prepare_batch(self, frame: bytes) -> Prepared:
        try:
            items = _BATCH_DECODER.decode(frame)
        except msgspec.DecodeError as exc:
            # A lone surrogate escape (JSON.stringify's, for a string cut inside an
            # emoji) is read as U+FFFD, as the ACP peer reads agents' lines.
            if (mended := surrogates_mended(frame)) is not None:
                return self._prepare_batch(mended)
            return encode_error(None, ErrorCode.PARSE_ERROR, f"frame is not valid JSON: {exc}")
        except RecursionError:
            return encode_error(None, ErrorCode.PARSE_ERROR, _TOO_DEEP)
        if not items:
            return encode_error(None, ErrorCode.INVALID_REQUEST, "empty batch")
        prepared = [p for item in items if (p := self._prepare_one(item)) is not None]
        return prepared or None

    def _prepare_one(self, raw: bytes | msgspec.Raw) -> bytes | Call | Rejected | None:
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
            if (mended := surrogates_mended(bytes(raw))) is not None:
                return self._prepare_one(mended)
            return encode_error(None, ErrorCode.PARSE_ERROR, f"frame is not valid JSON: {exc}")
        except RecursionError:
            return encode_error(None, ErrorCode.PARSE_ERROR, _TOO_DEEP)

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
        error = None
        message = ""
        raw_params = b"{}" if request.params is UNSET else bytes(request.params)
        if raw_params[:1] == b"{":
            pass  # the common case, without stripped copies
        elif raw_params.strip(_WHITESPACE) == b"null":
            raw_params = b"{}"
        if raw_params[:1] != b"{" and raw_params.lstrip(_WHITESPACE)[:1] != b"{":
            message = f"params of {method.name} must be an object (params are passed by name)"
            error = encode_error(request_id, ErrorCode.INVALID_PARAMS, message, field="params")
        else:
            try:
                params = method.decoder.decode(raw_params)
            except msgspec.ValidationError as exc:
                field, reason = describe_validation_error(exc)
                message = f"invalid params for {method.name}: {reason}"
                if field:
                    message += f" (field '{field}')"
                error = encode_error(request_id, ErrorCode.INVALID_PARAMS, message, field=field)
            except RecursionError:
                message = f"invalid params for {method.name}: params nest too deeply"
                error = encode_error(request_id, ErrorCode.INVALID_PARAMS, message, field="params")
        if error is not None:
            self._metrics.rpc_called(method.name, ErrorCode.INVALID_PARAMS.kind, None)
            if method.mutating:
                # Audited too: who tried to change what, even when it was refused.
                return Rejected(method, raw_params, request_id, notification, error, message)
            return None if notification else error
        return Call(
            method=method,
            params=params,
            raw_params=raw_params,
            request_id=request_id,
            notification=notification,
        )

    async def call(self, call: Call | Rejected, ctx: CallContext) -> bytes:
        """Run one call; its response (owed only if it is not a notification)."""
        if isinstance(call, Rejected):
            await self._audit.record_rejected(ctx, call.method.name, call.raw_params, call.message)
            return call.response
        method, params, raw_params = call.method, call.params, call.raw_params
        began = time.perf_counter()
        try:
            result = await method.handler(ctx, params)
            # A file name that is not UTF-8 (from git or the disk) is shown, not refused.
            encoded = readable.encode(_ENCODER, Response(id=call.request_id, result=result))
        except MimirError as exc:
            self._metrics.rpc_called(method.name, exc.code.kind, time.perf_counter() - began)
            if method.mutating:
                await self._audit.record(ctx, method.name, raw_params, params, error=exc)
            return readable.encode(
                _ENCODER,
                Response(
                    id=call.request_id,
                    error=ErrorObject(code=int(exc.code), message=exc.message, data=exc.data()),
                ),
            )
        except Exception:
            log.exception("rpc_handler_crashed", method=method.name)
            self._metrics.rpc_called(
                method.name, ErrorCode.INTERNAL_ERROR.kind, time.perf_counter() - began
            )
            if method.mutating:
                await self._audit.record(
                    ctx, method.name, raw_params, params, error=MimirError("internal error")
                )
            return encode_error(
                call.request_id,
                ErrorCode.INTERNAL_ERROR,
                f"internal error in {method.name}; the daemon logged the details",
            )
        self._metrics.rpc_called(method.name, "ok", time.perf_counter() - began)
        if method.mutating:
            await self._audit.record(ctx, method.name, raw_params, params, result=result)
        return encoded
