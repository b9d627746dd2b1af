"""Session configuration: four layers, merged into what one session runs with.

Precedence, lowest first: the built-in defaults, the ``[defaults]`` section of
the daemon's config file, the project's config, the session's config. A layer
sets any subset of the keys. Scalars and lists from a higher layer replace the
lower value whole; maps (``env``, ``tool_policy``, ``prompt_templates``) are
merged entry by entry, and every entry remembers the layer that set it.

Env values marked secret never show themselves: not in ``repr``/``str``, not in
``Effective.masked()``/``entries()``, not in ``mask_config()`` output, not in
validation errors. Only ``Effective.env()`` (for spawning a process) and
``Effective.values`` hold them in clear.

This module is imported by ``mimird.config`` and must stay light: msgspec and
the standard library only.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from mimird import names
from mimird.errors import InvalidParams
from mimird.secrets import MASK

LayerName = Literal["builtin", "defaults", "project", "session"]
#: Precedence of the layers, lowest first.
LAYERS: Final[tuple[LayerName, ...]] = get_args(LayerName)

ToolKind = Literal[
    "read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other"
]
#: ACP's ``ToolKind`` values, in the order of the ACP schema.
TOOL_KINDS: Final[tuple[ToolKind, ...]] = get_args(ToolKind)
Decision = Literal["allow", "ask", "deny"]
DECISIONS: Final[tuple[Decision, ...]] = get_args(Decision)

#: Placeholders of ``branch_template`` and ``worktree_location``; ``date`` is YYYYMMDD.
PLACEHOLDERS: Final = ("slug", "short_id", "id", "project", "date")
DEFAULT_AGENT: Final = "opencode"
DEFAULT_BRANCH_TEMPLATE: Final = "mimir/{slug}-{short_id}"
DEFAULT_WORKTREE_LOCATION: Final = "{project}/{slug}-{short_id}"
#: What a secret value is replaced with wherever configuration is shown.
SECRET_MASK: Final = MASK

MAX_NAME_LENGTH: Final = 100
MAX_TEMPLATE_LENGTH: Final = 1000
#: Below Linux's MAX_ARG_STRLEN (128 KiB for one "NAME=value" string).
MAX_VALUE_LENGTH: Final = 100_000
MAX_PATTERNS: Final = 1000
#: Linux's NAME_MAX: no file name, so no component of a copy_files pattern, is longer (bytes).
MAX_NAME_BYTES: Final = 255
#: Components of one copy_files pattern (pathlib's glob recurses once or twice per component).
MAX_PATTERN_PARTS: Final = 100
MAX_TOKEN_BUDGET: Final = (1 << 63) - 1
#: Bounds of ``cost_budget_usd`` and ``turn_timeout_s`` (a week).
MAX_COST_BUDGET_USD: Final = 1_000_000.0
MIN_TURN_TIMEOUT_S: Final = 0.1
MAX_TURN_TIMEOUT_S: Final = 7 * 24 * 3600.0
DEFAULT_BUDGET_WARN_RATIO: Final = 0.8
#: A private copy of a project that is not a git repository: at most this many bytes.
DEFAULT_COPY_MAX_BYTES: Final = 1 << 30
MAX_COPY_MAX_BYTES: Final = 1 << 40

_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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


class EnvValue(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An env value in its long form, ``{value = "...", secret = true}``."""

    value: str
    secret: bool = False

    def __repr__(self) -> str:
        shown = SECRET_MASK if self.secret else self.value
        return f"EnvValue(value={shown!r}, secret={self.secret!r})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("value", SECRET_MASK if self.secret else self.value), ("secret", self.secret)]


