"""The tool policy's decision on one permission request: pure functions.

:func:`decide` takes the effective ``tool_policy`` (with the layer each kind's
rule came from), the tool call the agent sent, and a resolver of paths (the
file sandbox's :meth:`~mimird.workspaces.files.Workspace.confine`, or anything
that maps a path to its place in the workspace, None when outside), and returns
a :class:`Verdict`: allow, ask or deny, and the rule that decided (layer, key,
pattern). It does no I/O of its own; the resolver may.

How a rule decides, in this order (documented in README's "Tool policy"):

1. The ACP ``kind`` picks the rule (a kind Mimir does not know is ``other``).
2. A path (``locations[].path``, ``rawInput`` ``path``/``file_path``/``filePath``/
   ``filepath``/``notebook_path``/``paths``/``source``/``destination``; resolved, or as
   written when relative) matching a ``deny`` glob, or a
   command (``rawInput`` ``command``/``cmd``) one of whose simple commands starts
   with a ``deny`` prefix: **deny**.
3. A path outside the workspace (after ``..`` and symlinks), or one that cannot be
   resolved, or a directory to run in (``rawInput`` ``cwd``/``workdir``) outside it:
   never **allow**; ``deny`` if the rule's default is deny, else **ask**.
4. Every path matching an ``allow`` glob (at least one path), or a simple command
   (no ``;``, ``&``, ``|``, ``<``, ``>``, ``$``, backquote, parentheses or newline)
   starting with an ``allow`` prefix: **allow**. A shell running one simple command
   (``bash -lc 'git status'``, how codex sends every command) is that command too.
5. Otherwise the rule's ``default`` (a plain rule is its own default).

A call of another kind that carries a command (``rawInput`` ``command``/``cmd``) runs
it: codex-acp 0.16 asks for ``find . -name '*.md' -delete`` as a ``search``. Its own
kind's rule may deny it; otherwise the ``execute`` rule decides it, on its command
(and its paths). A directory to run in outside the workspace is never allowed.

Globs are relative to the workspace: ``*`` and ``?`` stay within one path
component, ``**`` (a whole component) spans any number of them (none too), ``[...]`` is a
class; a glob without ``/`` matches the file's name at any depth (``*.lock``),
one with ``/`` is anchored at the workspace (``src/**``). Command prefixes are
whole words (``git status`` matches ``git status --short``, not ``git statuses``).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any, Final

from mimird.policy import TOOL_KINDS
from mimird.tool_rules import COMMAND_KIND, PATH_KINDS, Decision

#: Where a path of the tool call lies in the workspace (relative), None: outside it.
Resolver = Callable[[str], PurePosixPath | None]

#: ``rawInput`` members that hold a path, or a list of them (``paths``).
PATH_FIELDS: Final = (
    "path",
    "file_path",
    "filePath",
    "filepath",
    "notebook_path",
    "paths",
    "source",
    "destination",
)
#: ``rawInput`` members that name the directory a command runs in (codex's ``cwd``, the
#: model's ``workdir``): one outside the workspace is never allowed, as a path.
WORKDIR_FIELDS: Final = ("cwd", "workdir")
COMMAND_FIELDS: Final = ("command", "cmd")
#: More paths than this in one tool call are not looked at: the call is asked.
MAX_PATHS: Final = 100
MAX_COMMAND_LENGTH: Final = 100_000
#: Shells whose ``-c`` script the deny prefixes look into, and how deep (``sh -c "bash -c ..."``).
SHELLS: Final = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"})
MAX_SHELL_DEPTH: Final = 3
#: Where a shell must be for its ``-c SCRIPT`` to count as the script's command when
#: allowing (named bare, found on PATH, or in one of these): a ``bash`` elsewhere, one
#: the agent wrote perhaps, is a program like any other.
SHELL_DIRS: Final = frozenset({"/bin", "/usr/bin", "/usr/local/bin"})
#: The options of such a wrapper: ``-c`` and those that do not change what the script
#: runs (login, errexit, nounset, xtrace), in clusters (``-lc``).
_WRAPPER_OPTIONS: Final = re.compile(r"-[celux]+")
#: Long options of bash that take the next word as their value.
_LONG_WITH_VALUE: Final = frozenset({"--rcfile", "--init-file"})
#: Linux's PATH_MAX.
MAX_PATH_CHARS: Final = 4096
#: Characters with which a shell makes more than one simple command of a line (or
#: runs something else: substitutions, redirections): no allow prefix matches it.
_SHELL_SYNTAX: Final = re.compile(r"[;&|<>`$()\n\r]")
#: Where a shell line splits into the simple commands that deny prefixes are checked on.
_SEPARATORS: Final = re.compile(r"[;&|\n\r()`]|\$\(")
_GLOB_SPECIAL: Final = re.compile(r"([*?\[])")


@dataclass(frozen=True, slots=True)
class Matched:
    """The rule that decided: the layer that set it, its key, the pattern that matched."""

    layer: str
    key: str
    pattern: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"layer": self.layer, "key": self.key, "pattern": self.pattern}


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    rule: Matched
    #: Answer with the ``*_always`` option (the rule says ``always = true``).
    always: bool = False
    #: Why, when it is not plain (a path outside the workspace, no path found, ...).
    reason: str | None = None


def tool_kind(tool_call: Any) -> str:
    """The ACP tool kind the call declares; ``other`` when absent or unknown."""
    kind = tool_call.get("kind") if isinstance(tool_call, Mapping) else None
    return kind if isinstance(kind, str) and kind in TOOL_KINDS else "other"


def tool_paths(tool_call: Any) -> list[str] | None:
    """The paths a tool call names (as the agent sent them, not checked; ``""`` for
    one that is not a string, which no path resolves to); None when there are more
    than :data:`MAX_PATHS`."""
    if not isinstance(tool_call, Mapping):
        return []
    found: list[Any] = []
    locations = tool_call.get("locations")
    if isinstance(locations, list):
        found.extend(
            loc.get("path") for loc in locations if isinstance(loc, Mapping) and "path" in loc
        )
    raw = _raw_input(tool_call)
    for name in PATH_FIELDS:
        value = raw.get(name)
        if isinstance(value, list):
            found.extend(value)
        elif value is not None:
            found.append(value)
    if len(found) > MAX_PATHS:
        return None
    return list(dict.fromkeys(p if isinstance(p, str) else "" for p in found))


def _raw_input(tool_call: Any) -> Mapping[str, Any]:
    """The call's ``rawInput`` (the agent's own arguments), empty when it has none."""
    raw = tool_call.get("rawInput") if isinstance(tool_call, Mapping) else None
    return raw if isinstance(raw, Mapping) else {}


def tool_workdirs(tool_call: Any) -> list[str]:
    """The directories the call says it runs in (``""`` for one that is not a string)."""
    raw = _raw_input(tool_call)
    found = (raw.get(name) for name in WORKDIR_FIELDS)
    return [value if isinstance(value, str) else "" for value in found if value is not None]


def tool_command(tool_call: Any) -> str | list[str] | None:
    """The command an ``execute`` call runs: a shell line, an argv list, or None."""
    raw = _raw_input(tool_call)
    for name in COMMAND_FIELDS:
        value = raw.get(name)
        if isinstance(value, str) and 0 < len(value) <= MAX_COMMAND_LENGTH:
            return value
        if (
            isinstance(value, list)
            and value
            and all(isinstance(word, str) for word in value)
            and sum(map(len, value)) <= MAX_COMMAND_LENGTH
        ):
            return list(value)
    return None


def carries_command(tool_call: Any) -> bool:
    """Whether the call says it runs a command (``rawInput`` ``command`` or ``cmd`` is
    set), whether or not :func:`tool_command` can read it (too long, not words)."""
    raw = _raw_input(tool_call)
    return any(raw.get(name) is not None for name in COMMAND_FIELDS)


def decide(
    rules: Mapping[str, Any], sources: Mapping[str, str], tool_call: Any, resolve: Resolver
) -> Verdict:
    """What the policy says about ``tool_call`` (see the module's docstring).

    ``rules`` is the effective ``tool_policy`` (kind → a decision or a rule table,
    as plain data), ``sources`` the effective config's sources (``tool_policy.<kind>``
    → layer)."""
    kind = tool_kind(tool_call)
    command = tool_command(tool_call)
    # Each path resolved once (it is I/O), though two rules may look at it below.
    resolve = lru_cache(maxsize=None)(resolve)
    if kind == COMMAND_KIND or not carries_command(tool_call):
        return _decide(rules, sources, tool_call, resolve, kind, command)
    declared = _decide(rules, sources, tool_call, resolve, kind, None)
    if declared.decision == "deny":
        return declared
    # A command that cannot be read (too long, not words) is still run: the execute
    # rule's default decides it, as an execute call naming no command.
    ran = _decide(rules, sources, tool_call, resolve, COMMAND_KIND, command)
    why = (
        f"the {kind} call runs a command that cannot be read, which the execute rule decides"
        if command is None
        else f"the {kind} call runs a command, which the execute rule decides "
        f"({_shown_command(command)})"
    )
    return replace(ran, reason=f"{why}; {ran.reason}" if ran.reason else why)


def _decide(
    rules: Mapping[str, Any],
    sources: Mapping[str, str],
    tool_call: Any,
    resolve: Resolver,
    kind: str,
    command: str | list[str] | None,
) -> Verdict:
    """The rule of ``kind`` on the call's paths and (``execute``) on ``command``."""
    key = f"tool_policy.{kind}"
    rule = rules.get(kind, "ask")
    given = rule if isinstance(rule, str) else rule.get("default", "ask")
    default: Decision = "allow" if given == "allow" else "deny" if given == "deny" else "ask"
    allow: Sequence[str] = () if isinstance(rule, str) else rule.get("allow", ())
    deny: Sequence[str] = () if isinstance(rule, str) else rule.get("deny", ())
    always = False if isinstance(rule, str) else bool(rule.get("always", False))

    def verdict(
        decision: Decision, pattern: str | None = None, reason: str | None = None
    ) -> Verdict:
        return Verdict(decision, Matched(sources.get(key, "builtin"), key, pattern), always, reason)

    paths = tool_paths(tool_call)
    if paths is None:
        return verdict(
            "deny" if default == "deny" else "ask",
            reason=f"the tool call names more than {MAX_PATHS} paths",
        )
    # No file has a longer path (PATH_MAX): such a "path" is not looked at, never allowed.
    resolved = [(p, resolve(p) if p and len(p) <= MAX_PATH_CHARS else None) for p in paths]
    inside = [str(where) for _, where in resolved if where is not None]
    # A deny glob also meets the path as written (normalized, when it stays relative):
    # a symlink's name denied is denied, wherever the link leads.
    written = [
        normal
        for path in paths
        if path
        and len(path) <= MAX_PATH_CHARS
        and not path.startswith("/")
        and not (normal := posixpath.normpath(path)).startswith("..")
    ]
    if kind in PATH_KINDS:
        for path in (*inside, *written):
            if pattern := _first_glob(deny, path):
                return verdict("deny", pattern)
    if command is not None:
        if pattern := _denying_prefix(deny, command):
            return verdict("deny", pattern)
    elif kind == COMMAND_KIND and deny:
        # No command to read (gemini-cli sends none, only a title that shows it): the
        # deny prefixes meet the title instead, which can only deny more.
        title = tool_call.get("title") if isinstance(tool_call, Mapping) else None
        if (
            isinstance(title, str)
            and len(title) <= MAX_COMMAND_LENGTH
            and (pattern := _denying_prefix(deny, title))
        ):
            return verdict("deny", pattern, reason="matched in the tool call's title")
    outside = [path for path, where in resolved if where is None]
    outside.extend(
        workdir
        for workdir in tool_workdirs(tool_call)
        if not workdir or len(workdir) > MAX_PATH_CHARS or resolve(workdir) is None
    )
    if outside:
        return verdict(
            "deny" if default == "deny" else "ask",
            reason=f"{_shown(outside[0])} is outside the workspace; a policy never allows that",
        )
    if kind in PATH_KINDS and inside:
        matched = [_first_glob(allow, path) for path in inside]
        if all(matched):
            return verdict("allow", matched[0])
    if command is not None:
        for words in _allowable(command):
            if pattern := _first_prefix(allow, words):
                return verdict("allow", pattern)
    if kind in PATH_KINDS and not paths:
        return verdict(default, reason="the tool call names no path")
    if kind == COMMAND_KIND and command is None:
        if deny and default == "allow":
            # Its deny prefixes cannot be checked on a command it does not name.
            return verdict(
                "ask",
                reason="the tool call names no command, so the rule's deny prefixes cannot be "
                "checked: it is never allowed",
            )
        return verdict(default, reason="the tool call names no command")
    return verdict(default)


