"""Forms of values both ends of the wire check: the shortest session id prefix,
the timestamp pattern. Standard library only, like ``codes``: ``mimirctl``
checks arguments with them before it bothers the daemon."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs mimirctl ~3 ms (see paths)
if TYPE_CHECKING:
    from typing import Final

#: The shortest session id prefix mimird accepts (git-style abbreviated ids).
MIN_ID_PREFIX: Final = 4
#: A ``Timestamp`` param: ISO 8601 UTC, ``Z``-suffixed or naive, or just a date.
TIMESTAMP_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z?)?$"
