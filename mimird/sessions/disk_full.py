"""A full disk met while a workspace is made, mapped to ``storage_error``.

The database says "database or disk is full" itself (the store maps it). Making a
workspace meets a full disk elsewhere: git fails (``could not write ...: No
space left on device``, which the git module reports as it reports any failed
``git worktree add``: ``invalid_state``), or a file copy raises ``OSError``
(``ENOSPC``, ``EDQUOT``), or :func:`shutil.copytree` gathers such errors into one
:class:`shutil.Error`. None of these is a state of the session the caller could
change; the disk is, and ``storage_error`` says so.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from typing import Any, Final

from mimird.errors import MimirError, StorageError

_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How a full disk reads in a message (git's stderr, shutil.Error's list).
_TEXTS: Final = ("No space left on device", "Disk quota exceeded")


def disk_full_reason(exc: BaseException) -> str | None:
    """The words for a full disk in ``exc``; None if it is about something else."""
    if isinstance(exc, StorageError):
        return None  # the database's own, already the right error
    if isinstance(exc, shutil.Error):
        texts = [str(why) for *_, why in exc.args[0]] if exc.args else []
    elif isinstance(exc, OSError):
        return exc.strerror if exc.errno in _ERRNOS else None
    elif isinstance(exc, MimirError):
        texts = [exc.message, str((exc.detail or {}).get("stderr", ""))]
    else:
        return None
    for text in _TEXTS:
        if any(text in found for found in texts):
            return text
    return None


@contextlib.contextmanager
def disk_full_is_storage_error() -> Iterator[None]:
    """Inside the block, a full disk met while making a workspace is raised as
    :class:`StorageError` (with what the lower layer said in its detail); any other
    error as it is."""
    try:
        yield
    except (OSError, MimirError) as exc:
        reason = disk_full_reason(exc)
        if reason is None:
            raise
        detail: dict[str, Any] = {"os_error": reason}
        if isinstance(exc, MimirError):
            detail.update(exc.detail or {})
        raise StorageError(
            f"cannot make the session's workspace: the disk is full ({reason}); free some "
            "space and try again",
            detail=detail,
        ) from None
