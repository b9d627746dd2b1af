"""NDJSON framing: one JSON text per ``\\n``-terminated line, with a size limit."""

from __future__ import annotations

from typing import Final

import trio

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
        self._max = max_frame_bytes
        self._buffer = bytearray()
        self._start = 0  # where the next frame begins in _buffer
        self._scanned = 0  # bytes after _start already known to hold no newline
        self._eof = False

    async def next_frame(self) -> bytes | None:
        """The next frame without its newline, or None at end of stream.

        A last frame without a trailing newline is returned at EOF. Raises
        :class:`FrameTooLarge` as soon as a frame is known to exceed the limit."""
        while True:
            end = self._buffer.find(b"\n", self._start + self._scanned)
            if end >= 0:
                frame = bytes(self._buffer[self._start : end])
                self._start = end + 1
                self._scanned = 0
                if self._start > RECEIVE_SIZE:
                    del self._buffer[: self._start]
                    self._start = 0
                if len(frame) > self._max:
                    raise FrameTooLarge(self._max)
                return frame
            pending = len(self._buffer) - self._start
            if pending > self._max:
                raise FrameTooLarge(self._max)
            if self._eof:
                if pending:
                    frame = bytes(self._buffer[self._start :])
                    self._buffer.clear()
                    self._start = self._scanned = 0
                    return frame
                return None
            self._scanned = pending
            data = await self._stream.receive_some(RECEIVE_SIZE)
            if not data:
                self._eof = True
            else:
                self._buffer += data
