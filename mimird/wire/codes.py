"""Constants both ends of the wire agree on: the protocol version and the one
table of JSON-RPC error codes.

Standard library only (not even msgspec): ``mimirctl`` imports it on every
start. The standard codes come from the JSON-RPC 2.0 specification; Mimir's own
live in the implementation-defined range -32000..-32099. Every error carries
``data`` with at least a ``kind`` (a stable snake_case name for scripts) and,
where it applies, the offending ``field`` or ``id``.
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # not typing's: importing typing costs mimirctl ~3 ms (see paths)
if TYPE_CHECKING:
    from typing import Final

#: Bumped when a method's params or results change incompatibly. Clients
#: compare it with ``daemon.status``'s ``protocol_version``.
PROTOCOL_VERSION: Final = 1


class ErrorCode(enum.IntEnum):
    # JSON-RPC 2.0 standard codes.
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # Mimir's own codes.
    NOT_FOUND = -32001
    ALREADY_EXISTS = -32002
    INVALID_STATE = -32003
    FORBIDDEN = -32004
    AGENT_UNAVAILABLE = -32005
    BUDGET_EXCEEDED = -32006
    BUSY = -32007
    SHUTTING_DOWN = -32008
    STORAGE_ERROR = -32009
    CONNECTION_LIMIT = -32010
    MERGE_CONFLICT = -32011
    CHECKOUT_DIRTY = -32012

    @property
    def kind(self) -> str:
        """The stable snake_case name scripts can match on (``data.kind``)."""
        return self.name.lower()


#: One line per code, used by the OpenRPC document and the API docs.
ERROR_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.PARSE_ERROR: "The frame is not valid JSON.",
    ErrorCode.INVALID_REQUEST: (
        "The JSON is not a valid JSON-RPC 2.0 request, or the frame is larger than the limit."
    ),
    ErrorCode.METHOD_NOT_FOUND: "No method of that name exists.",
    ErrorCode.INVALID_PARAMS: (
        "Params are missing, of the wrong type, or contain an unknown field (named in data.field)."
    ),
    ErrorCode.INTERNAL_ERROR: "A bug in mimird; the daemon logged it and keeps running.",
    ErrorCode.NOT_FOUND: "No object with that id or name exists (data.id names it).",
    ErrorCode.ALREADY_EXISTS: "An object with that name or path already exists.",
    ErrorCode.INVALID_STATE: "The object is not in a state that allows the operation.",
    ErrorCode.FORBIDDEN: "Refused by policy or path rules.",
    ErrorCode.AGENT_UNAVAILABLE: "The agent's command cannot be found or started.",
    ErrorCode.BUDGET_EXCEEDED: "The session's budget is used up.",
    ErrorCode.BUSY: "The object is busy with another operation.",
    ErrorCode.SHUTTING_DOWN: "The daemon is shutting down and takes no new work.",
    ErrorCode.STORAGE_ERROR: "The database refused the operation (disk full, locked, corrupt).",
    ErrorCode.CONNECTION_LIMIT: (
        "The daemon is at its connection limit; the new connection is closed after this error."
    ),
    ErrorCode.MERGE_CONFLICT: (
        "A merge would conflict; data.detail.files lists the files. Nothing was changed."
    ),
    ErrorCode.CHECKOUT_DIRTY: (
        "The target branch is checked out with uncommitted changes (data.detail.worktree, "
        "data.detail.changes). Nothing was changed."
    ),
}
