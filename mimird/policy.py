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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from mimird import config_values as cv
from mimird import mcp_servers, workspace_keys
from mimird import templates as prompt_templates
from mimird.errors import InvalidParams
from mimird.secrets import MASK
from mimird.tool_rules import Rule, RuleProblem, ToolRule, parse_rule

LayerName = Literal["builtin", "defaults", "project", "session"]
#: Precedence of the layers, lowest first.
LAYERS: Final[tuple[LayerName, ...]] = get_args(LayerName)

ToolKind = Literal[
    "read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other"
]
#: ACP's ``ToolKind`` values, in the order of the ACP schema.
TOOL_KINDS: Final[tuple[ToolKind, ...]] = get_args(ToolKind)
TimeoutDecision = Literal["allow", "deny"]

DEFAULT_AGENT: Final = "opencode"
#: What a secret value is replaced with wherever configuration is shown.
SECRET_MASK: Final = MASK

#: The longest ``model`` or ``mode`` (ids like "provider/model-name").
MAX_CHOICE_LENGTH: Final = 200
MAX_TOKEN_BUDGET: Final = (1 << 63) - 1
DEFAULT_HANDOFF_MAX_BYTES: Final = 64 << 10
MAX_HANDOFF_MAX_BYTES: Final = 4 << 20
#: A week: the longest a parked permission request may be given before its timeout.
MAX_PERMISSION_TIMEOUT_S: Final = 7 * 24 * 3600
#: Bounds of ``cost_budget_usd`` and ``turn_timeout_s`` (a week).
MAX_COST_BUDGET_USD: Final = 1_000_000.0
MIN_TURN_TIMEOUT_S: Final = 0.1
MAX_TURN_TIMEOUT_S: Final = 7 * 24 * 3600.0
DEFAULT_BUDGET_WARN_RATIO: Final = 0.8

_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    #: The agent's model and mode (ids the agent offers); None: the agent's own default.
    model: str | UnsetType | None = UNSET
    mode: str | UnsetType | None = UNSET
    env: dict[str, str | EnvValue] | UnsetType = UNSET
    #: Per tool kind: a decision, or a ``ToolRule`` (patterns); see mimird.tool_rules.
    tool_policy: dict[ToolKind, Rule] | UnsetType = UNSET
    #: How long a parked permission request waits for a client; None: for ever.
    permission_timeout_s: float | UnsetType | None = UNSET
    #: The answer a request gets when its timeout passes.
    permission_timeout_default: TimeoutDecision | UnsetType = UNSET
    #: None: unlimited.
    token_budget: int | UnsetType | None = UNSET
    cost_budget_usd: float | UnsetType | None = UNSET
    budget_warn_ratio: float | UnsetType = UNSET
    #: A turn running longer is cancelled; None (like the budgets): no limit.
    turn_timeout_s: float | UnsetType | None = UNSET
    prompt_templates: dict[str, str] | UnsetType = UNSET
    #: A turn that ends end_turn with no permission request pending completes the session.
    auto_complete: bool | UnsetType = UNSET
    #: The most of the earlier conversation sent to an agent that could not load it
    #: (UTF-8 bytes, the newest kept); 0: none is sent (mimird/agents/handoff.py).
    handoff_max_bytes: int | UnsetType = UNSET
    branch_template: str | UnsetType = UNSET
    #: Relative values are under the daemon's worktrees directory.
    worktree_location: str | UnsetType = UNSET
    #: Run with ``/bin/sh -c`` in each new worktree; None: nothing to run.
    setup_command: str | UnsetType | None = UNSET
    copy_files: list[str] | UnsetType = UNSET
    #: The most a private copy (a project that is not a git repository) may hold.
    copy_max_bytes: int | UnsetType = UNSET
    #: MCP servers given to the agent (ACP ``mcpServers``); see mimird.mcp_servers.
    mcp_servers: list[dict[str, Any]] | UnsetType = UNSET


#: Every key, in the order they are documented.
KEYS: Final[tuple[str, ...]] = ConfigLayer.__struct_fields__
#: Keys whose maps are merged entry by entry.
MAP_KEYS: Final = frozenset({"env", "tool_policy", "prompt_templates"})


