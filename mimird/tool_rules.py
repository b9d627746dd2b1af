"""The shape of one ``tool_policy`` rule, checked: a plain decision, or a table.

A rule for one ACP tool kind is either ``"allow"``, ``"ask"`` or ``"deny"``, or
``{ default = "ask", allow = [...], deny = [...], always = false }``. The patterns
are path globs relative to the workspace for the kinds that touch paths
(:data:`PATH_KINDS`), command prefixes (whole words) for ``execute``; the other
kinds take no patterns. :mod:`mimird.agents.tool_policy` applies the rules.

Imported by :mod:`mimird.policy`, so as light as it: msgspec and the standard
library only.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

import msgspec

from mimird import config_values as cv

Decision = Literal["allow", "ask", "deny"]
DECISIONS: Final[tuple[Decision, ...]] = get_args(Decision)
#: Kinds whose patterns are path globs (relative to the workspace).
PATH_KINDS: Final = frozenset({"read", "edit", "delete", "move", "search"})
#: The kind whose patterns are command prefixes.
COMMAND_KIND: Final = "execute"
RULE_FIELDS: Final = ("default", "allow", "deny", "always")
MAX_RULE_PATTERNS: Final = 1000
MAX_PATTERN_LENGTH: Final = 1000
#: Linux's NAME_MAX, for the components of a glob.
MAX_NAME_BYTES: Final = 255


class ToolRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A rule refined by patterns: deny beats allow, and ``default`` decides the rest."""

    default: Decision = "ask"
    allow: list[str] = msgspec.field(default_factory=list)
    deny: list[str] = msgspec.field(default_factory=list)
    #: Answer with the agent's ``*_always`` option rather than its ``*_once`` one.
    always: bool = False


Rule = Decision | ToolRule


class RuleProblem(Exception):
    """What is wrong with a rule: the dotted key below the rule, and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason


def parse_rule(key: str, kind: str, value: Any) -> Rule:
    """Check the rule ``value`` for tool kind ``kind`` (``key`` names it in errors)."""
    if isinstance(value, str):
        return _decision(key, value)
    if not isinstance(value, Mapping):
        raise RuleProblem(
            key,
            f"{cv.kind(value)} is not a decision (expected one of {', '.join(DECISIONS)}, or a "
            "table { default, allow, deny, always })",
        )
    for name in value:
        if name not in RULE_FIELDS:
            shown = name if isinstance(name, str) and name.isprintable() else repr(name)[:100]
            raise RuleProblem(
                f"{key}.{shown}", f"unknown key (expected one of {', '.join(RULE_FIELDS)})"
            )
    default = _decision(f"{key}.default", value.get("default", "ask"))
    always = value.get("always", False)
    if not isinstance(always, bool):
        raise RuleProblem(f"{key}.always", f"expected true or false, got {cv.kind(always)}")
    lists = {
        name: _patterns(f"{key}.{name}", kind, value.get(name, [])) for name in ("allow", "deny")
    }
    return ToolRule(default=default, allow=lists["allow"], deny=lists["deny"], always=always)


def _decision(key: str, value: Any) -> Decision:
    for decision in DECISIONS:
        if value == decision:
            return decision
    shown = repr(value)[:100] if isinstance(value, str) else cv.kind(value)
    raise RuleProblem(key, f"{shown} is not a decision (expected one of {', '.join(DECISIONS)})")


def _patterns(key: str, kind: str, value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise RuleProblem(key, f"expected a list of patterns, got {cv.kind(value)}")
    if value and kind not in PATH_KINDS and kind != COMMAND_KIND:
        raise RuleProblem(
            key,
            f"the {kind} kind takes no patterns (path globs for "
            f"{', '.join(sorted(PATH_KINDS))}; command prefixes for execute)",
        )
    if len(value) > MAX_RULE_PATTERNS:
        raise RuleProblem(key, f"more than {MAX_RULE_PATTERNS} patterns")
    patterns: list[str] = []
    for index, pattern in enumerate(value):
        where = f"{key}.{index}"
        if not isinstance(pattern, str):
            raise RuleProblem(where, f"expected a string, got {cv.kind(pattern)}")
        if not pattern.strip() or "\0" in pattern or len(pattern) > MAX_PATTERN_LENGTH:
            raise RuleProblem(
                where, f"a pattern is a non-empty string of at most {MAX_PATTERN_LENGTH} characters"
            )
        problem = _command_problem(pattern) if kind == COMMAND_KIND else _glob_problem(pattern)
        if problem:
            raise RuleProblem(where, f"{pattern!r} {problem}")
        patterns.append(pattern)
    return patterns


def _glob_problem(pattern: str) -> str | None:
    if pattern.startswith("/"):
        return "is absolute; path patterns are relative to the workspace"
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    if ".." in parts:
        return "contains '..'; path patterns stay inside the workspace"
    if not parts:
        return "names the workspace itself, not files in it"
    for part in parts:
        if "**" in part and part != "**":
            return "uses '**' inside a component; it can only be a whole one (e.g. 'src/**/*.py')"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            return f"has a component longer than {MAX_NAME_BYTES} bytes (NAME_MAX)"
    return None


def _command_problem(pattern: str) -> str | None:
    try:
        shlex.split(pattern)
    except ValueError as exc:
        return f"is not a command line ({exc})"
    return None
