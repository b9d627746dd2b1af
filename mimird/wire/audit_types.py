"""Params and results of ``audit.list`` (kept apart from :mod:`.types`)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, UnsetType

from mimird.wire.types import Params, PositiveCount, Result, Timestamp

#: A method's name (audit.list says which are audited when it is not one).
MethodName = Annotated[str, Meta(min_length=1, max_length=100)]


class AuditListParams(Params):
    #: Only calls of this (mutating) method.
    method: MethodName | UnsetType = UNSET
    #: Only calls made at or after this time.
    since: Timestamp | UnsetType = UNSET
    #: Only calls that ended with an error (refused params among them).
    failed: bool = False
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    #: The ``next_cursor`` of the previous page.
    cursor: PositiveCount | UnsetType = UNSET


class AuditEntry(Result):
    #: Rows are numbered in the order they were written.
    id: int
    #: When the call ended (ISO 8601 UTC).
    at: str
    uid: int
    pid: int
    #: The name the client gave (``daemon.status``'s ``client``), else its process's
    #: name; None when neither is known.
    client: str | None
    method: str
    #: What the call acted on (an id or a name, as given); None when nothing.
    target: str | None
    #: The params as JSON text, secrets masked, at most 64 KiB.
    params: str
    outcome: Literal["ok", "error"]
    #: On an error: its JSON-RPC code and kind (``invalid_params`` for refused params).
    error_code: int | None
    error_kind: str | None
    error_message: str | None


class AuditList(Result):
    #: Newest first.
    entries: list[AuditEntry]
    #: Pass as ``cursor`` to get the next (older) page; None on the last page.
    next_cursor: int | None
