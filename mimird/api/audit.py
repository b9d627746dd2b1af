"""``audit.list``: who called which mutating method, when, and how it ended."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from mimird.api.methods import MethodTable
from mimird.errors import InvalidParams
from mimird.rpc.audit import list_entries, normal_time
from mimird.rpc.registry import CallContext, Registry
from mimird.store import Store
from mimird.wire.audit_types import AuditEntry, AuditList, AuditListParams
from mimird.wire.errors import ErrorCode

_method = MethodTable()


class AuditService:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._mutating: frozenset[str] = frozenset()

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)
        self._registry = registry

    def _audited(self) -> frozenset[str]:
        if not self._mutating:
            self._mutating = frozenset(m.name for m in self._registry if m.mutating)
        return self._mutating

    @_method(
        "audit.list",
        params=AuditListParams,
        result=AuditList,
        summary=(
            "The audit log, newest first: who (uid, pid, client name) called which "
            "mutating method, on what, with which params (secrets masked), when, and "
            "how it ended; calls refused for their params too."
        ),
        description=(
            "Reads are not audited (this method among them). Page with cursor: pass the "
            "previous page's next_cursor."
        ),
    )
    async def list(self, ctx: CallContext, params: AuditListParams) -> AuditList:
        method = None if params.method is UNSET else params.method
        if method is not None and method not in self._audited():
            raise InvalidParams(
                f"{method!r} is not an audited method; audited: "
                + ", ".join(sorted(self._audited())),
                field="method",
            )
        since = None if params.since is UNSET else normal_time(params.since, "since")
        rows, next_cursor = await self._store.read(
            list_entries,
            method=method,
            since=since,
            failed=params.failed,
            limit=params.limit,
            cursor=None if params.cursor is UNSET else params.cursor,
        )
        return AuditList(entries=[_entry(row) for row in rows], next_cursor=next_cursor)


def _entry(row: dict[str, Any]) -> AuditEntry:
    code = row["error_code"]
    kind = None
    if isinstance(code, int):
        try:
            kind = ErrorCode(code).kind
        except ValueError:
            kind = "unknown"
    return AuditEntry(
        id=int(row["id"]),
        at=str(row["at"]),
        uid=int(row["uid"]),
        pid=int(row["pid"]),
        client=row["client"],
        method=str(row["method"]),
        target=row["target"],
        params=str(row["params"]),
        outcome="ok" if row["outcome"] == "ok" else "error",
        error_code=code if isinstance(code, int) else None,
        error_kind=kind,
        error_message=row["error_message"],
    )