def builtin_layer() -> ConfigLayer:
    """The built-in defaults: every key set."""
    return ConfigLayer(
        agent=DEFAULT_AGENT,
        model=None,
        mode=None,
        env={},
        tool_policy=dict.fromkeys(TOOL_KINDS, "ask"),
        permission_timeout_s=None,
        permission_timeout_default="deny",
        token_budget=None,
        cost_budget_usd=None,
        budget_warn_ratio=DEFAULT_BUDGET_WARN_RATIO,
        turn_timeout_s=None,
        prompt_templates={},
        auto_complete=False,
        handoff_max_bytes=DEFAULT_HANDOFF_MAX_BYTES,
        branch_template=workspace_keys.DEFAULT_BRANCH_TEMPLATE,
        worktree_location=workspace_keys.DEFAULT_WORKTREE_LOCATION,
        setup_command=None,
        copy_files=[],
        copy_max_bytes=workspace_keys.DEFAULT_COPY_MAX_BYTES,
        mcp_servers=[],
    )


# ---- parsing a layer ------------------------------------------------------------------


def parse_layer(data: Mapping[str, Any], layer: str) -> ConfigLayer:
    """Check a layer given as plain data (JSON from a client, TOML from the config file).

    Raises ``InvalidParams`` naming the layer and the dotted key, with
    ``field="config.<key>"`` and ``detail={"layer", "key", "reason"}``. The
    message never contains an env value."""
    try:
        return _parse(data)
    except cv.Invalid as problem:
        where = f"key '{problem.key}': " if problem.key else ""
        raise InvalidParams(
            f"{layer} config: {where}{problem.reason}",
            field=f"config.{problem.key}" if problem.key else "config",
            detail={"layer": layer, "key": problem.key, "reason": problem.reason},
        ) from None


def _parse(data: Any) -> ConfigLayer:
    if not isinstance(data, Mapping):
        raise cv.Invalid("", f"expected a table of keys, got {cv.kind(data)}")
    parsed: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _PARSERS:
            raise cv.Invalid(cv.show(key), cv.unknown(key, KEYS, "key"))
        parsed[key] = _PARSERS[key](key, value)
    return ConfigLayer(**parsed)


def _parse_agent(key: str, value: Any) -> str:
    return cv.name(key, value, _NAME, "an agent kind name")


def _parse_model_or_mode(key: str, value: Any) -> str | None:
    if value is None:
        return None
    text = cv.text(key, value, MAX_CHOICE_LENGTH)
    if not text or text != text.strip() or not text.isprintable():
        raise cv.Invalid(key, "must be an id the agent offers: printable, no surrounding spaces")
    return text


def _parse_env(key: str, value: Any) -> dict[str, str | EnvValue]:
    env: dict[str, str | EnvValue] = {}
    for name, item in cv.table(key, value).items():
        name = cv.name(f"{key}.{cv.show(name)}", name, _ENV_NAME, "a variable name", as_key=True)
        where = f"{key}.{name}"
        if isinstance(item, Mapping):
            for field in item:
                if field not in ("value", "secret"):
                    raise cv.Invalid(
                        f"{where}.{cv.show(field)}", cv.unknown(field, ("value", "secret"))
                    )
            if "value" not in item:
                raise cv.Invalid(f"{where}.value", "required key is missing")
            secret = item.get("secret", False)
            if not isinstance(secret, bool):
                raise cv.Invalid(
                    f"{where}.secret", f"expected true or false, got {cv.kind(secret)}"
                )
            text = _env_text(f"{where}.value", item["value"])
            if secret and not text:
                raise cv.Invalid(f"{where}.value", "a secret value must not be empty")
            env[name] = EnvValue(value=text, secret=secret)
        elif isinstance(item, str):
            env[name] = _env_text(where, item)
        else:
            raise cv.Invalid(
                where, f'expected a string or {{value = "...", secret = true}}, got {cv.kind(item)}'
            )
    return env


