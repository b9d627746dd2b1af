"""The audit log: who (uid, pid) called which mutating method, when, and how it ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec
import sqlalchemy as sa
import structlog

from mimird.errors import MimirError
from mimird.rpc.registry import CallContext
from mimird.store import Store
from mimird.store.schema import audit_log
from mimird.timeutil import utc_now

log = structlog.get_logger("mimird.audit")

#: Params longer than this are stored truncated (a config blob can be large).
MAX_PARAMS_CHARS: Final = 64 * 1024


#: Masks the secrets of a ``config`` param (the layered config's secret env values).
ConfigMasker = Callable[[dict[str, Any]], dict[str, Any]]


def _params_text(raw_params: bytes, params: Any, mask_config: ConfigMasker) -> str:
    """The params as stored in the audit log: secret env values in a config masked."""
    config = getattr(params, "config", None)
    if not isinstance(config, dict):
        return raw_params.decode("utf-8", errors="replace")
    plain = msgspec.to_builtins(params)
    plain["config"] = mask_config(config)
    return msgspec.json.encode(plain).decode()


def _target(params: Any, result: Any) -> str | None:
    """What the call acted on: the id of the result (or of the session it holds),
    else the object the params name, as the caller named it."""
    for candidate in (
        getattr(result, "id", None),
        getattr(getattr(result, "session", None), "id", None),
        getattr(params, "session", None),
        getattr(params, "project", None),
    ):
        if isinstance(candidate, str):
            return candidate
    return None


class AuditLog:
    """Writes one row per mutating call. What a secret looks like is the config's
    business, not the transport's: the daemon passes ``mask_config`` in."""

    def __init__(self, store: Store, mask_config: ConfigMasker) -> None:
        self._store = store
        self._mask_config = mask_config

    async def record(
        self,
        ctx: CallContext,
        method: str,
        raw_params: bytes,
        params: Any,
        *,
        result: Any = None,
        error: MimirError | None = None,
    ) -> None:
        # The call itself already happened: whatever goes wrong here (a params value
        # the masking cannot walk, a database that refuses the row) loses the audit
        # line, logged loudly, never the caller's answer or its connection.
        try:
            row = {
                "at": utc_now(),
                "uid": ctx.peer.uid,
                "pid": ctx.peer.pid,
                "method": method,
                "target": _target(params, result),
                "params": _params_text(raw_params, params, self._mask_config)[:MAX_PARAMS_CHARS],
                "outcome": "ok" if error is None else "error",
                "error_code": None if error is None else int(error.code),
                "error_message": None if error is None else error.message,
            }
            await self._store.write(_insert, row)
        except Exception as exc:
            reason = exc.message if isinstance(exc, MimirError) else repr(exc)
            log.error("audit_write_failed", method=method, error=reason)


def _insert(conn: sa.Connection, row: dict[str, Any]) -> None:
    conn.execute(sa.insert(audit_log).values(**row))
