"""The configuration keys that say where a session's workspace goes and what it
starts with: ``branch_template`` and ``worktree_location`` (templates with
placeholders, checked so that they always make names git and the file system
take), ``setup_command``, ``copy_files`` and ``copy_max_bytes``.

Their parsers raise :class:`mimird.config_values.Invalid`; :mod:`mimird.policy`
calls them for its layers."""

from __future__ import annotations

import string
from typing import Any, Final

from mimird import config_values as cv
from mimird import names
from mimird.errors import InvalidParams

#: Placeholders of ``branch_template`` and ``worktree_location``; ``date`` is YYYYMMDD.
PLACEHOLDERS: Final = ("slug", "short_id", "id", "project", "date")
DEFAULT_BRANCH_TEMPLATE: Final = "mimir/{slug}-{short_id}"
DEFAULT_WORKTREE_LOCATION: Final = "{project}/{slug}-{short_id}"
MAX_TEMPLATE_LENGTH: Final = 1000
MAX_PATTERNS: Final = 1000
#: Linux's NAME_MAX: no file name, so no component of a copy_files pattern, is longer (bytes).
MAX_NAME_BYTES: Final = 255
#: Components of one copy_files pattern (pathlib's glob recurses once or twice per component).
MAX_PATTERN_PARTS: Final = 100
#: A private copy of a project that is not a git repository: at most this many bytes.
DEFAULT_COPY_MAX_BYTES: Final = 1 << 30
MAX_COPY_MAX_BYTES: Final = 1 << 40
#: Values that stand in for the placeholders when a template is checked.
_SAMPLE_VALUES: Final = {
    "slug": "fix-the-bug",
    "short_id": "01hx2k3m",
    "id": "01hx2k3m4n5p6q7r8s9t0vwxyz",
    "project": "project",
    "date": "20260101",
}
#: The longest values the placeholders can take (a project name has at most 128
#: characters, a slug 40): a template is checked with them for names too long to make.
_LONGEST_VALUES: Final = {
    "slug": "s" * 40,
    "short_id": "0" * 8,
    "id": "0" * 26,
    "project": "p" * 128,
    "date": "20260101",
}


def parse_branch_template(key: str, value: Any) -> str:
    template = checked_template(key, value)
    if problem := names.branch_problem(template.format_map(_SAMPLE_VALUES)):
        raise cv.Invalid(key, f"does not make a valid git branch name: {problem}")
    if problem := long_name_problem(template):
        raise cv.Invalid(key, problem)
    return template


def parse_worktree_location(key: str, value: Any) -> str:
    template = checked_template(key, value)
    if ".." in template.format_map(_SAMPLE_VALUES).split("/"):
        raise cv.Invalid(key, "must not contain '..' components (give an absolute path instead)")
    if problem := long_name_problem(template):
        raise cv.Invalid(key, problem)
    return template


def long_name_problem(template: str) -> str | None:
    """Why a path or ref made from ``template`` could have a name no file can have, or None.

    Both a worktree's directories and a branch's ref (a file under ``refs/heads``) are
    files: each component must fit NAME_MAX, with the placeholders at their longest."""
    parts = template.format_map(_LONGEST_VALUES).split("/")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        return (
            f"can make a path component longer than {MAX_NAME_BYTES} bytes (with {{slug}} at "
            "40 characters and {project} at 128), which no file name can be (NAME_MAX)"
        )
    return None


def parse_setup_command(key: str, value: Any) -> str | None:
    if value is None:
        return None
    command = cv.text(key, value, cv.MAX_VALUE_LENGTH)
    if not command.strip():
        raise cv.Invalid(key, "is empty (leave it out, or null, for no setup command)")
    return command


def parse_copy_files(key: str, value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise cv.Invalid(key, f"expected a list of glob patterns, got {cv.kind(value)}")
    if len(value) > MAX_PATTERNS:
        raise cv.Invalid(key, f"more than {MAX_PATTERNS} patterns")
    patterns: list[str] = []
    for index, pattern in enumerate(value):
        where = f"{key}.{index}"
        pattern = cv.text(where, pattern, MAX_TEMPLATE_LENGTH)
        if not pattern:
            raise cv.Invalid(where, "empty pattern")
        if pattern.startswith("/"):
            raise cv.Invalid(
                where, f"{pattern!r} is absolute; patterns are relative to the project"
            )
        if ".." in pattern.split("/"):
            raise cv.Invalid(where, f"{pattern!r} contains '..'; patterns stay inside the project")
        if problem := glob_problem(pattern):
            raise cv.Invalid(where, problem)
        patterns.append(pattern)
    return patterns


def parse_copy_max_bytes(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise cv.Invalid(key, f"expected a whole number of bytes, got {cv.kind(value)}")
    if not 1 <= value <= MAX_COPY_MAX_BYTES:
        raise cv.Invalid(key, f"must be between 1 and {MAX_COPY_MAX_BYTES} (1 TiB)")
    return value


def glob_problem(pattern: str) -> str | None:
    """Why ``Path.glob`` would fail on ``pattern`` rather than match files, or None."""
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    if not parts:
        return "names the project itself, not files in it"
    if len(parts) > MAX_PATTERN_PARTS:
        return f"has more than {MAX_PATTERN_PARTS} path components"
    for part in parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            return (
                f"has a component longer than {MAX_NAME_BYTES} bytes, which no file name can be "
                "(NAME_MAX)"
            )
        if "**" in part and part != "**":
            return "'**' can only be a whole path component (e.g. 'config/**/*.local')"
    return None


def checked_template(key: str, value: Any) -> str:
    template = cv.text(key, value, MAX_TEMPLATE_LENGTH)
    if not template.strip():
        raise cv.Invalid(key, "is empty")
    if problem := template_problem(template):
        raise cv.Invalid(key, problem)
    return template


def template_problem(template: str) -> str | None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"bad template syntax: {exc} (write {{{{ or }}}} for a literal brace)"
    known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            return f"unknown placeholder {{{field}}} (known: {known})"
        if spec or conversion:
            return f"placeholder {{{field}}} takes no format spec or conversion"
    return None


def render_template(template: str, **values: str) -> str:
    """Fill ``branch_template`` or ``worktree_location``: ``{slug}``, ``{short_id}``,
    ``{id}``, ``{project}``, ``{date}`` (YYYYMMDD); ``{{``/``}}`` are literal braces.

    Raises ``InvalidParams`` for an unknown placeholder, bad syntax, or a
    placeholder used without a value."""
    if problem := template_problem(template):
        raise InvalidParams(f"template {template!r}: {problem}")
    for _literal, field, _spec, _conversion in string.Formatter().parse(template):
        if field is not None and field not in values:
            raise InvalidParams(f"template {template!r}: no value for placeholder {{{field}}}")
    return template.format_map(values)