def _shown(path: str) -> str:
    if not path:
        return "a path that is not a string"
    return path if len(path) <= 200 else path[:200] + "..."


def _shown_command(command: str | list[str]) -> str:
    """The command as a user reads it: the script of a shell wrapper, at most 200
    characters."""
    if isinstance(command, str):
        text = command
    else:
        script = _wrapped_script(command)
        text = script if script is not None else shlex.join(command)
    return text if len(text) <= 200 else text[:200] + "..."


# ---- options --------------------------------------------------------------------------


def choose_option(
    options: Sequence[Mapping[str, Any]], decision: Decision, always: bool
) -> Mapping[str, Any] | None:
    """The agent's option that carries out ``decision``, chosen by kind (never by id):
    ``*_once`` before ``*_always``, or the other way round when ``always``."""
    verb = "allow" if decision == "allow" else "reject"
    order = ("always", "once") if always else ("once", "always")
    for suffix in order:
        for option in options:
            if option.get("kind") == f"{verb}_{suffix}":
                return option
    return None


# ---- remembering ----------------------------------------------------------------------


class CannotRemember(Exception):
    """Why no rule can be written that decides the next identical request."""


def remembered_pattern(tool_call: Any, resolve: Resolver) -> tuple[str, list[str]]:
    """(kind, the patterns that match exactly this call): the whole command as a
    prefix (``execute``, and any call that carries a command, which the execute rule
    decides); each path as an exact glob (path kinds); no pattern for the other kinds
    (the rule is then the kind's plain decision)."""
    kind = tool_kind(tool_call)
    runs_command = carries_command(tool_call)
    if kind in PATH_KINDS and not runs_command:
        paths = tool_paths(tool_call)
        if not paths:
            raise CannotRemember(f"the {kind} call names no path to remember")
        patterns = []
        for path in paths:
            where = resolve(path)
            if where is None or str(where) == ".":
                raise CannotRemember(f"{path} is not a file inside the workspace")
            patterns.append(_GLOB_SPECIAL.sub(r"[\1]", str(where)))
        return kind, patterns
    if kind == COMMAND_KIND or runs_command:
        # A call of another kind that runs a command is decided by the execute rule.
        command = tool_command(tool_call)
        if command is None:
            raise CannotRemember(f"the {kind} call names no command that can be remembered")
        allowable = _allowable(command)
        if not allowable:
            raise CannotRemember(
                "the command is not one simple command (it uses ;, &, |, <, >, $, `, "
                "parentheses or a newline): no prefix can be remembered for it"
            )
        # The command a shell wrapper runs (``bash -lc 'git status'``: ``git status``).
        return COMMAND_KIND, [shlex.join(allowable[-1])]
    return kind, []


