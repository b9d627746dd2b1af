"""The audit log: who (uid, pid, client name) called which mutating method, when,
and how it ended.

Every call of a mutating method is recorded, with its outcome, success or error,
also a call refused for its params (``invalid_params``: params that do not decode,
or that the method refuses): who tried to change what matters as much as what
changed. Such params are hostile: they are decoded only when small enough
(:data:`MAX_REJECTED_DECODE_BYTES`), masked like any other, stored truncated, and
their target is taken only when it is a short string. Reads (``audit.list`` among
them) are not recorded: they change nothing, and a log of reads would grow with
every ``mimirctl`` command.

The client's name is the one it gave (``daemon.status``'s ``client``), else the
name of its process (``/proc/PID/comm``), read once per connection.

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

import datetime as dt
import types
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import sqlalchemy as sa
import structlog

from mimird.errors import InvalidParams, MimirError, StorageError
from mimird.readable import readable_text
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
#: Refused params larger than this are not decoded (nor stored): only their size is.
MAX_REJECTED_DECODE_BYTES: Final = 1024 * 1024
#: A refused call's target is kept only when it is a string at most this long.
MAX_TARGET_CHARS: Final = 200
#: A client's name, as stored, at most (a process name is at most 15 bytes).
MAX_CLIENT_CHARS: Final = 64
#: Where the connection's client name is kept (``Connection.state``).
CLIENT_KEY: Final = "client"


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


def _rejected_params(raw_params: bytes) -> tuple[Any, str | None]:
    """Refused params as far as they can be read: (the decoded value, None), or
    (None, a note saying why they are not shown)."""
    if len(raw_params) > MAX_REJECTED_DECODE_BYTES:
        return None, f"params of {len(raw_params)} bytes, not stored"
    try:
        return msgspec.json.decode(raw_params), None
    except (msgspec.DecodeError, RecursionError):
        return None, "params that cannot be read back (nested too deeply), not stored"


def _rejected_target(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    for name in ("session", "project", "permission", "run"):
        candidate = value.get(name)
        if isinstance(candidate, str) and 0 < len(candidate) <= MAX_TARGET_CHARS:
            return candidate
    return None


def process_name(pid: int) -> str | None:
    """The name of process ``pid`` (``/proc/PID/comm``), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as file:
            name = file.read(MAX_CLIENT_CHARS).decode("utf-8", errors="replace").strip()
    except OSError:
        return None
    return name or None


def client_name(ctx: CallContext) -> str | None:
    """The caller's name: the one its connection gave, else its process's, read
    once per connection."""
    state = None if ctx.connection is None else ctx.connection.state
    if state is not None and CLIENT_KEY in state:
        given: str | None = state[CLIENT_KEY]
        return given
    name = process_name(ctx.peer.pid)
    if state is not None:
        state[CLIENT_KEY] = name
    return name


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
        # The call itself already happened: whatever goes wrong here (a params value
        # the masking cannot walk, a database that refuses the row) loses or delays
        # the audit line, logged loudly, never the caller's answer or its connection.
        try:
            secrets = await self._secrets_of(params)
            row = {
                "at": utc_now(),
                "uid": ctx.peer.uid,
                "pid": ctx.peer.pid,
                "client": client_name(ctx),
                "method": method,
                "target": _target(params, result),
                "params": _params_text(raw_params, params, self._mask_config, secrets)[
                    :MAX_PARAMS_CHARS
                ],
                "outcome": "ok" if error is None else "error",
                "error_code": None if error is None else int(error.code),
                "error_message": None if error is None else readable_text(error.message),
            }
        except Exception as exc:
            reason = exc.message if isinstance(exc, MimirError) else repr(exc)
            log.error("audit_write_failed", method=method, error=reason)
            return
        await self._write([row])

    async def record_rejected(
        self, ctx: CallContext, method: str, raw_params: bytes, message: str
    ) -> None:
        """Record a call of ``method`` refused for its params before it ran (they
        did not decode): hostile input, masked like any params and bounded."""
        try:
            value, note = _rejected_params(raw_params)
            if note is not None:
                text = msgspec.json.encode({"unshown": note}).decode()
            else:
                # What the secrets of a call are looked up by, as far as the params say.
                named = {
                    name: value[name]
                    for name in ("session", "project", "config")
                    if isinstance(value, dict) and name in value
                }
                secrets = await self._secrets_of(types.SimpleNamespace(**named))
                if isinstance(value, dict) and isinstance(value.get("config"), dict):
                    value = {**value, "config": self._mask_config(value["config"])}
                text = msgspec.json.encode(scrub_value(value, secrets)).decode()
            row = {
                "at": utc_now(),
                "uid": ctx.peer.uid,
                "pid": ctx.peer.pid,
                "client": client_name(ctx),
                "method": method,
                "target": _rejected_target(value),
                "params": text[:MAX_PARAMS_CHARS],
                "outcome": "error",
                "error_code": int(ErrorCode.INVALID_PARAMS),
                "error_message": message[:MAX_PARAMS_CHARS],
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
        batch, self._pending = [*self._pending, *rows], []
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
        rows, self._pending = [*batch, *self._pending], []
        chars = 0
        for row in rows:
            size = len(row["params"])
            if len(self._pending) < MAX_PENDING_ROWS and chars + size <= MAX_PENDING_CHARS:
                self._pending.append(row)
                chars += size
        dropped = len(rows) - len(self._pending)
        if dropped:
            self._dropped += dropped
            log.warning("audit_rows_dropped", count=dropped, total=self._dropped)


def _insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(sa.insert(audit_log), rows)


def normal_time(text: str, field: str) -> str:
    """A Timestamp param in the stored form (fixed width, so that text compares as
    time does); a date only is its midnight."""
    try:
        when = dt.datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        raise InvalidParams(f"{text!r} is not a real date or time", field=field) from None
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def list_entries(
    conn: sa.Connection,
    *,
    method: str | None,
    since: str | None,
    failed: bool,
    limit: int,
    cursor: int | None,
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the audit log, newest first: its rows, and the cursor of the next
    page (the last row's id) when there is one."""
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit + 1)
    if method is not None:
        query = query.where(audit_log.c.method == method)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if failed:
        query = query.where(audit_log.c.outcome == "error")
    if cursor is not None:
        query = query.where(audit_log.c.id < cursor)
    rows = [dict(row._mapping) for row in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)
