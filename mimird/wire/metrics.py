"""The result of ``daemon.metrics`` (kept apart from :mod:`.types`, which holds most
methods' params and results)."""

from __future__ import annotations

from mimird.wire.types import Result


class DaemonMetrics(Result):
    #: The MIME type of ``text``: ``text/plain; version=0.0.4; charset=utf-8``.
    content_type: str
    #: The metrics in the Prometheus text exposition format (0.0.4), newline-terminated.
    text: str