def with_pattern(rule: Any, kind: str, patterns: list[str], decision: Decision) -> Any:
    """``rule`` (plain data: a decision or a table) with ``patterns`` added to its
    ``allow`` or ``deny`` list; a kind without patterns becomes ``decision`` itself."""
    if not patterns:
        return decision
    table = {"default": rule} if isinstance(rule, str) else dict(rule)
    name = "allow" if decision == "allow" else "deny"
    listed = list(table.get(name, []))
    listed.extend(p for p in patterns if p not in listed)
    table[name] = listed
    return table


# ---- matching -------------------------------------------------------------------------


def _first_glob(patterns: Sequence[str], path: str) -> str | None:
    return next((p for p in patterns if _glob_match(p, path)), None)


def _glob_match(pattern: str, path: str) -> bool:
    """Whether ``path`` (relative, resolved) matches the glob ``pattern``.

    Component by component, bottom-up (no regex over the whole path, whose
    backtracking an agent's long path could make take for ever, and no recursion):
    (components of the pattern + 1) x (components of the path + 1) steps, each a
    single component matched by :mod:`fnmatch`'s backtracking-safe translation."""
    parts = _glob_parts(pattern)
    names = [name for name in path.split("/") if name not in ("", ".")]
    # below[j]: whether parts[i + 1:] match names[j:]; filled from the last part back.
    below = [False] * len(names) + [True]
    for part in reversed(parts):
        row = [False] * (len(names) + 1)
        for j in range(len(names), -1, -1):
            if part is None:  # **: no component, or one more and the same ** again
                row[j] = below[j] or (j < len(names) and row[j + 1])
            else:
                row[j] = j < len(names) and below[j + 1] and bool(part.match(names[j]))
        below = row
    return below[0]


