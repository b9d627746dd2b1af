"""NDJSON framing: one JSON text per ``\\n``-terminated line, with a size limit.

The splitting is :class:`mimird.wire.lines.LineSplitter`'s (shared with the ACP
connection and clients); this module only reads the socket for it."""

from __future__ import annotations

from typing import Final

import trio

from mimird.wire.lines import END, NEED_DATA, LineSplitter, TooLong

RECEIVE_SIZE: Final = 64 * 1024


class FrameTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"frame exceeds the limit of {limit} bytes")
        self.limit = limit


class FrameReader:
    """Splits a byte stream into frames without ever holding more than the limit
    (plus one receive) of an unterminated frame."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_frame_bytes: int) -> None:
        self._stream = stream
        self._splitter = LineSplitter(max_frame_bytes)

    async def next_frame(self) -> bytes | None:
        """The next frame without its newline, or None at end of stream.

        A last frame without a trailing newline is returned at EOF. Raises
        :class:`FrameTooLarge` as soon as a frame is known to exceed the limit.

        Cancellation: bytes received stay buffered; the next call goes on."""
        splitter = self._splitter
        while True:
            event = splitter.next_event()
            if isinstance(event, bytes):
                return event
            if event is NEED_DATA:
                splitter.feed(await self._stream.receive_some(RECEIVE_SIZE))
            elif event is END:
                return None
            else:
                assert isinstance(event, TooLong)
                raise FrameTooLarge(event.limit)
