"""Prompt templates: the ``prompt_templates`` of a session's configuration, filled
with a client's ``vars`` and the session's built-in values.

A template is text with ``{name}`` placeholders; ``{{`` and ``}}`` are literal
braces. A name is a plain identifier: no attribute or index access, no format
spec or conversion (``str.format`` would evaluate ``{x.__class__}``; this module
never calls it). The built-ins are :data:`BUILTINS`; a var of the same name
overrides one. A placeholder without a value (no var, and a built-in that is
empty for the session) is an error naming it.

Everything a client sends is bounded (:data:`MAX_VARS`, :data:`MAX_VAR_NAME`,
:data:`MAX_VAR_CHARS`), and so is what rendering makes: its length is computed
before the text is built, and a prompt longer than :data:`MAX_PROMPT_CHARS` (the
limit of a prompt's ``text``) is refused without building it.

Standard library only: :mod:`mimird.policy` checks templates with it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from mimird.errors import InvalidParams

#: The placeholders every template may use: the session's task (``session.create``'s
#: ``task``, changed by ``session.update``), title, branch, base ref and project name.
BUILTINS: Final = ("task", "title", "branch", "base", "project")
#: A placeholder's (and a var's) name.
NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_VAR_NAME: Final = 100
#: Vars a client may give with one prompt.
MAX_VARS: Final = 100
#: Characters of one var's value.
MAX_VAR_CHARS: Final = 100_000
#: The longest prompt a template may make: the limit of ``session.prompt``'s ``text``.
MAX_PROMPT_CHARS: Final = 10_000_000


@dataclass(frozen=True, slots=True)
class Parsed:
    """A template cut into literal text and placeholder names, alternately:
    ``parts[0]`` is text, ``parts[1]`` a name, ``parts[2]`` text, ..."""

    parts: tuple[str, ...]

    @property
    def placeholders(self) -> list[str]:
        """The names used, each once, in order of first use."""
        return list(dict.fromkeys(self.parts[1::2]))


def problem(template: str) -> str | None:
    """Why ``template`` is not a usable prompt template, or None."""
    try:
        parse(template)
    except ValueError as exc:
        return str(exc)
    return None


def parse(template: str) -> Parsed:
    """Cut ``template`` into text and names. Raises ``ValueError`` saying what is wrong."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"bad template syntax: {exc} (write {{{{ or }}}} for a literal brace)"
        ) from None
    parts: list[str] = [""]
    for literal, field, spec, conversion in pieces:
        parts[-1] += literal
        if field is None:
            continue
        if not field:
            raise ValueError("a placeholder has no name ({} needs one, e.g. {file})")
        if not NAME.fullmatch(field) or len(field) > MAX_VAR_NAME:
            raise ValueError(
                f"placeholder {{{_short(field)}}} is not a name (letters, digits and _, "
                f"at most {MAX_VAR_NAME} characters; {{{{ and }}}} are literal braces)"
            )
        if spec or conversion:
            raise ValueError(f"placeholder {{{field}}} takes no format spec or conversion")
        parts += [field, ""]
    return Parsed(tuple(parts))


class SessionFacts(Protocol):
    """What the built-ins are taken from (a session's record)."""

    @property
    def task(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def base_ref(self) -> str | None: ...
    @property
    def project_name(self) -> str: ...


def builtins_of(session: SessionFacts) -> dict[str, str | None]:
    """The values of :data:`BUILTINS` for a session (None or empty: no value)."""
    return {
        "task": session.task,
        "title": session.title,
        "branch": session.branch,
        "base": session.base_ref,
        "project": session.project_name,
    }


def check_vars(vars_: Mapping[str, str]) -> None:
    """Raise ``InvalidParams`` (field ``vars``) for vars over the bounds."""
    if len(vars_) > MAX_VARS:
        raise InvalidParams(f"more than {MAX_VARS} vars", field="vars")
    for name, value in vars_.items():
        if not NAME.fullmatch(name) or len(name) > MAX_VAR_NAME:
            raise InvalidParams(
                f"var {_short(name)!r} is not a name (letters, digits and _, not starting "
                f"with a digit, at most {MAX_VAR_NAME} characters)",
                field="vars",
            )
        if len(value) > MAX_VAR_CHARS:
            raise InvalidParams(
                f"var {name!r} is longer than {MAX_VAR_CHARS} characters", field=f"vars.{name}"
            )


def render(
    templates: Mapping[str, str],
    sources: Mapping[str, str],
    name: str,
    vars_: Mapping[str, str],
    builtins: Mapping[str, str | None],
) -> str:
    """The prompt the template ``name`` of ``templates`` makes with ``vars_`` and
    the session's ``builtins``. ``sources`` maps ``prompt_templates.<name>`` to
    the layer that set it (for messages).

    Raises ``InvalidParams`` for an unknown template (naming those that exist),
    vars over the bounds, a template that does not parse, a placeholder without a
    value (naming it) or a prompt longer than :data:`MAX_PROMPT_CHARS`."""
    check_vars(vars_)
    if name not in templates:
        known = ", ".join(sorted(templates)) or "none are configured"
        raise InvalidParams(
            f"no prompt template {_short(name)!r} (templates: {known}; set them under "
            "prompt_templates in the config file, the project's or the session's config)",
            field="template",
            detail={"templates": sorted(templates)},
        )
    layer = sources.get(f"prompt_templates.{name}", "config")
    try:
        parsed = parse(templates[name])
    except ValueError as exc:
        raise InvalidParams(
            f"prompt template {name!r} (from the {layer} layer): {exc}", field="template"
        ) from None
    values: dict[str, str] = {}
    missing: list[str] = []
    for placeholder in parsed.placeholders:
        value = vars_.get(placeholder)
        if value is None:
            value = builtins.get(placeholder) or None
        if value is None:
            missing.append(placeholder)
        else:
            values[placeholder] = value
    if missing:
        hints = [f"{{{p}}} ({_builtin_hint(p)})" if p in BUILTINS else f"{{{p}}}" for p in missing]
        raise InvalidParams(
            f"prompt template {name!r} needs a value for {', '.join(hints)}: give "
            + ", ".join(f"vars.{p}" for p in missing),
            field=f"vars.{missing[0]}",
            detail={"template": name, "missing": missing},
        )
    texts, names = parsed.parts[0::2], parsed.parts[1::2]
    length = sum(map(len, texts)) + sum(len(values[n]) for n in names)
    if length > MAX_PROMPT_CHARS:
        raise InvalidParams(
            f"prompt template {name!r} makes a prompt of {length} characters, more than "
            f"the {MAX_PROMPT_CHARS} a prompt may have",
            field="vars",
        )
    out = [texts[0]]
    for placeholder, text in zip(names, texts[1:], strict=True):
        out += [values[placeholder], text]
    return "".join(out)


def _builtin_hint(name: str) -> str:
    return {
        "task": "the session has no task",
        "title": "the session has no title",
        "branch": "the session has no branch",
        "base": "the session has no base ref",
        "project": "no project name",
    }[name]


def _short(text: str) -> str:
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= 60 else shown[:57] + "..."
