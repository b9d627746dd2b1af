"""Text that JSON can hold, from names that may not be UTF-8.

A file name read from the disk or from git is decoded with ``surrogateescape``
(the bytes that are not UTF-8 become lone surrogates, ``\\udcff`` for ``\\xff``), and
a lone surrogate cannot be written as UTF-8: msgspec refuses the whole answer or
event. Such text is shown with those bytes as ``\\xNN`` (what ``git`` and Python
print for them); text that is UTF-8 comes back unchanged.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

_FIRST_SURROGATE: Final = "\ud800"
_LAST_SURROGATE: Final = "\udfff"


def readable_text(text: str) -> str:
    """``text`` with every lone surrogate as a visible escape: an escaped byte
    (surrogateescape) as ``\\xNN``, any other as ``\\udNNN``."""
    if not any(_FIRST_SURROGATE <= char <= _LAST_SURROGATE for char in text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def readable(value: Any) -> Any:
    """``value`` (plain JSON values: dicts, lists, strings, ...) with every string,
    keys included, made :func:`readable_text`."""
    if isinstance(value, str):
        return readable_text(value)
    if isinstance(value, dict):
        return {readable(k): readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable(v) for v in value]
    return value


def encode(encoder: msgspec.json.Encoder, value: Any) -> bytes:
    """``encoder.encode(value)``; a value holding a name that is not UTF-8 is
    encoded with it made readable (see the module's docstring), not refused."""
    try:
        return encoder.encode(value)
    except UnicodeEncodeError:
        return encoder.encode(readable(msgspec.to_builtins(value)))