@lru_cache(maxsize=1024)
def _glob_parts(pattern: str) -> tuple[re.Pattern[str] | None, ...]:
    """The components of a glob, each compiled (None for ``**``); a glob without
    ``/`` matches at any depth (``**`` first); runs of ``**`` collapsed into one."""
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    if "/" not in pattern.strip("/"):
        parts = ["**", *parts]
    compiled: list[re.Pattern[str] | None] = []
    for part in parts:
        if part == "**":
            if not compiled or compiled[-1] is not None:
                compiled.append(None)
        else:
            compiled.append(re.compile(fnmatch.translate(part)))
    return tuple(compiled)


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _allowable(command: str | list[str], depth: int = 0) -> list[list[str]]:
    """The word lists an allow prefix may match: the command when it is one simple
    command (an argv, or a line without shell syntax), and, when that is a shell
    running one simple command (``bash -lc 'git status'``), the command it runs too
    (and so on, a few shells deep). Empty when there is none."""
    if isinstance(command, list):
        words = list(command)
    elif _SHELL_SYNTAX.search(command):
        return []
    else:
        words = _words(command)
    if not words:
        return []
    found = [words]
    script = _wrapped_script(words)
    if script is not None and depth < MAX_SHELL_DEPTH:
        found.extend(_allowable(script, depth + 1))
    return found


