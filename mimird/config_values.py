"""Checking one value of the session configuration: the error that names its key,
and the checks every key's parser shares (a table, a text, a name), with the words
messages use for what was found instead.

Light like :mod:`mimird.policy`, which imports it: the standard library only."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

MAX_NAME_LENGTH: Final = 100
#: Below Linux's MAX_ARG_STRLEN (128 KiB for one "NAME=value" string).
MAX_VALUE_LENGTH: Final = 100_000


class Invalid(Exception):
    """One thing wrong in a layer: the dotted key and what was wrong with it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason


def table(key: str, value: Any) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise Invalid(key, f"expected a table, got {kind(value)}")
    return value


def text(where: str, value: Any, max_length: int) -> str:
    if not isinstance(value, str):
        raise Invalid(where, f"expected a string, got {kind(value)}")
    if "\0" in value:
        raise Invalid(where, "contains a NUL character")
    if len(value) > max_length:
        raise Invalid(where, f"longer than {max_length} characters")
    return value


def name(where: str, value: Any, pattern: re.Pattern[str], what: str, as_key: bool = False) -> str:
    if not isinstance(value, str):
        raise Invalid(where, f"expected {what}, got {kind(value)}")
    if len(value) > MAX_NAME_LENGTH or not pattern.fullmatch(value):
        shown = "this key" if as_key else repr(value) if value.isprintable() else "the value"
        raise Invalid(
            where,
            f"{shown} is not {what} (at most {MAX_NAME_LENGTH} characters "
            f"matching {pattern.pattern})",
        )
    return value


def kind(value: Any) -> str:
    """The TOML/JSON name of a value's type, for "expected ..., got ..."."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def show(key: Any) -> str:
    """A key as it can appear in a one-line message."""
    if isinstance(key, str) and key.isprintable() and len(key) <= MAX_NAME_LENGTH:
        return key
    return repr(key)[: MAX_NAME_LENGTH + 2]


def unknown(name: Any, known: Sequence[str], what: str = "key") -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(name, known, n=1) if isinstance(name, str) else []
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown {what} ({hint}expected one of {', '.join(known)})"
