"""Session configuration layers: every key checked at every layer with errors that
name the layer and the key, precedence builtin < defaults < project < session
(maps merged per entry, each leaf with its source), secret env values that never
show themselves, branch/worktree templates, slugs, and the config file's
``[defaults]`` section."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mimird.config import Overrides, Settings, load_settings
from mimird.errors import ConfigError, InvalidParams
from mimird.names import branch_problem, slugify
from mimird.policy import (
    KEYS,
    LAYERS,
    SECRET_MASK,
    TOOL_KINDS,
    ConfigLayer,
    Effective,
    EnvValue,
    builtin_layer,
    effective,
    mask_config,
    parse_layer,
)
from mimird.workspace_keys import (
    DEFAULT_BRANCH_TEMPLATE,
    DEFAULT_WORKTREE_LOCATION,
    PLACEHOLDERS,
    render_template,
)

pytestmark = pytest.mark.timeout(30)

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "sk-live-8f2c1e9d-do-not-leak"
#: The layers a client or the config file can give (the built-in one is code).
GIVEN_LAYERS = ("defaults", "project", "session")


def rejected(data: Any, layer: str = "project") -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        parse_layer(data, layer)
    return info.value


def merged(**layers: dict[str, Any]) -> Effective:
    """``effective`` of the layers given as plain data, in precedence order."""
    return effective([(name, parse_layer(layers[name], name)) for name in LAYERS if name in layers])


# ---- every key, valid ---------------------------------------------------------------------

VALID: list[tuple[str, Any]] = [
    ("agent", "opencode"),
    ("agent", "claude-code_acp.v2"),
    ("model", "anthropic/claude-sonnet-4-5"),
    ("model", None),
    ("mode", "plan"),
    ("mode", None),
    ("env", {}),
    ("env", {"RUST_LOG": "debug", "_X1": ""}),
    ("env", {"API_KEY": {"value": SECRET, "secret": True}}),
    ("env", {"PLAIN": {"value": "shown"}}),
    ("tool_policy", {}),
    ("tool_policy", dict.fromkeys(TOOL_KINDS, "deny")),
    ("tool_policy", {"read": "allow", "execute": "ask", "delete": "deny"}),
    ("token_budget", 0),
    ("token_budget", 200_000),
    ("token_budget", None),
    ("cost_budget_usd", 0),
    ("cost_budget_usd", 2.5),
    ("cost_budget_usd", 1_000_000),
    ("cost_budget_usd", None),
    ("budget_warn_ratio", 1),
    ("budget_warn_ratio", 0.001),
    ("turn_timeout_s", 0.1),
    ("turn_timeout_s", 604_800),
    ("turn_timeout_s", None),
    ("prompt_templates", {"review": "Review this.", "fix.v2": "", "a-b_c": "x"}),
    ("auto_complete", True),
    ("auto_complete", False),
    ("handoff_max_bytes", 0),
    ("handoff_max_bytes", 4 << 20),
    ("branch_template", DEFAULT_BRANCH_TEMPLATE),
    ("branch_template", "agents/{project}/{date}-{slug}-{id}"),
    ("branch_template", "literal-{{braces}}-{short_id}"),
    ("worktree_location", DEFAULT_WORKTREE_LOCATION),
    ("worktree_location", "/srv/worktrees/{project}/{date}/{id}"),
    ("setup_command", "uv sync && make deps"),
    ("setup_command", None),
    ("copy_files", []),
    ("copy_files", [".env", "config/*.local.toml", "**/.envrc"]),
    ("copy_max_bytes", 1),
    ("copy_max_bytes", 1 << 40),
]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(
    ("key", "value"), VALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(VALID)]
)
def test_valid_value_is_accepted_at_every_layer(layer: str, key: str, value: Any) -> None:
    parsed = parse_layer({key: value}, layer)
    as_data = msgspec.to_builtins(parsed)
    if key == "env":
        # The long form without a flag comes back with its default, secret = false.
        value = {n: {"secret": False, **v} if isinstance(v, dict) else v for n, v in value.items()}
        as_data[key] = {
            n: {"secret": False, **v} if isinstance(v, dict) else v for n, v in as_data[key].items()
        }
    assert as_data == {key: value}


def test_every_key_left_out_is_unset() -> None:
    assert parse_layer({}, "session") == ConfigLayer()


def test_builtin_layer_sets_every_key_to_the_documented_default() -> None:
    assert msgspec.structs.asdict(builtin_layer()) == {
        "agent": "opencode",
        "model": None,
        "mode": None,
        "env": {},
        "tool_policy": dict.fromkeys(TOOL_KINDS, "ask"),
        "permission_timeout_s": None,
        "permission_timeout_default": "deny",
        "token_budget": None,
        "cost_budget_usd": None,
        "budget_warn_ratio": 0.8,
        "turn_timeout_s": None,
        "prompt_templates": {},
        "auto_complete": False,
        "handoff_max_bytes": 64 << 10,
        "branch_template": "mimir/{slug}-{short_id}",
        "worktree_location": "{project}/{slug}-{short_id}",
        "setup_command": None,
        "copy_files": [],
        "copy_max_bytes": 1 << 30,
        "mcp_servers": [],
    }


def test_a_valid_layer_survives_a_round_trip_through_json() -> None:
    data = {key: value for key, value in VALID if value}
    layer = parse_layer(data, "project")
    stored = msgspec.json.decode(msgspec.json.encode(layer))
    assert parse_layer(stored, "project") == layer


# ---- every key, invalid -----------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str, str]] = [
    # (layer data, dotted key named, fragment of the reason)
    ({"agent": 3}, "agent", "got an integer"),
    ({"agent": ""}, "agent", "not an agent kind name"),
    ({"agent": "open code"}, "agent", "not an agent kind name"),
    ({"agent": "opencode\n"}, "agent", "not an agent kind name"),
    ({"agent": "a" * 101}, "agent", "at most 100"),
    ({"model": 3}, "model", "expected a string"),
    ({"model": ""}, "model", "must be an id the agent offers"),
    ({"mode": " plan"}, "mode", "no surrounding spaces"),
    ({"mode": "a\tb"}, "mode", "printable"),
    ({"model": "m" * 201}, "model", "longer than 200 characters"),
    ({"env": ["A=1"]}, "env", "expected a table, got a list"),
    ({"env": {"1ABC": "x"}}, "env.1ABC", "not a variable name"),
    ({"env": {"A-B": "x"}}, "env.A-B", "not a variable name"),
    ({"env": {"A": 1}}, "env.A", "expected a string or {value"),
    ({"env": {"A": None}}, "env.A", "got null"),
    ({"env": {"A": "nul\0byte"}}, "env.A", "NUL"),
    ({"env": {"A": {"secret": True}}}, "env.A.value", "required key is missing"),
    ({"env": {"A": {"value": 5}}}, "env.A.value", "expected a string"),
    ({"env": {"A": {"value": "x", "secret": "yes"}}}, "env.A.secret", "expected true or false"),
    ({"env": {"A": {"value": "x", "secrte": True}}}, "env.A.secrte", "did you mean 'secret'"),
    ({"env": {"A": {"value": "", "secret": True}}}, "env.A.value", "must not be empty"),
    ({"tool_policy": "allow"}, "tool_policy", "expected a table"),
    ({"tool_policy": {"exec": "allow"}}, "tool_policy.exec", "expected one of read, edit,"),
    ({"tool_policy": {"exec": "allow"}}, "tool_policy.exec", "did you mean 'execute'"),
    ({"tool_policy": {"execute": "maybe"}}, "tool_policy.execute", "expected one of allow, ask"),
    ({"tool_policy": {"read": True}}, "tool_policy.read", "a boolean is not a decision"),
    ({"token_budget": -1}, "token_budget", "between 0 and"),
    ({"token_budget": 1 << 63}, "token_budget", "between 0 and"),
    ({"token_budget": 1.5}, "token_budget", "got a number"),
    ({"auto_complete": "true"}, "auto_complete", "expected true or false, got a string"),
    ({"auto_complete": 1}, "auto_complete", "expected true or false, got an integer"),
    ({"auto_complete": None}, "auto_complete", "got null"),
    ({"handoff_max_bytes": -1}, "handoff_max_bytes", "between 0 (off) and"),
    ({"handoff_max_bytes": (4 << 20) + 1}, "handoff_max_bytes", "between 0 (off) and"),
    ({"handoff_max_bytes": "64k"}, "handoff_max_bytes", "got a string"),
    ({"handoff_max_bytes": True}, "handoff_max_bytes", "got a boolean"),
    ({"token_budget": True}, "token_budget", "got a boolean"),
    ({"token_budget": "1000"}, "token_budget", "got a string"),
    ({"cost_budget_usd": -0.01}, "cost_budget_usd", "between 0 and 1e+06"),
    ({"cost_budget_usd": 1e7}, "cost_budget_usd", "between 0 and 1e+06"),
    ({"cost_budget_usd": float("inf")}, "cost_budget_usd", "between 0 and 1e+06"),
    ({"cost_budget_usd": float("nan")}, "cost_budget_usd", "expected an amount in USD"),
    ({"cost_budget_usd": "5"}, "cost_budget_usd", "got a string"),
    ({"cost_budget_usd": True}, "cost_budget_usd", "got a boolean"),
    ({"budget_warn_ratio": 0}, "budget_warn_ratio", "(0 excluded)"),
    ({"budget_warn_ratio": 1.5}, "budget_warn_ratio", "between 0 and 1"),
    ({"budget_warn_ratio": None}, "budget_warn_ratio", "got null"),
    ({"turn_timeout_s": 0}, "turn_timeout_s", "between 0.1 and 604800"),
    ({"turn_timeout_s": 604_801}, "turn_timeout_s", "between 0.1 and 604800"),
    ({"turn_timeout_s": "60"}, "turn_timeout_s", "got a string"),
    ({"prompt_templates": ["x"]}, "prompt_templates", "expected a table"),
    ({"prompt_templates": {"a b": "x"}}, "prompt_templates.a b", "not a template name"),
    ({"prompt_templates": {"review": 1}}, "prompt_templates.review", "expected a string"),
    ({"prompt_templates": {"r": "a { b"}}, "prompt_templates.r", "bad template syntax"),
    ({"prompt_templates": {"r": "{a.b}"}}, "prompt_templates.r", "is not a name"),
    ({"branch_template": 1}, "branch_template", "expected a string"),
    ({"branch_template": ""}, "branch_template", "is empty"),
    ({"branch_template": "x/{title}"}, "branch_template", "unknown placeholder {title}"),
    ({"branch_template": "x/{}"}, "branch_template", "unknown placeholder {}"),
    ({"branch_template": "x/{slug"}, "branch_template", "bad template syntax"),
    ({"branch_template": "x/slug}"}, "branch_template", "bad template syntax"),
    ({"branch_template": "{slug!r}"}, "branch_template", "no format spec or conversion"),
    ({"branch_template": "{slug:>9}"}, "branch_template", "no format spec or conversion"),
    ({"branch_template": "a b/{slug}"}, "branch_template", "valid git branch name"),
    ({"branch_template": "x..{slug}"}, "branch_template", "valid git branch name"),
    ({"branch_template": "{slug}.lock"}, "branch_template", "valid git branch name"),
    ({"worktree_location": None}, "worktree_location", "got null"),
    ({"worktree_location": " "}, "worktree_location", "is empty"),
    ({"worktree_location": "{project}/{branch}"}, "worktree_location", "unknown placeholder"),
    ({"worktree_location": "{project"}, "worktree_location", "bad template syntax"),
    ({"worktree_location": "../{slug}"}, "worktree_location", "'..'"),
    ({"setup_command": ""}, "setup_command", "is empty"),
    ({"setup_command": ["make"]}, "setup_command", "expected a string"),
    ({"copy_files": ".env"}, "copy_files", "expected a list"),
    ({"copy_files": [".env", 3]}, "copy_files.1", "expected a string"),
    ({"copy_files": [""]}, "copy_files.0", "empty pattern"),
    ({"copy_files": ["/etc/passwd"]}, "copy_files.0", "absolute"),
    ({"copy_files": ["../secrets/*"]}, "copy_files.0", "'..'"),
    ({"copy_files": ["a/../../b"]}, "copy_files.0", "'..'"),
    ({"branch_template": "refs/heads/{slug}"}, "branch_template", "starts with 'refs/'"),
    ({"branch_template": "-{slug}"}, "branch_template", "starts with '-'"),
    ({"copy_max_bytes": 0}, "copy_max_bytes", "between 1 and"),
    ({"copy_max_bytes": (1 << 40) + 1}, "copy_max_bytes", "between 1 and"),
    ({"copy_max_bytes": 1.5}, "copy_max_bytes", "got a number"),
    ({"copy_max_bytes": None}, "copy_max_bytes", "got null"),
]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(
    ("data", "key", "fragment"), INVALID, ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(INVALID)]
)
def test_invalid_value_is_rejected_naming_the_layer_and_the_key(
    layer: str, data: dict[str, Any], key: str, fragment: str
) -> None:
    error = rejected(data, layer)
    assert error.message.startswith(f"{layer} config: key '{key}': ")
    assert fragment in error.message
    assert error.field == f"config.{key}"
    assert error.detail is not None
    assert error.detail["layer"] == layer
    assert error.detail["key"] == key


@pytest.mark.parametrize("layer", GIVEN_LAYERS)
def test_unknown_key_is_rejected_naming_it(layer: str) -> None:
    error = rejected({"agent": "x", "tool_polcy": {"read": "allow"}}, layer)
    assert error.message.startswith(f"{layer} config: key 'tool_polcy': unknown key")
    assert "did you mean 'tool_policy'?" in error.message
    assert error.field == "config.tool_polcy"


def test_unknown_key_that_resembles_nothing_lists_the_known_keys() -> None:
    error = rejected({"zzz": 1})
    assert "expected one of " + ", ".join(KEYS) in error.message
    assert "did you mean" not in error.message


def test_layer_that_is_not_a_table_is_rejected() -> None:
    error = rejected(["agent"], "session")
    assert error.message == "session config: expected a table of keys, got a list"
    assert error.field == "config"


def test_odd_key_is_shown_on_one_line() -> None:
    error = rejected({"env": {"A\nB": "x"}})
    assert "\n" not in error.message
    assert "env.'A\\nB'" in error.message


@pytest.mark.parametrize(
    "env",
    [
        {"A": {"value": SECRET, "secret": True, "extra": 1}},
        {"A": {"value": SECRET + "\0", "secret": True}},
        {"A": {"value": SECRET, "secret": "true"}},
        {"A-B": {"value": SECRET, "secret": True}},
        {"A": SECRET + "\0"},
    ],
)
def test_errors_never_contain_an_env_value(env: dict[str, Any]) -> None:
    error = rejected({"env": env})
    assert SECRET not in str(error)
    assert SECRET not in repr(error.data())


# ---- precedence ---------------------------------------------------------------------------

#: A distinct value per layer for every key that is replaced whole.
SCALARS: dict[str, dict[str, Any]] = {
    "agent": {"defaults": "goose", "project": "gemini", "session": "codex"},
    "token_budget": {"defaults": 1000, "project": None, "session": 0},
    "branch_template": {"defaults": "d/{slug}", "project": "p/{slug}", "session": "s/{id}"},
    "worktree_location": {"defaults": "d/{id}", "project": "/p/{id}", "session": "s/{slug}"},
    "setup_command": {"defaults": "make", "project": None, "session": "npm ci"},
    "copy_files": {"defaults": [".env"], "project": [], "session": ["a", "b"]},
}
LAYER_SUBSETS = [
    (),
    ("defaults",),
    ("project",),
    ("session",),
    ("defaults", "project"),
    ("defaults", "session"),
    ("project", "session"),
    ("defaults", "project", "session"),
]


@pytest.mark.parametrize("given", LAYER_SUBSETS, ids=lambda s: "+".join(s) or "none")
@pytest.mark.parametrize("key", SCALARS)
def test_scalars_and_lists_come_whole_from_the_highest_layer_that_sets_them(
    key: str, given: tuple[str, ...]
) -> None:
    result = merged(**{layer: {key: SCALARS[key][layer]} for layer in given})
    winner = given[-1] if given else "builtin"
    expected = SCALARS[key][winner] if given else msgspec.structs.asdict(builtin_layer())[key]
    assert result.values[key] == expected
    assert result.sources[key] == winner


def test_lists_are_replaced_not_concatenated() -> None:
    result = merged(defaults={"copy_files": [".env", ".envrc"]}, session={"copy_files": ["x"]})
    assert result.values["copy_files"] == ["x"]


def test_maps_are_merged_per_entry_with_a_source_per_entry() -> None:
    result = merged(
        defaults={
            "env": {"A": "d", "B": "d"},
            "tool_policy": {"read": "allow", "execute": "deny"},
            "prompt_templates": {"review": "d", "plan": "d"},
        },
        project={"env": {"B": "p", "C": "p"}, "tool_policy": {"execute": "ask"}},
        session={"env": {"C": "s"}, "tool_policy": {"edit": "allow"}},
    )
    assert result.values["env"] == {"A": "d", "B": "p", "C": "s"}
    assert result.values["tool_policy"] == {
        **dict.fromkeys(TOOL_KINDS, "ask"),
        "read": "allow",
        "execute": "ask",
        "edit": "allow",
    }
    assert result.values["prompt_templates"] == {"review": "d", "plan": "d"}
    map_sources = {k: v for k, v in result.sources.items() if "." in k}
    assert map_sources == {
        "env.A": "defaults",
        "env.B": "project",
        "env.C": "session",
        **{f"tool_policy.{kind}": "builtin" for kind in TOOL_KINDS},
        "tool_policy.read": "defaults",
        "tool_policy.execute": "project",
        "tool_policy.edit": "session",
        "prompt_templates.plan": "defaults",
        "prompt_templates.review": "defaults",
    }


def test_every_leaf_has_a_source_and_a_filled_map_none_of_its_own() -> None:
    result = merged(project={"env": {"A": "1"}})
    leaves = {key for key in KEYS if key not in ("env", "tool_policy")}
    leaves |= {"env.A"} | {f"tool_policy.{kind}" for kind in TOOL_KINDS}
    assert set(result.sources) == leaves
    assert result.sources["prompt_templates"] == "builtin"


def test_an_empty_map_keeps_the_source_of_the_last_layer_that_set_it() -> None:
    assert merged(project={"env": {}}).sources["env"] == "project"


def test_a_higher_layer_cannot_remove_a_lower_map_entry() -> None:
    result = merged(defaults={"env": {"A": "1"}}, session={"env": {}})
    assert result.values["env"] == {"A": "1"}
    assert result.sources["env.A"] == "defaults"


def test_effective_values_are_copies_of_the_layers() -> None:
    layer = parse_layer({"copy_files": [".env"], "env": {"A": "1"}}, "project")
    result = effective([("project", layer)])
    result.values["copy_files"].append("x")
    result.values["env"]["B"] = "2"
    assert layer.copy_files == [".env"]
    assert layer.env == {"A": "1"}


@pytest.mark.parametrize(
    "names",
    [("project", "defaults"), ("session", "session"), ("user",)],
    ids=["out-of-order", "twice", "unknown"],
)
def test_effective_refuses_layers_out_of_order_twice_or_unknown(names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="layer"):
        effective([(name, ConfigLayer()) for name in names])


def test_entries_are_sorted_with_one_per_map_member() -> None:
    result = merged(
        defaults={"agent": "goose", "prompt_templates": {"review": "r"}},
        session={"env": {"B": "2", "A": "1"}, "tool_policy": {"fetch": "deny"}},
    )
    entries = result.entries()
    assert [key for key, _, _ in entries] == sorted(key for key, _, _ in entries)
    assert ("agent", "goose", "defaults") in entries
    assert ("env.A", "1", "session") in entries
    assert ("prompt_templates.review", "r", "defaults") in entries
    assert ("tool_policy.fetch", "deny", "session") in entries
    assert ("tool_policy.read", "ask", "builtin") in entries
    assert ("token_budget", None, "builtin") in entries
    assert not any(key in ("env", "tool_policy", "prompt_templates") for key, _, _ in entries)


# ---- secrets --------------------------------------------------------------------------------

SECRET_LAYERS: dict[str, dict[str, Any]] = {
    "defaults": {"env": {"API_KEY": {"value": "old-" + SECRET, "secret": True}}},
    "project": {"env": {"API_KEY": {"value": SECRET, "secret": True}, "PLAIN": "visible"}},
    "session": {"env": {"LONG": {"value": "long-visible"}}},
}


@pytest.fixture
def with_secret() -> Effective:
    return merged(**SECRET_LAYERS)


def test_env_gives_the_real_values(with_secret: Effective) -> None:
    assert with_secret.env() == {
        "API_KEY": SECRET,
        "PLAIN": "visible",
        "LONG": "long-visible",
    }


def test_secret_values_are_the_secret_strings_in_effect(with_secret: Effective) -> None:
    assert with_secret.secret_values() == {SECRET}


def test_masked_replaces_secret_env_values(with_secret: Effective) -> None:
    masked = with_secret.masked()
    assert masked["env"] == {
        "API_KEY": SECRET_MASK,
        "PLAIN": "visible",
        "LONG": {"value": "long-visible", "secret": False},
    }
    assert SECRET not in repr(masked)
    assert with_secret.values["env"]["API_KEY"]["value"] == SECRET  # masking copies


def test_entries_mask_secret_env_values(with_secret: Effective) -> None:
    assert ("env.API_KEY", SECRET_MASK, "project") in with_secret.entries()
    assert SECRET not in repr(with_secret.entries())


def test_mask_config_masks_a_raw_stored_layer() -> None:
    raw = {**SECRET_LAYERS["project"], "agent": "goose", "copy_files": [".env"]}
    masked = mask_config(raw)
    assert masked == {
        "env": {"API_KEY": SECRET_MASK, "PLAIN": "visible"},
        "agent": "goose",
        "copy_files": [".env"],
    }
    assert raw["env"]["API_KEY"]["value"] == SECRET  # the input is left alone


@pytest.mark.parametrize(
    "raw",
    [{"env": "not-a-table"}, {"env": {"A": {"value": SECRET, "secret": 1}}}, {}],
    ids=["env-not-a-table", "truthy-flag", "no-env"],
)
def test_mask_config_tolerates_data_that_would_not_validate(raw: dict[str, Any]) -> None:
    assert SECRET not in repr(mask_config(raw))


def test_no_repr_or_str_shows_a_secret(with_secret: Effective) -> None:
    layer = parse_layer(SECRET_LAYERS["project"], "project")
    env_value = EnvValue(value=SECRET, secret=True)
    for thing in (with_secret, layer, env_value):
        assert SECRET not in repr(thing)
        assert SECRET not in str(thing)
        assert SECRET not in repr(list(thing.__rich_repr__()))


def test_non_secret_env_values_show_themselves() -> None:
    assert "shown" in repr(EnvValue(value="shown"))


def test_settings_repr_does_not_show_a_secret_from_defaults(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[defaults.env]\nK = {{ value = "{SECRET}", secret = true }}\n')
    settings = load_settings(Overrides(), {"HOME": str(tmp_path), "MIMIR_CONFIG": str(config)})
    assert SECRET not in repr(settings)


# ---- templates and slugs --------------------------------------------------------------------

ALL_VALUES = {
    "slug": "fix-login",
    "short_id": "01hx2k3m",
    "id": "01hx2k3m4n5p6q7r8s9t0vwxyz",
    "project": "api",
    "date": "20261122",
}


def test_template_fills_every_placeholder() -> None:
    template = "/".join(f"{{{name}}}" for name in PLACEHOLDERS)
    assert render_template(template, **ALL_VALUES) == "/".join(ALL_VALUES[n] for n in PLACEHOLDERS)


def test_default_templates_render() -> None:
    assert render_template(DEFAULT_BRANCH_TEMPLATE, **ALL_VALUES) == "mimir/fix-login-01hx2k3m"
    assert render_template(DEFAULT_WORKTREE_LOCATION, **ALL_VALUES) == "api/fix-login-01hx2k3m"


def test_template_doubled_braces_are_literal() -> None:
    assert render_template("{{x}}-{slug}", **ALL_VALUES) == "{x}-fix-login"


def test_template_with_an_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(InvalidParams, match=re.escape("unknown placeholder {branch}")):
        render_template("{branch}", **ALL_VALUES)


@pytest.mark.parametrize("template", ["{slug", "slug}", "{slug}}", "{{slug}"])
def test_template_with_bad_syntax_is_an_error(template: str) -> None:
    with pytest.raises(InvalidParams, match="bad template syntax"):
        render_template(template, **ALL_VALUES)


def test_template_placeholder_without_a_value_is_an_error() -> None:
    with pytest.raises(InvalidParams, match=re.escape("no value for placeholder {date}")):
        render_template("{date}", slug="x")


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Fix the login bug!", "fix-the-login-bug"),
        ("  --Refactor: API/v2 (urgent)--  ", "refactor-api-v2-urgent"),
        ("Café déjà vu", "cafe-deja-vu"),
        ("Straße", "strasse"),
        ("ﬁle Ⅻ", "file-xii"),
        ("日本語のタスク", "session"),
        ("日本語 fix", "fix"),
        ("", "session"),
        ("!!!", "session"),
        ("snake_case and.dots", "snake-case-and-dots"),
        ("Ünïcödé 42", "unicode-42"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_slugify_cuts_long_text_at_a_word_boundary() -> None:
    slug = slugify("implement the new authentication middleware for the public api")
    assert slug == "implement-the-new-authentication"
    assert len(slug) <= 40


def test_slugify_cuts_one_long_word_at_the_limit() -> None:
    assert slugify("x" * 100) == "x" * 40
    assert slugify("ab " + "y" * 100, max_length=10) == "ab-yyyyyyy"


def test_slugify_never_ends_with_a_hyphen() -> None:
    for length in range(1, 30):
        slug = slugify("one two three four five six seven", max_length=length)
        assert not slug.endswith("-")
        assert len(slug) <= length


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Fix the login bug!", "fix-the-login-bug"),
        ("..lock", "lock"),
        ("-x-", "x"),
        ("@{", "session"),
        ("a.lock", "a-lock"),
    ],
)
def test_slug_of_text_git_would_refuse_is_a_branch_git_and_mimir_accept(
    text: str, slug: str
) -> None:
    assert slugify(text) == slug
    branch = "x/" + slug
    assert branch_problem(branch) is None
    checked = subprocess.run(
        ["git", "check-ref-format", "--branch", branch], capture_output=True, text=True, check=False
    )
    assert (checked.returncode, checked.stdout) == (0, branch + "\n")


# ---- the config file's [defaults] -------------------------------------------------------------


def load(tmp_path: Path, text: str) -> Settings:
    config = tmp_path / "config.toml"
    config.write_text(text)
    return load_settings(Overrides(), {"HOME": str(tmp_path), "MIMIR_CONFIG": str(config)})


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('[defaults]\nagnet = "x"\n', "defaults.agnet", "unknown key (did you mean 'agent'?"),
        ('[defaults.tool_policy]\nexec = "allow"\n', "defaults.tool_policy.exec", "unknown tool"),
        ("[defaults]\ntoken_budget = -5\n", "defaults.token_budget", "between 0 and"),
        ('[defaults]\nbranch_template = "{nope}"\n', "defaults.branch_template", "placeholder"),
        ("[defaults.env]\nX = 1\n", "defaults.env.X", "expected a string"),
        ("defaults = 3\n", "defaults", "Expected `object`, got `int`"),
    ],
)
def test_bad_defaults_key_is_a_config_error_naming_the_key_and_the_file(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'config.toml'}: key '{key}': ")
    assert fragment in message
    assert info.value.exit_code == 78


def test_defaults_section_becomes_the_defaults_layer(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[defaults]\nagent = "goose"\ncopy_files = [".env"]\n'
        '[defaults.tool_policy]\nread = "allow"\n',
    )
    assert settings.defaults == ConfigLayer(
        agent="goose", copy_files=[".env"], tool_policy={"read": "allow"}
    )
    result = effective([("defaults", settings.defaults)])
    assert result.sources["agent"] == "defaults"
    assert result.sources["tool_policy.read"] == "defaults"


def test_without_a_config_file_the_defaults_layer_is_empty(tmp_path: Path) -> None:
    settings = load_settings(Overrides(), {"HOME": str(tmp_path)})
    assert settings.config_path is None
    assert settings.defaults == ConfigLayer()


def test_readme_defaults_example_is_valid_once_uncommented(tmp_path: Path) -> None:
    """README's commented ``[defaults]`` example sets every key and loads."""
    block = README.read_text(encoding="utf-8").split("[defaults]", 1)[1].split("```", 1)[0]
    lines = ["[defaults]"]
    for line in block.splitlines():
        lines.append(line[2:] if line.startswith("# ") else "" if line == "#" else line)
    text = "\n".join(lines) + "\n"
    assert set(tomllib.loads(text)["defaults"]) == set(KEYS)
    settings = load(tmp_path, text)
    assert all(value is not msgspec.UNSET for value in msgspec.structs.astuple(settings.defaults))
