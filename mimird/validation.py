"""Reading msgspec's validation errors: which field, and what was wrong with it."""

from __future__ import annotations

import re
from typing import Final

import msgspec

from mimird.wire.types import CURSOR_PATTERN, NO_NUL_PATTERN

_AT_PATH: Final = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
#: Readable reasons for strings that fail the patterns of ``mimird.wire.types``.
_PATTERN_REASONS: Final = {
    f"Expected `str` matching regex {NO_NUL_PATTERN!r}": (
        "Contains a NUL character, which no path or git name can hold"
    ),
    f"Expected `str` matching regex {CURSOR_PATTERN!r}": (
        "Not a cursor this daemon gave (pass back a next_cursor unchanged)"
    ),
}
#: msgspec's own messages, and those of the params' ``__post_init__`` ("invalid field `x`: ...").
_NAMED_FIELD: Final = re.compile(r"(?:unknown|missing required|invalid) field `(?P<name>[^`]+)`")


def describe_validation_error(error: msgspec.ValidationError) -> tuple[str | None, str]:
    """(offending field as a dotted path, or None for the whole value; msgspec's reason).

    For an unknown, missing or invalid field the path names that field itself, not the
    object holding it: ``Object contains unknown field `x` - at `$.rpc``` gives
    ``("rpc.x", "Object contains unknown field `x`")``."""
    text = str(error)
    match = _AT_PATH.search(text)
    path = match.group("path") if match else ""
    reason = _AT_PATH.sub("", text)
    if named := _NAMED_FIELD.search(reason):
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    path = path.replace("[", ".").replace("]", "")
    reason = _PATTERN_REASONS.get(reason, reason)
    return (path or None), reason
