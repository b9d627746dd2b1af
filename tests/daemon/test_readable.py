"""Names that are not UTF-8 (read from the disk or git, surrogate-escaped) reach
JSON readable instead of failing the answer or the event that holds them."""

from __future__ import annotations

import os

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from mimird.readable import encode, readable, readable_text


def test_escaped_bytes_are_shown_as_hex_and_utf8_is_unchanged() -> None:
    name = os.fsdecode(b"caf\xe9 \xff.txt")
    assert readable_text(name) == "caf\\xe9 \\xff.txt"
    assert readable_text("café ☕.txt") == "café ☕.txt"
    assert readable_text("\ud800 lone") == "\\ud800 lone"  # no escaped byte: its code


class Change(msgspec.Struct):
    path: str
    lines: int


def test_a_value_holding_such_a_name_is_encoded_readable_not_refused() -> None:
    encoder = msgspec.json.Encoder()
    value = {"files": [Change(os.fsdecode(b"\xff.txt"), 1)], os.fsdecode(b"k\xfe"): "v"}
    assert msgspec.json.decode(encode(encoder, value)) == {
        "files": [{"path": "\\xff.txt", "lines": 1}],
        "k\\xfe": "v",
    }
    assert encode(encoder, {"a": "b"}) == b'{"a":"b"}'


@given(st.binary())
def test_any_bytes_as_a_name_encode(raw: bytes) -> None:
    name = os.fsdecode(raw)
    shown = readable(name)
    assert msgspec.json.decode(encode(msgspec.json.Encoder(), [name])) == [shown]
    if raw.decode("utf-8", "ignore").encode() == raw:  # valid UTF-8: unchanged
        assert shown == name
