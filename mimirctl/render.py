"""Human-readable output: aligned tables, key/value blocks, and the small
formatters the commands share (short ids, ages, TOML-ish config values)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

#: Characters of an id shown in tables; `session show` and friends print it whole.
SHORT_ID: Final = 10
#: Characters of a commit hash shown (git's own default abbreviation).
SHORT_COMMIT: Final = 7
ELLIPSIS: Final = "…"
_BARE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_BARE_VALUE: Final = re.compile(r"^[^\s\"'=]+$")
#: How a search hit's matches are shown: bold on a terminal, brackets otherwise.
BOLD: Final = ("\x1b[1m", "\x1b[22m")
BRACKETS: Final = ("[", "]")
# Control characters (C0, DEL, C1) in an event's text, terminal escapes among them,
# never reach the terminal: runs of them and of whitespace become one space.
_UNPRINTABLE_RUN: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``key: value`` lines, values aligned; a multi-line value's further lines are
    indented to the value column."""
    width = max(len(k) for k, _ in pairs)
    out = []
    for key, value in pairs:
        if isinstance(value, dict | list):
            value = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        first, *rest = str(value).split("\n")
        out.append(f"{key + ':':<{width + 1}} {first}".rstrip())
        out.extend((" " * (width + 2) + line).rstrip() for line in rest)
    return "\n".join(out)


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {s}s"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{seconds:.1f}s"


# ---- small formatters -------------------------------------------------------------


def short_id(value: str | None) -> str:
    return value[:SHORT_ID] if value else "-"


def short_commit(value: str | None) -> str:
    return value[:SHORT_COMMIT] if value else "-"


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def parse_timestamp(value: str) -> dt.datetime:
    """A daemon timestamp (ISO 8601 UTC, ``Z``-suffixed or naive) as an aware datetime."""
    when = dt.datetime.fromisoformat(value.removesuffix("Z"))
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def age(value: str, now: dt.datetime | None = None) -> str:
    """How long ago a daemon timestamp was: ``42s ago``, ``5m ago``, ``3h ago``,
    ``6d ago``; the date itself after a month."""
    try:
        when = parse_timestamp(value)
    except ValueError:
        return value
    seconds = int(((now or dt.datetime.now(dt.UTC)) - when).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            if unit == "d" and seconds >= 31 * 86400:
                return when.strftime("%Y-%m-%d")
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


# ---- config values as TOML ----------------------------------------------------------


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """A value as TOML writes it (JSON's string escapes are TOML's); ``None``, which
    TOML cannot say, as ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + (f" {inner} " if inner else "") + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=str)


def toml_lines(values: Mapping[str, Any]) -> str:
    """Effective config as a TOML document: plain keys first, then a table per map.
    A key whose value is ``None`` (unset: unlimited, nothing to run) is a comment,
    so the text stays valid TOML that can be pasted into ``[defaults]``."""
    plain = sorted((k, v) for k, v in values.items() if not isinstance(v, Mapping))
    maps = sorted((k, v) for k, v in values.items() if isinstance(v, Mapping))
    out = [
        f"# {toml_key(k)} is not set" if v is None else f"{toml_key(k)} = {toml_value(v)}"
        for k, v in plain
    ]
    for key, members in maps:
        out.append("")
        out.append(f"[{toml_key(key)}]")
        out.extend(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in members.items())
    return "\n".join(out)


def compact(data: Mapping[str, Any]) -> str:
    """An event's data on one line: ``key=value`` pairs, values in JSON unless they
    are plain words."""
    parts = []
    for key, value in data.items():
        if isinstance(value, str) and _BARE_VALUE.match(value):
            text = value
        else:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(f"{key}={text}")
    return " ".join(parts)


def permission_title(data: Mapping[str, Any]) -> str:
    """What a ``permission_requested`` event asks about: its tool call's title."""
    return str(data.get("title") or (data.get("tool_call") or {}).get("title") or "a tool")


def printable(text: str) -> str:
    """``text`` on one line, without control characters (terminal escapes among them)."""
    return _UNPRINTABLE_RUN.sub(" ", text).strip()


def snippet(parts: Sequence[Mapping[str, Any]], marks: tuple[str, str] = BRACKETS) -> str:
    """A search hit's excerpt on one line, each matched part between ``marks``."""
    out = []
    for part in parts:
        text = _UNPRINTABLE_RUN.sub(" ", part["text"])
        out.append(f"{marks[0]}{text}{marks[1]}" if part["match"] else text)
    return "".join(out).strip()