class ConfigLayer(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One layer of session configuration; a key left UNSET leaves the lower layers' value.

    Build one with ``parse_layer`` (which checks everything, with errors that
    name the key); ``msgspec.to_builtins(layer)`` gives back the plain data."""

    agent: str | UnsetType = UNSET
    env: dict[str, str | EnvValue] | UnsetType = UNSET
    tool_policy: dict[ToolKind, Decision] | UnsetType = UNSET
    #: None: unlimited.
    token_budget: int | UnsetType | None = UNSET
    cost_budget_usd: float | UnsetType | None = UNSET
    budget_warn_ratio: float | UnsetType = UNSET
    #: A turn running longer is cancelled; None (like the budgets): no limit.
    turn_timeout_s: float | UnsetType | None = UNSET
    prompt_templates: dict[str, str] | UnsetType = UNSET
    branch_template: str | UnsetType = UNSET
    #: Relative values are under the daemon's worktrees directory.
    worktree_location: str | UnsetType = UNSET
    #: Run with ``/bin/sh -c`` in each new worktree; None: nothing to run.
    setup_command: str | UnsetType | None = UNSET
    copy_files: list[str] | UnsetType = UNSET
    #: The most a private copy (a project that is not a git repository) may hold.
    copy_max_bytes: int | UnsetType = UNSET


#: Every key, in the order they are documented.
KEYS: Final[tuple[str, ...]] = ConfigLayer.__struct_fields__
#: Keys whose maps are merged entry by entry.
MAP_KEYS: Final = frozenset({"env", "tool_policy", "prompt_templates"})


def builtin_layer() -> ConfigLayer:
    """The built-in defaults: every key set."""
    return ConfigLayer(
        agent=DEFAULT_AGENT,
        env={},
        tool_policy=dict.fromkeys(TOOL_KINDS, "ask"),
        token_budget=None,
        cost_budget_usd=None,
        budget_warn_ratio=DEFAULT_BUDGET_WARN_RATIO,
        turn_timeout_s=None,
        prompt_templates={},
        branch_template=DEFAULT_BRANCH_TEMPLATE,
        worktree_location=DEFAULT_WORKTREE_LOCATION,
        setup_command=None,
        copy_files=[],
        copy_max_bytes=DEFAULT_COPY_MAX_BYTES,
    )


# ---- parsing a layer ------------------------------------------------------------------


class _Invalid(Exception):
    """One thing wrong in a layer: the dotted key and what was wrong with it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason


def parse_layer(data: Mapping[str, Any], layer: str) -> ConfigLayer:
    """Check a layer given as plain data (JSON from a client, TOML from the config file).

    Raises ``InvalidParams`` naming the layer and the dotted key, with
    ``field="config.<key>"`` and ``detail={"layer", "key", "reason"}``. The
    message never contains an env value."""
    try:
        return _parse(data)
    except _Invalid as problem:
        where = f"key '{problem.key}': " if problem.key else ""
        raise InvalidParams(
            f"{layer} config: {where}{problem.reason}",
            field=f"config.{problem.key}" if problem.key else "config",
            detail={"layer": layer, "key": problem.key, "reason": problem.reason},
        ) from None


def _parse(data: Any) -> ConfigLayer:
    if not isinstance(data, Mapping):
        raise _Invalid("", f"expected a table of keys, got {_kind(data)}")
    parsed: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _PARSERS:
            raise _Invalid(_show(key), _unknown(key, KEYS, "key"))
        parsed[key] = _PARSERS[key](key, value)
    return ConfigLayer(**parsed)


def _parse_agent(key: str, value: Any) -> str:
    return _name(key, value, _NAME, "an agent kind name")


def _parse_env(key: str, value: Any) -> dict[str, str | EnvValue]:
    env: dict[str, str | EnvValue] = {}
    for name, item in _table(key, value).items():
        name = _name(f"{key}.{_show(name)}", name, _ENV_NAME, "a variable name", as_key=True)
        where = f"{key}.{name}"
        if isinstance(item, Mapping):
            for field in item:
                if field not in ("value", "secret"):
                    raise _Invalid(f"{where}.{_show(field)}", _unknown(field, ("value", "secret")))
            if "value" not in item:
                raise _Invalid(f"{where}.value", "required key is missing")
            secret = item.get("secret", False)
            if not isinstance(secret, bool):
                raise _Invalid(f"{where}.secret", f"expected true or false, got {_kind(secret)}")
            text = _env_text(f"{where}.value", item["value"])
            if secret and not text:
                raise _Invalid(f"{where}.value", "a secret value must not be empty")
            env[name] = EnvValue(value=text, secret=secret)
        elif isinstance(item, str):
            env[name] = _env_text(where, item)
        else:
            raise _Invalid(
                where, f'expected a string or {{value = "...", secret = true}}, got {_kind(item)}'
            )
    return env


def _env_text(where: str, value: Any) -> str:
    # The value itself never goes into a message: it may be a secret.
    if not isinstance(value, str):
        raise _Invalid(where, f"expected a string, got {_kind(value)}")
    if "\0" in value:
        raise _Invalid(where, "contains a NUL character, which no environment can hold")
    if len(value) > MAX_VALUE_LENGTH:
        raise _Invalid(where, f"longer than {MAX_VALUE_LENGTH} characters")
    return value


def _parse_tool_policy(key: str, value: Any) -> dict[ToolKind, Decision]:
    policy: dict[ToolKind, Decision] = {}
    for kind, decision in _table(key, value).items():
        if kind not in TOOL_KINDS:
            raise _Invalid(f"{key}.{_show(kind)}", _unknown(kind, TOOL_KINDS, "tool kind"))
        if decision not in DECISIONS:
            shown = repr(decision) if isinstance(decision, str) else _kind(decision)
            raise _Invalid(
                f"{key}.{kind}",
                f"{shown} is not a decision (expected one of {', '.join(DECISIONS)})",
            )
        policy[kind] = decision
    return policy


def _parse_token_budget(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(key, f"expected a whole number of tokens or null, got {_kind(value)}")
    if not 0 <= value <= MAX_TOKEN_BUDGET:
        raise _Invalid(key, f"must be between 0 and {MAX_TOKEN_BUDGET} (null: unlimited)")
    return value


def _number(low: float, high: float, what: str, *, nullable: bool = True) -> Callable[..., Any]:
    """A parser of a finite number in [low, high] (0 excluded when low is 0 and not
    nullable: a ratio), or null when ``nullable``."""

    def parse(key: str, value: Any) -> float | None:
        if value is None and nullable:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            raise _Invalid(key, f"expected {what}, got {_kind(value)}")
        if not low <= value <= high or (value == 0 and not nullable):
            raise _Invalid(
                key, f"must be between {low:g} and {high:g}{' (0 excluded)' * (not nullable)}"
            )
        return float(value)

    return parse


def _parse_prompt_templates(key: str, value: Any) -> dict[str, str]:
    templates: dict[str, str] = {}
    for name, text in _table(key, value).items():
        name = _name(f"{key}.{_show(name)}", name, _NAME, "a template name", as_key=True)
        templates[name] = _text(f"{key}.{name}", text, MAX_VALUE_LENGTH)
    return templates


def _parse_branch_template(key: str, value: Any) -> str:
    template = _template(key, value)
    if problem := names.branch_problem(template.format_map(_SAMPLE_VALUES)):
        raise _Invalid(key, f"does not make a valid git branch name: {problem}")
    if problem := _long_name_problem(template):
        raise _Invalid(key, problem)
    return template


def _parse_worktree_location(key: str, value: Any) -> str:
    template = _template(key, value)
    if ".." in template.format_map(_SAMPLE_VALUES).split("/"):
        raise _Invalid(key, "must not contain '..' components (give an absolute path instead)")
    if problem := _long_name_problem(template):
        raise _Invalid(key, problem)
    return template


def _long_name_problem(template: str) -> str | None:
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


def _parse_setup_command(key: str, value: Any) -> str | None:
    if value is None:
        return None
    command = _text(key, value, MAX_VALUE_LENGTH)
    if not command.strip():
        raise _Invalid(key, "is empty (leave it out, or null, for no setup command)")
    return command


def _parse_copy_files(key: str, value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise _Invalid(key, f"expected a list of glob patterns, got {_kind(value)}")
    if len(value) > MAX_PATTERNS:
        raise _Invalid(key, f"more than {MAX_PATTERNS} patterns")
    patterns: list[str] = []
    for index, pattern in enumerate(value):
        where = f"{key}.{index}"
        pattern = _text(where, pattern, MAX_TEMPLATE_LENGTH)
        if not pattern:
            raise _Invalid(where, "empty pattern")
        if pattern.startswith("/"):
            raise _Invalid(where, f"{pattern!r} is absolute; patterns are relative to the project")
        if ".." in pattern.split("/"):
            raise _Invalid(where, f"{pattern!r} contains '..'; patterns stay inside the project")
        if problem := _glob_problem(pattern):
            raise _Invalid(where, problem)
        patterns.append(pattern)
    return patterns


def _parse_copy_max_bytes(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(key, f"expected a whole number of bytes, got {_kind(value)}")
    if not 1 <= value <= MAX_COPY_MAX_BYTES:
        raise _Invalid(key, f"must be between 1 and {MAX_COPY_MAX_BYTES} (1 TiB)")
    return value


def _glob_problem(pattern: str) -> str | None:
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


_PARSERS: Final[dict[str, Callable[[str, Any], Any]]] = {
    "agent": _parse_agent,
    "env": _parse_env,
    "tool_policy": _parse_tool_policy,
    "token_budget": _parse_token_budget,
    "cost_budget_usd": _number(0, MAX_COST_BUDGET_USD, "an amount in USD or null"),
    "budget_warn_ratio": _number(0, 1, "a number in (0, 1]", nullable=False),
    "turn_timeout_s": _number(MIN_TURN_TIMEOUT_S, MAX_TURN_TIMEOUT_S, "seconds or null"),
    "prompt_templates": _parse_prompt_templates,
    "branch_template": _parse_branch_template,
    "worktree_location": _parse_worktree_location,
    "setup_command": _parse_setup_command,
    "copy_files": _parse_copy_files,
    "copy_max_bytes": _parse_copy_max_bytes,
}


def _table(key: str, value: Any) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid(key, f"expected a table, got {_kind(value)}")
    return value


def _text(where: str, value: Any, max_length: int) -> str:
    if not isinstance(value, str):
        raise _Invalid(where, f"expected a string, got {_kind(value)}")
    if "\0" in value:
        raise _Invalid(where, "contains a NUL character")
    if len(value) > max_length:
        raise _Invalid(where, f"longer than {max_length} characters")
    return value


def _name(where: str, value: Any, pattern: re.Pattern[str], what: str, as_key: bool = False) -> str:
    if not isinstance(value, str):
        raise _Invalid(where, f"expected {what}, got {_kind(value)}")
    if len(value) > MAX_NAME_LENGTH or not pattern.fullmatch(value):
        shown = "this key" if as_key else repr(value) if value.isprintable() else "the value"
        raise _Invalid(
            where,
            f"{shown} is not {what} (at most {MAX_NAME_LENGTH} characters "
            f"matching {pattern.pattern})",
        )
    return value


def _template(key: str, value: Any) -> str:
    template = _text(key, value, MAX_TEMPLATE_LENGTH)
    if not template.strip():
        raise _Invalid(key, "is empty")
    if problem := _template_problem(template):
        raise _Invalid(key, problem)
    return template


def _kind(value: Any) -> str:
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


def _show(key: Any) -> str:
    """A key as it can appear in a one-line message."""
    if isinstance(key, str) and key.isprintable() and len(key) <= MAX_NAME_LENGTH:
        return key
    return repr(key)[: MAX_NAME_LENGTH + 2]


def _unknown(name: Any, known: Sequence[str], what: str = "key") -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(name, known, n=1) if isinstance(name, str) else []
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown {what} ({hint}expected one of {', '.join(known)})"


# ---- templates and slugs ----------------------------------------------------------------


def _template_problem(template: str) -> str | None:
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
    if problem := _template_problem(template):
        raise InvalidParams(f"template {template!r}: {problem}")
    for _literal, field, _spec, _conversion in string.Formatter().parse(template):
        if field is not None and field not in values:
            raise InvalidParams(f"template {template!r}: no value for placeholder {{{field}}}")
    return template.format_map(values)


# ---- merging ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A layer's value as plain data, copied so that no caller shares it with the layer."""
    if isinstance(value, EnvValue):
        return {"value": value.value, "secret": value.secret}
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _is_secret(item: Any) -> bool:
    # Any true-ish flag counts: stored data shown by mask_config may not have been validated.
    return isinstance(item, Mapping) and bool(item.get("secret"))


def _mask_env(env: Any) -> Any:
    if not isinstance(env, Mapping):
        return _plain(env)
    return {name: SECRET_MASK if _is_secret(item) else _plain(item) for name, item in env.items()}


@dataclass(frozen=True, repr=False)
class Effective:
    """A session's configuration, merged from its layers.

    ``values`` holds every key, as plain data, with secret env values in clear
    (``{"value": ..., "secret": True}``): show ``masked()`` or ``entries()``,
    never ``values``. ``sources`` maps each leaf (``"agent"``,
    ``"env.API_KEY"``, ``"tool_policy.execute"``) to the layer that set it; an
    empty map has one source under its own key."""

    values: dict[str, Any]
    sources: dict[str, str]

    def env(self) -> dict[str, str]:
        """The variables to give the agent and the setup command, values in clear."""
        return {
            name: item if isinstance(item, str) else item["value"]
            for name, item in self.values["env"].items()
        }

    def secret_values(self) -> set[str]:
        """The secret strings, to scrub from anything shown (empty ones are never secret)."""
        return {item["value"] for item in self.values["env"].values() if _is_secret(item)} - {""}

    def masked(self) -> dict[str, Any]:
        """``values`` with every secret env value replaced by ``"***"``: safe to show."""
        masked = _plain(self.values)
        masked["env"] = _mask_env(self.values["env"])
        assert isinstance(masked, dict)
        return masked

    def entries(self) -> list[tuple[str, Any, str]]:
        """(dotted key, masked value, layer), one per scalar or list and one per map
        member, sorted by key: what ``session config --explain`` shows."""
        masked = self.masked()
        rows: list[tuple[str, Any, str]] = []
        for key, value in masked.items():
            if key in MAP_KEYS and value:
                rows.extend(
                    (f"{key}.{name}", item, self.sources[f"{key}.{name}"])
                    for name, item in value.items()
                )
            else:
                rows.append((key, value, self.sources[key]))
        return sorted(rows, key=lambda row: row[0])

    def __repr__(self) -> str:
        return f"Effective(values={self.masked()!r}, sources={self.sources!r})"

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        yield "values", self.masked()
        yield "sources", self.sources


def effective(layers: Sequence[tuple[str, ConfigLayer]]) -> Effective:
    """Merge ``(layer name, layer)`` pairs given lowest first, in ``LAYERS`` order.

    The built-in layer is put first unless ``layers`` names it, so the result
    always has every key."""
    names = [name for name, _ in layers]
    for name in names:
        if name not in LAYERS:
            raise ValueError(f"unknown config layer {name!r} (expected one of {LAYERS})")
    if [LAYERS.index(name) for name in names] != sorted({LAYERS.index(name) for name in names}):
        raise ValueError(f"config layers must be given once each, lowest first: {names}")
    if "builtin" not in names:
        layers = [("builtin", builtin_layer()), *layers]

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    map_set_by: dict[str, str] = {}
    for name, layer in layers:
        for key in KEYS:
            value = getattr(layer, key)
            if value is UNSET:
                continue
            if key in MAP_KEYS:
                merged = values.setdefault(key, {})
                for member, item in value.items():
                    merged[member] = _plain(item)
                    sources[f"{key}.{member}"] = name
                map_set_by[key] = name
            else:
                values[key] = _plain(value)
                sources[key] = name
    # A filled map has its members' sources; an empty one, one under its own key.
    for key, name in map_set_by.items():
        if not values[key]:
            sources[key] = name
    missing = [key for key in KEYS if key not in values]
    if missing:
        raise ValueError(f"the builtin layer given leaves keys unset: {missing}")
    return Effective(
        values={key: values[key] for key in KEYS}, sources=dict(sorted(sources.items()))
    )


def mask_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """A raw layer as stored (a project's or session's config) with secret env values
    replaced by ``"***"``: safe to show. Tolerates data that would not validate."""
    masked = {key: _plain(value) for key, value in data.items()}
    if "env" in masked:
        masked["env"] = _mask_env(data["env"])
    return masked


def keep_masked_secrets(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` with every env entry that is just the mask (``"***"``, as a client got it
    from ``mask_config``) replaced by the secret entry it stood for in ``old``.

    A client that reads a config, changes one key and sends it back whole must not
    turn the secrets it never saw into the literal text ``***``."""
    result = dict(new)
    new_env, old_env = new.get("env"), old.get("env")
    if not isinstance(new_env, Mapping) or not isinstance(old_env, Mapping):
        return result
    env = dict(new_env)
    for name, item in new_env.items():
        value = item.get("value") if isinstance(item, Mapping) else item
        if value == SECRET_MASK and _is_secret(old_env.get(name)):
            env[name] = old_env[name]
    result["env"] = env
    return result
