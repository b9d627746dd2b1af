"""One newline splitter for every reader of NDJSON: mimird's RPC server, its ACP
connections to agents, and blocking clients (sans-IO: no sockets, no trio).

Feed it bytes as they arrive (``b""`` at end of stream) and take events until it
says it needs more: a complete line (without its ``\\n``), :class:`TooLong` once
for a line longer than the limit (its rest is then skipped, and splitting goes
on with the next line), :data:`NEED_DATA` or :data:`END`. It never holds more
than the limit plus one fed chunk of an unterminated line. A last line without
a trailing newline is returned at end of stream.

    splitter = LineSplitter(max_line_bytes=1 << 20)
    splitter.feed(b'{"a": 1}\\n{"b"')
    splitter.next_event()  # b'{"a": 1}'
    splitter.next_event()  # NEED_DATA
"""

from __future__ import annotations

# Neither enum, dataclasses nor typing at run time: mimirctl reads its answers with
# this splitter, and those imports would cost each of its starts ~15 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

#: How much of a line that is too long :class:`TooLong` keeps (to find its
#: JSON-RPC id and method, and to show its start).
HEAD_BYTES: Final = 64 * 1024
#: Consumed bytes are dropped from the buffer once more than this has gathered
#: (dropping after every line would copy the rest of the buffer each time).
_COMPACT_AFTER: Final = 64 * 1024


class Status:
    """What the splitter needs next, when it has no line to give: one of two values."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Status.{self.name}"


#: Feed more bytes (or ``b""`` at end of stream) before asking again.
NEED_DATA: Final = Status("NEED_DATA")
#: The stream ended and every line was returned.
END: Final = Status("END")


class TooLong:
    """A line longer than the limit: reported once, then skipped to its end."""

    __slots__ = ("head", "limit")

    def __init__(self, head: bytes, limit: int) -> None:
        #: Its first :data:`HEAD_BYTES` bytes (fewer if the limit is smaller).
        self.head = head
        self.limit = limit

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TooLong) and (self.head, self.limit) == (other.head, other.limit)

    def __hash__(self) -> int:
        return hash((self.head, self.limit))

    def __repr__(self) -> str:
        return f"TooLong(head={self.head[:40]!r}..., limit={self.limit})"


class LineSplitter:
    """Splits a byte stream into ``\\n``-terminated lines of at most ``max_line_bytes``."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._start = 0  # where the next line begins in _buffer
        self._scanned = 0  # bytes after _start known to hold no newline
        self._skipping = False  # inside the rest of a line already reported as too long
        self._eof = False

    @property
    def pending(self) -> int:
        """Bytes held of lines not returned yet (an unfinished one, mostly)."""
        return 0 if self._skipping else len(self._buffer) - self._start

    def has_line(self) -> bool:
        """Whether :meth:`next_event` has a whole line (or the end) without more bytes."""
        return self._eof or self._buffer.find(b"\n", self._start + self._scanned) >= 0

    def feed(self, data: bytes | bytearray) -> None:
        """Bytes received; ``b""`` says the stream ended."""
        if not data:
            self._eof = True
        elif self._skipping and self._start == len(self._buffer):
            # The rest of a line too long: keep only what follows its end.
            end = data.find(b"\n")
            if end >= 0:
                self._skipping = False
                self._buffer = bytearray(data[end + 1 :])
                self._start = self._scanned = 0
        else:
            self._buffer += data

    def next_event(self) -> bytes | TooLong | Status:
        """The next line, :class:`TooLong`, :data:`NEED_DATA` or :data:`END`."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._start + self._scanned)
            if end >= 0:
                line = bytes(buffer[self._start : end])
                self._start = end + 1
                self._scanned = 0
                if self._start > _COMPACT_AFTER:
                    del buffer[: self._start]
                    self._start = 0
                if self._skipping:
                    self._skipping = False
                    continue
                if len(line) > self.max_line_bytes:
                    return TooLong(line[:HEAD_BYTES], self.max_line_bytes)
                return line
            pending = len(buffer) - self._start
            if self._skipping:
                buffer.clear()
                self._start = pending = 0
            elif pending > self.max_line_bytes:
                too_long = TooLong(
                    bytes(buffer[self._start : self._start + HEAD_BYTES]), self.max_line_bytes
                )
                buffer.clear()
                self._start = self._scanned = 0
                self._skipping = True
                return too_long
            if self._eof:
                if pending and not self._skipping:
                    line = bytes(buffer[self._start :])
                    buffer.clear()
                    self._start = self._scanned = 0
                    return line
                return END
            self._scanned = pending
            return NEED_DATA


__all__ = ["END", "HEAD_BYTES", "NEED_DATA", "LineSplitter", "Status", "TooLong"]
