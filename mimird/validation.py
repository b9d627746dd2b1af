"""Reading msgspec's validation errors: which field, and what was wrong with it."""

from __future__ import annotations

import re
from typing import Final

import msgspec

_AT_PATH: Final = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
#: msgspec's reason for a string that fails ``mimird.wire.types``' no-NUL pattern.
_NO_NUL_MISMATCH: Final = r"Expected `str` matching regex '^[^\\x00]*$'"
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
    if reason == _NO_NUL_MISMATCH:
        reason = "Contains a NUL character, which no path or git name can hold"
    return (path or None), reason