def _wrapped_script(words: Sequence[str]) -> str | None:
    """The script of exactly ``SHELL -c SCRIPT`` (options among ``-celux`` allowed,
    ``-lc`` say), the shell named bare or in a system directory; else None."""
    if len(words) < 3:
        return None
    shell, options, script = words[0], words[1:-1], words[-1]
    name = posixpath.basename(shell)
    if name not in SHELLS or name == "busybox":
        return None
    if shell != name and posixpath.dirname(shell) not in SHELL_DIRS:
        return None
    if not all(_WRAPPER_OPTIONS.fullmatch(option) for option in options):
        return None
    return script if "c" in "".join(options) else None


def _simple_commands(command: str | list[str], depth: int = 0) -> list[list[str]]:
    """The simple commands of a shell line (or an argv), for the deny prefixes; the
    script a shell runs (``bash -c SCRIPT``, ``sh -lc SCRIPT``) is looked into too."""
    found = (
        [command]
        if isinstance(command, list)
        else [words for part in _SEPARATORS.split(command) if (words := _words(part))]
    )
    for words in list(found):
        script = _shell_script(words)
        if script is not None and depth < MAX_SHELL_DEPTH:
            found.extend(_simple_commands(script, depth + 1))
    return found


def _shell_script(words: Sequence[str]) -> str | None:
    """The script of ``SHELL [options] -c [options] SCRIPT``: the first word after the
    options (``-o NAME`` and ``--rcfile FILE`` take theirs along) when an option
    cluster has ``c`` (``-lc``, ``-ec``); ``busybox sh -c SCRIPT`` too. None otherwise."""
    if not words or posixpath.basename(words[0]) not in SHELLS:
        return None
    if posixpath.basename(words[0]) == "busybox":
        return _shell_script(words[1:])
    runs_string = False
    index = 1
    while index < len(words):
        word = words[index]
        if word in ("-", "--"):
            index += 1
            break
        if word.startswith("--"):
            index += 2 if word in _LONG_WITH_VALUE else 1
        elif len(word) > 1 and word[0] in "-+":
            runs_string = runs_string or (word[0] == "-" and "c" in word)
            index += 2 if ("o" in word or "O" in word) else 1
        else:
            break
    return words[index] if runs_string and index < len(words) else None


@lru_cache(maxsize=4096)
def _prefix_words(pattern: str) -> list[str]:
    return _words(pattern)


def _denying_prefix(deny: Sequence[str], command: str | list[str]) -> str | None:
    """The first ``deny`` prefix that one of the simple commands of ``command`` starts with."""
    return next(
        (p for words in _simple_commands(command) if (p := _first_prefix(deny, words))), None
    )


def _first_prefix(patterns: Sequence[str], words: Sequence[str]) -> str | None:
    for pattern in patterns:
        prefix = _prefix_words(pattern)
        if prefix and list(words[: len(prefix)]) == prefix:
            return pattern
    return None
