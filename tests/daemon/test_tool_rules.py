"""``tool_policy`` rules in the layered config: their shapes, checked with errors
that name the key, and their merge (a higher layer's rule for a kind replaces the
lower one whole; each kind's rule keeps the layer that set it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from mimird.config import Overrides, load_settings
from mimird.errors import InvalidParams
from mimird.policy import effective, parse_layer
from mimird.tool_rules import ToolRule

pytestmark = pytest.mark.timeout(30)


def test_a_rule_is_a_decision_or_a_table_and_round_trips_as_plain_data() -> None:
    layer = parse_layer(
        {
            "tool_policy": {
                "read": "allow",
                "edit": {"default": "ask", "allow": ["src/**"], "deny": [".github/**", "*.lock"]},
                "execute": {"allow": ["pytest", "git status"], "always": True},
                "fetch": {"default": "deny"},
            },
            "permission_timeout_s": 30,
            "permission_timeout_default": "allow",
        },
        "project",
    )
    assert layer.tool_policy == {
        "read": "allow",
        "edit": ToolRule(default="ask", allow=["src/**"], deny=[".github/**", "*.lock"]),
        "execute": ToolRule(allow=["pytest", "git status"], always=True),
        "fetch": ToolRule(default="deny"),
    }
    assert layer.permission_timeout_s == 30.0
    again = parse_layer(msgspec.to_builtins(layer), "project")
    assert again == layer


def test_a_higher_layers_rule_for_a_kind_replaces_the_lower_one_whole() -> None:
    result = effective(
        [
            ("defaults", parse_layer({"tool_policy": {"read": "allow"}}, "defaults")),
            (
                "project",
                parse_layer(
                    {"tool_policy": {"edit": {"allow": ["src/**"], "deny": ["*.lock"]}}}, "project"
                ),
            ),
            ("session", parse_layer({"tool_policy": {"edit": "deny"}}, "session")),
        ]
    )
    assert result.values["tool_policy"]["edit"] == "deny"
    assert result.values["tool_policy"]["read"] == "allow"
    assert result.sources["tool_policy.edit"] == "session"
    assert result.sources["tool_policy.read"] == "defaults"
    assert result.sources["tool_policy.execute"] == "builtin"
    # Without the session's rule, the project's table is in force, as plain data.
    below = effective(
        [
            (
                "project",
                parse_layer({"tool_policy": {"edit": {"allow": ["src/**"]}}}, "project"),
            )
        ]
    )
    assert below.values["tool_policy"]["edit"] == {
        "default": "ask",
        "allow": ["src/**"],
        "deny": [],
        "always": False,
    }
    explained = {key: (value, layer) for key, value, layer in below.entries()}
    assert explained["tool_policy.edit"][1] == "project"
    assert explained["permission_timeout_s"] == (None, "builtin")
    assert explained["permission_timeout_default"] == ("deny", "builtin")


@pytest.mark.parametrize(
    ("rule", "field", "reason"),
    [
        ({"edit": ["src/**"]}, "tool_policy.edit", "a list is not a decision"),
        ({"edit": {"default": "yes"}}, "tool_policy.edit.default", "'yes' is not a decision"),
        ({"edit": {"allow": [""]}}, "tool_policy.edit.allow.0", "non-empty string"),
        ({"edit": {"allow": [3]}}, "tool_policy.edit.allow.0", "expected a string, got an integer"),
        ({"edit": {"allow": ["/abs"]}}, "tool_policy.edit.allow.0", "is absolute"),
        ({"edit": {"deny": ["a/../b"]}}, "tool_policy.edit.deny.0", "contains '..'"),
        ({"edit": {"deny": ["a**"]}}, "tool_policy.edit.deny.0", "whole one"),
        ({"edit": {"deny": ["."]}}, "tool_policy.edit.deny.0", "the workspace itself"),
        ({"edit": {"allow": ["x"] * 1001}}, "tool_policy.edit.allow", "more than 1000"),
        ({"think": {"deny": ["x"]}}, "tool_policy.think.deny", "takes no patterns"),
        ({"execute": {"deny": ['rm "']}}, "tool_policy.execute.deny.0", "not a command line"),
        ({"edit": {"always": 1}}, "tool_policy.edit.always", "expected true or false"),
        ({"edit": {"defualt": "ask"}}, "tool_policy.edit.defualt", "unknown key"),
    ],
)
def test_a_bad_rule_names_its_key(rule: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        parse_layer({"tool_policy": rule}, "session")
    assert caught.value.field == f"config.{field}"
    assert reason in caught.value.message


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"permission_timeout_s": 0}, "permission_timeout_s", "more than 0"),
        ({"permission_timeout_s": 604_801}, "permission_timeout_s", "at most 604800"),
        ({"permission_timeout_s": True}, "permission_timeout_s", "got a boolean"),
        ({"permission_timeout_s": float("nan")}, "permission_timeout_s", "expected a number"),
        ({"permission_timeout_default": "ask"}, "permission_timeout_default", "is not"),
    ],
)
def test_bad_permission_timeouts_name_their_key(
    data: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        parse_layer(data, "project")
    assert caught.value.field == f"config.{field}"
    assert reason in caught.value.message


def test_the_config_file_takes_rule_tables(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[defaults]\npermission_timeout_s = 1.5\n"
        "[defaults.tool_policy]\n"
        'edit = { default = "ask", allow = ["src/**"], deny = [".github/**"] }\n'
        'execute = { allow = ["pytest"] }\n'
    )
    settings = load_settings(Overrides(config=str(config)), {"HOME": str(tmp_path)})
    assert settings.defaults.permission_timeout_s == 1.5
    assert settings.defaults.tool_policy == {
        "edit": ToolRule(allow=["src/**"], deny=[".github/**"]),
        "execute": ToolRule(allow=["pytest"]),
    }
