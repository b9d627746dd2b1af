"""Mimir's exception hierarchy.

Lower layers (SQLite, git, the OS) raise their own exceptions; they are mapped
into these at the boundary where they enter Mimir's code. The RPC layer turns
a ``MimirError`` into a JSON-RPC error with ``code`` and ``data`` taken from
the class, so the mapping lives in one place: ``mimird.wire.errors``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mimird.wire.errors import ErrorCode, ErrorData


class MimirError(Exception):
    """An error a client should see, with a message that says what to do."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.id = id
        self.detail = detail

    def data(self) -> ErrorData:
        return ErrorData(kind=self.code.kind, field=self.field, id=self.id, detail=self.detail)


class InvalidParams(MimirError):
    """Params that decode but make no sense (a path that does not exist, ...)."""

    code = ErrorCode.INVALID_PARAMS


class NotFound(MimirError):
    code = ErrorCode.NOT_FOUND


class FileMissing(NotFound):
    """A file the agent asked for does not exist in the workspace."""


class AlreadyExists(MimirError):
    code = ErrorCode.ALREADY_EXISTS


class OutsideWorkspace(InvalidParams):
    """A path that is not a path, leads out of the session's workspace, or had a
    part swapped for a symlink after it was checked (the file sandbox refuses it)."""


class FileRefused(InvalidParams):
    """A file inside the workspace that is not served: a directory, or too large."""


class FileAccessFailed(MimirError):
    """The operating system failed a read or write inside the workspace."""


class InvalidState(MimirError):
    code = ErrorCode.INVALID_STATE


class Forbidden(MimirError):
    code = ErrorCode.FORBIDDEN


class AgentUnavailable(MimirError):
    """The agent cannot be found, cannot start, or went away."""

    code = ErrorCode.AGENT_UNAVAILABLE


class BudgetExceeded(MimirError):
    """A session's token or cost budget is used up: no new prompt until it is raised."""

    code = ErrorCode.BUDGET_EXCEEDED


class Busy(MimirError):
    code = ErrorCode.BUSY


class BranchMoved(Busy):
    """A branch moved while Mimir computed its new tip (a lost compare-and-swap):
    nothing was changed, and trying again may succeed."""


class MergeConflict(MimirError):
    """Integrating one branch into another would conflict (the files are in
    ``detail``); nothing was changed."""

    code = ErrorCode.MERGE_CONFLICT


class CheckoutDirty(MimirError):
    """The target branch is checked out in a worktree that has uncommitted changes
    (or ignored files in the way); nothing was changed."""

    code = ErrorCode.CHECKOUT_DIRTY


class ShuttingDown(MimirError):
    code = ErrorCode.SHUTTING_DOWN


class StorageError(MimirError):
    code = ErrorCode.STORAGE_ERROR


class StartupError(Exception):
    """The daemon cannot start; the message is printed as is, and mimird exits non-zero."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(StartupError):
    """A bad config file, flag or environment variable (names the key and where it came from)."""

    def __init__(self, message: str) -> None:
        # EX_CONFIG from sysexits.h: systemd shows it as "configuration error".
        super().__init__(message, exit_code=78)
