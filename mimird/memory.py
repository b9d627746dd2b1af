"""glibc's allocator, told to give freed memory back to the system.

A long agent message passes through the daemon as hundreds of thousands of small
strings, their join, its JSON and SQLite's copies: tens of megabytes freed again
once the message is stored. glibc keeps freed memory for reuse: inside its arenas
(one per thread that contended for one, and the store's worker threads do), above
its mmap threshold (which it raises to the largest block freed so far, so that
the next 20 MB block comes from an arena and stays there), and at the top of each
heap up to its trim threshold. So without help the daemon's RSS grew by the
largest message it ever handled and never shrank. :func:`configure` fixes the
thresholds and caps the arenas at start-up, :func:`trim` hands free pages back
(``malloc_trim``) and is called by the journal's writer once a lot was written.

Both do nothing where the C library has no such functions (not glibc).
"""

from __future__ import annotations

import ctypes
from typing import Any, Final

import structlog

log = structlog.get_logger("mimird.memory")

# mallopt(3) parameters.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8

#: Blocks at least this large are mmap'd on their own and unmapped when freed (a
#: fixed value also stops glibc from raising the threshold as large blocks are freed).
MMAP_THRESHOLD: Final = 256 * 1024
#: Free memory at the top of a heap beyond this is given back at once.
TRIM_THRESHOLD: Final = 1024 * 1024
#: Arenas at most: the trio thread and the store's worker threads share them.
ARENA_MAX: Final = 2


def _function(name: str) -> Any:
    """A function of the C library already loaded in this process, or None."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


_MALLOPT: Final = _function("mallopt")
_MALLOC_TRIM: Final = _function("malloc_trim")


def configure() -> None:
    """Set the allocator's thresholds and arena cap; call before threads start."""
    if _MALLOPT is None:
        return
    for parameter, value in (
        (_M_ARENA_MAX, ARENA_MAX),
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ):
        if not _MALLOPT(parameter, value):
            log.warning("mallopt_refused", parameter=parameter, value=value)


def trim() -> None:
    """Give the free pages of every arena back to the system. Blocking (a few
    milliseconds for a few hundred megabytes): run it in a worker thread."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
