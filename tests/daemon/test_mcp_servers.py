"""The ``mcp_servers`` config key (mimird/mcp_servers.py): the ACP shapes checked
and bounded, secret values masked wherever the config is shown and kept when a
client sends back what it was shown, and the ACP form given to agents."""

from __future__ import annotations

from typing import Any

import pytest

from mimird import mcp_servers, policy
from mimird.errors import InvalidParams

STDIO = {
    "name": "files",
    "command": "/usr/bin/mcp-files",
    "args": ["--root", "/tmp"],
    "env": [{"name": "TOKEN", "value": {"value": "s3cret-value", "secret": True}}],
}
HTTP = {
    "type": "http",
    "name": "tracker",
    "url": "https://mcp.example.invalid/mcp",
    "headers": [{"name": "X-Team", "value": "blue"}],
}


def _problem(servers: Any) -> str:
    with pytest.raises(InvalidParams) as refused:
        policy.parse_layer({"mcp_servers": servers}, "session")
    assert refused.value.detail is not None
    key: str = refused.value.detail["key"]
    assert "s3cret" not in refused.value.message
    return key


def test_valid_servers_are_taken() -> None:
    layer = policy.parse_layer({"mcp_servers": [STDIO, HTTP]}, "session")
    assert layer.mcp_servers == [STDIO, HTTP]
    effective = policy.effective([("session", layer)])
    assert "s3cret-value" in effective.secret_values()
    assert mcp_servers.for_acp(effective.values["mcp_servers"]) == [
        {**STDIO, "env": [{"name": "TOKEN", "value": "s3cret-value"}]},
        HTTP,
    ]


@pytest.mark.parametrize(
    ("servers", "key"),
    [
        ({"name": "x"}, "mcp_servers"),
        ([{**STDIO, "command": "relative"}], "mcp_servers[0].command"),
        ([{**STDIO, "type": "stdio"}], "mcp_servers[0].type"),
        ([{**STDIO, "extra": 1}], "mcp_servers[0].extra"),
        ([{**STDIO, "args": ["x"] * 257}], "mcp_servers[0].args"),
        ([{**STDIO, "env": [{"name": "1BAD", "value": "x"}]}], "mcp_servers[0].env[0].name"),
        (
            [{**STDIO, "env": [{"name": "A", "value": "a\\nb".replace("\\n", "\n")}]}],
            "mcp_servers[0].env[0].value",
        ),
        ([{**HTTP, "url": "file:///etc/passwd"}], "mcp_servers[0].url"),
        (
            [{**HTTP, "headers": [{"name": "Bad Name", "value": "x"}]}],
            "mcp_servers[0].headers[0].name",
        ),
        ([STDIO, STDIO], "mcp_servers"),
        ([{**STDIO, "name": f"s{i}"} for i in range(33)], "mcp_servers"),
        ([{**STDIO, "name": " "}], "mcp_servers[0].name"),
    ],
)
def test_bad_servers_are_refused_naming_the_field(servers: Any, key: str) -> None:
    assert _problem(servers) == key


def test_secrets_are_masked_and_kept_on_the_way_back() -> None:
    stored = {"mcp_servers": [STDIO, HTTP]}
    shown = policy.mask_config(stored)
    assert shown["mcp_servers"][0]["env"] == [{"name": "TOKEN", "value": "***"}]
    assert shown["mcp_servers"][1]["headers"] == HTTP["headers"]
    back = policy.keep_masked_secrets(shown, stored)
    assert back["mcp_servers"] == [STDIO, HTTP]
    layer = policy.parse_layer(stored, "project")
    effective = policy.effective([("project", layer)])
    assert effective.masked()["mcp_servers"][0]["env"][0]["value"] == "***"
    assert "s3cret-value" not in repr(effective)
