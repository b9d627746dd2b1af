"""Wall-clock timestamps for storing and showing (never for measuring time)."""

from __future__ import annotations

import datetime as dt


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds, e.g. ``2026-11-22T02:11:07.123456Z``.

    Fixed width, so stored timestamps sort correctly as text.
    """
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
