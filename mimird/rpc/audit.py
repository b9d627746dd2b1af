"""The audit log: who (uid, pid) called which mutating method, when, and how it ended.

Every call of a mutating method whose params are valid is recorded, with its
outcome, success or error. A call refused for its params (``invalid_params``:
malformed, or params the method refuses) is not: it changed nothing, and has no
valid target.

Secrets never reach it: a ``config`` param has its secret env values masked, and
every string of the params has the secrets of the call masked (those of the
session or project it names, and those it sets), in each of the forms the journal
masks (:func:`mimird.secrets.scrub_value`).

A row the database refuses (a full disk) is kept in memory, bounded
(:data:`MAX_PENDING_ROWS`, :data:`MAX_PENDING_CHARS`), and written with the next
row that can be, or when the daemon stops; past the bound rows are dropped and
counted in the log (``audit_rows_dropped``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import sqlalchemy as sa
import structlog

from mimird.errors import MimirError, StorageError
from mimird.rpc.registry import CallContext
from mimird.secrets import scrub_value
from mimird.store import Store
from mimird.store.schema import audit_log
from mimird.timeutil import utc_now
from mimird.wire.errors import ErrorCode

log = structlog.get_logger("mimird.audit")

#: Params longer than this are stored truncated (a config blob can be large).
MAX_PARAMS_CHARS: Final = 64 * 1024
#: Rows kept in memory while the database refuses them (a full disk), at most.
MAX_PENDING_ROWS: Final = 1000
#: And their params, in characters, at most.
MAX_PENDING_CHARS: Final = 8 * 1024 * 1024


#: Masks the secrets of a ``config`` param (the layered config's secret env values).
ConfigMasker = Callable[[dict[str, Any]], dict[str, Any]]
#: The secrets a call's params may hold (the daemon knows where they are configured).
SecretsOf = Callable[[Any], Awaitable[set[str]]]


async def _no_secrets(params: Any) -> set[str]:
    return set()


def _params_text(
    raw_params: bytes, params: Any, mask_config: ConfigMasker, secrets: set[str]
) -> str:
    """The params as stored in the audit log: secret env values in a config masked,
    and every secret in any string."""
    config = getattr(params, "config", None)
    if not isinstance(config, dict) and not secrets:
        return raw_params.decode("utf-8", errors="replace")
    # From the decoded params, not the raw text: a secret written with JSON escapes
    # (``\u0070``) in the request is whole in its decoded string.
    plain = msgspec.to_builtins(params)
    if isinstance(config, dict):
        plain["config"] = mask_config(config)
    return msgspec.json.encode(scrub_value(plain, secrets)).decode()


def _target(params: Any, result: Any) -> str | None:
    """What the call acted on: the id of the result (or of the session it holds),
    else the object the params name (a session, project, permission request or run),
    as the caller named it."""
    for candidate in (
        getattr(result, "id", None),
        getattr(getattr(result, "session", None), "id", None),
        getattr(params, "session", None),
        getattr(params, "project", None),
        getattr(params, "permission", None),
        getattr(params, "run", None),
    ):
        if isinstance(candidate, str):
            return candidate
    return None


class AuditLog:
    """Writes one row per mutating call. What a secret looks like is the config's
    business, not the transport's: the daemon passes ``mask_config`` and
    ``secrets_of`` in."""

    def __init__(
        self, store: Store, mask_config: ConfigMasker, secrets_of: SecretsOf = _no_secrets
    ) -> None:
        self._store = store
        self._mask_config = mask_config
        self._secrets_of = secrets_of
        #: Rows the database refused, oldest first, to write with the next one.
        self._pending: list[dict[str, Any]] = []
        self._pending_chars = 0
        #: Rows dropped past the bound since the last row written.
        self._dropped = 0

    @property
    def pending(self) -> int:
        """How many rows wait in memory for the database to take them."""
        return len(self._pending)

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
        if error is not None and error.code == ErrorCode.INVALID_PARAMS:
            # Refused for its params (by the handler, after they decoded): like a call
            # the dispatcher refuses before it runs, it changed nothing and is not
            # recorded. Only calls whose params are valid are, whatever their outcome.
            return
        # The call itself already happened: whatever goes wrong here (a params value
        # the masking cannot walk, a database that refuses the row) loses or delays
        # the audit line, logged loudly, never the caller's answer or its connection.
        try:
            secrets = await self._secrets_of(params)
            row = {
                "at": utc_now(),
                "uid": ctx.peer.uid,
                "pid": ctx.peer.pid,
                "method": method,
                "target": _target(params, result),
                "params": _params_text(raw_params, params, self._mask_config, secrets)[
                    :MAX_PARAMS_CHARS
                ],
                "outcome": "ok" if error is None else "error",
                "error_code": None if error is None else int(error.code),
                "error_message": None if error is None else error.message,
            }
        except Exception as exc:
            reason = exc.message if isinstance(exc, MimirError) else repr(exc)
            log.error("audit_write_failed", method=method, error=reason)
            return
        await self._write([row])

    async def flush(self) -> None:
        """Write the rows kept in memory, if the database takes them now."""
        if self._pending:
            await self._write([])

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        # Taken out first: a call recorded meanwhile does not write them twice.
        batch, self._pending, self._pending_chars = [*self._pending, *rows], [], 0
        keep = True  # also when cancelled before the write began
        try:
            await self._store.write(_insert, batch)
            keep = False
        except StorageError as exc:
            log.error(
                "audit_write_failed",
                method=batch[-1]["method"],
                error=exc.message,
                pending=len(batch),
            )
            return
        except Exception as exc:
            # Not the disk: a row the database will never take is not kept.
            keep = False
            log.error("audit_write_failed", method=batch[-1]["method"], error=repr(exc))
            return
        finally:
            if keep:
                self._keep(batch)
        if len(batch) > len(rows):
            log.warning("audit_backlog_written", rows=len(batch) - len(rows), dropped=self._dropped)
            self._dropped = 0

    def _keep(self, batch: list[dict[str, Any]]) -> None:
        """Keep ``batch`` (before the rows kept meanwhile: oldest first), bounded."""
        rows, self._pending, self._pending_chars = [*batch, *self._pending], [], 0
        dropped = 0
        for row in rows:
            size = len(row["params"])
            if (
                len(self._pending) < MAX_PENDING_ROWS
                and self._pending_chars + size <= MAX_PENDING_CHARS
            ):
                self._pending.append(row)
                self._pending_chars += size
            else:
                dropped += 1
        if dropped:
            self._dropped += dropped
            log.warning("audit_rows_dropped", count=dropped, total=self._dropped)


def _insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(sa.insert(audit_log), rows)
