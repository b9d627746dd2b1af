"""The one newline splitter (sans-IO), fed plain byte lists."""

from __future__ import annotations

from collections.abc import Iterable

from mimird.wire.lines import END, HEAD_BYTES, NEED_DATA, LineSplitter, Status, TooLong


def split(chunks: Iterable[bytes], max_line_bytes: int = 16) -> list[bytes | TooLong | Status]:
    """Every event of a stream fed in ``chunks`` and then ended."""
    splitter = LineSplitter(max_line_bytes)
    events: list[bytes | TooLong | Status] = []
    for chunk in [*chunks, b""]:
        splitter.feed(chunk)
        while (event := splitter.next_event()) is not NEED_DATA:
            events.append(event)
            if event is END:
                return events
    return events


def test_lines_come_out_whole_however_the_bytes_are_cut() -> None:
    data = b'{"a":1}\n{"b":22}\n\n{"c":3}\n'
    whole = split([data])
    assert whole == [b'{"a":1}', b'{"b":22}', b"", b'{"c":3}', END]
    assert split([bytes([byte]) for byte in data]) == whole
    assert split([data[:5], data[5:12], data[12:]]) == whole


def test_a_last_line_without_a_newline_is_returned_at_the_end() -> None:
    assert split([b"one\ntw", b"o"]) == [b"one", b"two", END]


def test_the_splitter_asks_for_more_until_a_line_is_complete() -> None:
    splitter = LineSplitter(16)
    splitter.feed(b"par")
    assert splitter.next_event() is NEED_DATA
    splitter.feed(b"tial\nnext")
    assert splitter.next_event() == b"partial"
    assert splitter.next_event() is NEED_DATA


def test_a_line_at_the_limit_passes() -> None:
    assert split([b"x" * 16 + b"\n"]) == [b"x" * 16, END]


def test_a_complete_line_over_the_limit_is_reported_once_and_the_next_one_read() -> None:
    events = split([b"y" * 17 + b"\nnext\n"])
    assert events == [TooLong(b"y" * 17, 16), b"next", END]


def test_an_unterminated_line_over_the_limit_is_reported_before_its_end_and_skipped() -> None:
    splitter = LineSplitter(16)
    splitter.feed(b"z" * 20)
    too_long = splitter.next_event()
    assert too_long == TooLong(b"z" * 20, 16), "reported as soon as it is known to be too long"
    splitter.feed(b"z" * 1000)  # the rest is dropped, not held
    assert splitter.next_event() is NEED_DATA
    splitter.feed(b"zz\nafter\n")
    assert splitter.next_event() == b"after"
    splitter.feed(b"")
    assert splitter.next_event() is END


def test_what_is_held_of_a_line_too_long_stays_bounded() -> None:
    splitter = LineSplitter(1000)
    for _ in range(100):
        splitter.feed(b"w" * 999)
        splitter.next_event()
        assert len(splitter._buffer) <= 1000 + 999
    splitter.feed(b"\nok\n")
    assert splitter.next_event() == b"ok"


def test_the_head_of_a_line_too_long_is_at_most_head_bytes() -> None:
    (too_long, end) = split([b"h" * (HEAD_BYTES * 2) + b"\n"], max_line_bytes=10)
    assert too_long == TooLong(b"h" * HEAD_BYTES, 10)
    assert end is END


def test_a_line_too_long_at_the_end_of_the_stream_is_skipped() -> None:
    assert split([b"ok\n", b"q" * 40]) == [b"ok", TooLong(b"q" * 40, 16), END]