def _env_text(where: str, value: Any) -> str:
    # The value itself never goes into a message: it may be a secret.
    if not isinstance(value, str):
        raise cv.Invalid(where, f"expected a string, got {cv.kind(value)}")
    if "\0" in value:
        raise cv.Invalid(where, "contains a NUL character, which no environment can hold")
    if len(value) > cv.MAX_VALUE_LENGTH:
        raise cv.Invalid(where, f"longer than {cv.MAX_VALUE_LENGTH} characters")
    return value


def _parse_tool_policy(key: str, value: Any) -> dict[ToolKind, Rule]:
    policy: dict[ToolKind, Rule] = {}
    for kind, rule in cv.table(key, value).items():
        if kind not in TOOL_KINDS:
            raise cv.Invalid(f"{key}.{cv.show(kind)}", cv.unknown(kind, TOOL_KINDS, "tool kind"))
        try:
            policy[kind] = parse_rule(f"{key}.{kind}", kind, rule)
        except RuleProblem as problem:
            raise cv.Invalid(problem.key, problem.reason) from None
    return policy


def _parse_permission_timeout_s(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        raise cv.Invalid(key, f"expected a number of seconds or null, got {cv.kind(value)}")
    if not 0 < value <= MAX_PERMISSION_TIMEOUT_S:
        raise cv.Invalid(
            key, f"must be more than 0 and at most {MAX_PERMISSION_TIMEOUT_S} (null: no timeout)"
        )
    return float(value)


def _parse_permission_timeout_default(key: str, value: Any) -> TimeoutDecision:
    if value == "allow" or value == "deny":
        return "allow" if value == "allow" else "deny"
    shown = repr(value) if isinstance(value, str) else cv.kind(value)
    raise cv.Invalid(key, f'{shown} is not "allow" or "deny"')


def _parse_token_budget(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise cv.Invalid(key, f"expected a whole number of tokens or null, got {cv.kind(value)}")
    if not 0 <= value <= MAX_TOKEN_BUDGET:
        raise cv.Invalid(key, f"must be between 0 and {MAX_TOKEN_BUDGET} (null: unlimited)")
    return value


def _number(low: float, high: float, what: str, *, nullable: bool = True) -> Callable[..., Any]:
    """A parser of a finite number in [low, high] (0 excluded when low is 0 and not
    nullable: a ratio), or null when ``nullable``."""

    def parse(key: str, value: Any) -> float | None:
        if value is None and nullable:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            raise cv.Invalid(key, f"expected {what}, got {cv.kind(value)}")
        if not low <= value <= high or (value == 0 and not nullable):
            raise cv.Invalid(
                key, f"must be between {low:g} and {high:g}{' (0 excluded)' * (not nullable)}"
            )
        return float(value)

    return parse


def _parse_prompt_templates(key: str, value: Any) -> dict[str, str]:
    templates: dict[str, str] = {}
    for name, text in cv.table(key, value).items():
        name = cv.name(f"{key}.{cv.show(name)}", name, _NAME, "a template name", as_key=True)
        templates[name] = cv.text(f"{key}.{name}", text, cv.MAX_VALUE_LENGTH)
        if problem := prompt_templates.problem(text):
            raise cv.Invalid(f"{key}.{name}", problem)
    return templates


def _parse_auto_complete(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise cv.Invalid(key, f"expected true or false, got {cv.kind(value)}")
    return value


def _parse_handoff_max_bytes(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise cv.Invalid(key, f"expected a whole number of bytes, got {cv.kind(value)}")
    if not 0 <= value <= MAX_HANDOFF_MAX_BYTES:
        raise cv.Invalid(key, f"must be between 0 (off) and {MAX_HANDOFF_MAX_BYTES} (4 MiB)")
    return value


_PARSERS: Final[dict[str, Callable[[str, Any], Any]]] = {
    "agent": _parse_agent,
    "model": _parse_model_or_mode,
    "mode": _parse_model_or_mode,
    "env": _parse_env,
    "tool_policy": _parse_tool_policy,
    "permission_timeout_s": _parse_permission_timeout_s,
    "permission_timeout_default": _parse_permission_timeout_default,
    "token_budget": _parse_token_budget,
    "cost_budget_usd": _number(0, MAX_COST_BUDGET_USD, "an amount in USD or null"),
    "budget_warn_ratio": _number(0, 1, "a number in (0, 1]", nullable=False),
    "turn_timeout_s": _number(MIN_TURN_TIMEOUT_S, MAX_TURN_TIMEOUT_S, "seconds or null"),
    "prompt_templates": _parse_prompt_templates,
    "auto_complete": _parse_auto_complete,
    "handoff_max_bytes": _parse_handoff_max_bytes,
    "branch_template": workspace_keys.parse_branch_template,
    "worktree_location": workspace_keys.parse_worktree_location,
    "setup_command": workspace_keys.parse_setup_command,
    "copy_files": workspace_keys.parse_copy_files,
    "copy_max_bytes": workspace_keys.parse_copy_max_bytes,
    "mcp_servers": mcp_servers.parse,
}


# ---- templates and slugs ----------------------------------------------------------------


# ---- merging ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A layer's value as plain data, copied so that no caller shares it with the layer."""
    if isinstance(value, EnvValue):
        return {"value": value.value, "secret": value.secret}
    if isinstance(value, ToolRule):
        return msgspec.to_builtins(value)
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
        env = {item["value"] for item in self.values["env"].values() if _is_secret(item)}
        return (env | mcp_servers.secret_values(self.values["mcp_servers"])) - {""}

    def masked(self) -> dict[str, Any]:
        """``values`` with every secret env value replaced by ``"***"``: safe to show."""
        masked = _plain(self.values)
        masked["env"] = _mask_env(self.values["env"])
        masked["mcp_servers"] = mcp_servers.masked(self.values["mcp_servers"])
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
    if "mcp_servers" in masked:
        masked["mcp_servers"] = mcp_servers.masked(masked["mcp_servers"])
    return masked


def keep_masked_secrets(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` with every env entry that is just the mask (``"***"``, as a client got it
    from ``mask_config``) replaced by the secret entry it stood for in ``old``.

    A client that reads a config, changes one key and sends it back whole must not
    turn the secrets it never saw into the literal text ``***``."""
    result = dict(new)
    if "mcp_servers" in new:
        result["mcp_servers"] = mcp_servers.keep_masked(new["mcp_servers"], old.get("mcp_servers"))
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


# ---- settings that act ------------------------------------------------------------------


def acting_settings(layer: ConfigLayer) -> Iterator[tuple[str, str]]:
    """The settings of ``layer`` that run commands or let an agent act without asking,
    as ``(dotted key, value as text)``: what a user should see before taking a layer
    from outside (an import). The setup command; each MCP server (its command and
    args, or its URL); each env variable (it reaches the agent, the setup command and
    the MCP servers: ``PATH``, ``LD_PRELOAD`` and the like change what runs; a secret
    as the mask; an MCP server's own variables by name); each tool kind that allows
    without asking (all, by default, or by pattern); and timed-out permission requests
    answered ``allow``."""
    if isinstance(layer.setup_command, str):
        yield "setup_command", layer.setup_command
    if layer.mcp_servers is not UNSET:
        for server in layer.mcp_servers:
            if "command" in server:
                shown = " ".join([server["command"], *server["args"]])
                if server["env"]:
                    shown += f" (env: {', '.join(pair['name'] for pair in server['env'])})"
            else:
                shown = f"{server['type']} {server['url']}"
            yield f"mcp_servers.{server['name']}", shown
    if layer.env is not UNSET:
        for name, item in layer.env.items():
            if isinstance(item, EnvValue):
                yield f"env.{name}", MASK if item.secret else item.value
            else:
                yield f"env.{name}", item
    if layer.tool_policy is not UNSET:
        for kind, rule in layer.tool_policy.items():
            if rule == "allow":
                yield f"tool_policy.{kind}", "allow"
            elif isinstance(rule, ToolRule) and (rule.default == "allow" or rule.allow):
                yield f"tool_policy.{kind}", msgspec.json.encode(rule).decode()
    if layer.permission_timeout_default == "allow":
        yield "permission_timeout_default", "allow"
