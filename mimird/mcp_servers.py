"""The ``mcp_servers`` configuration key: the MCP servers an agent gets in its ACP
``session/new`` and ``session/load`` (``mcpServers``), as ACP v1 shapes them.

A server is a table: stdio ``{name, command, args, env}`` (no ``type``), or
``{type = "http" | "sse", name, url, headers}``. ``env`` and ``headers`` are lists
of ``{name, value}``; a value may be given as ``{value = "...", secret = true}``
(as the ``env`` key's values), and is then shown as ``"***"`` and scrubbed from
everything journaled, like a secret env value. Everything is bounded here: an
editor's (or a client's) servers are untrusted until checked.

Light like :mod:`mimird.policy`, which imports it: the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from mimird import config_values as cv

#: The most servers a session may give its agent.
MAX_SERVERS: Final = 32
MAX_SERVER_NAME: Final = 200
MAX_COMMAND: Final = 4096
MAX_ARGS: Final = 256
MAX_ARG: Final = 10_000
#: The most entries of ``env`` or ``headers``.
MAX_PAIRS: Final = 256
MAX_URL: Final = 8192
MAX_HEADER_VALUE: Final = 8192
MASK: Final = "***"

_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_URL: Final = re.compile(r"https?://[^\s\x00-\x1f\x7f]+")
_STDIO_FIELDS: Final = ("name", "command", "args", "env")
_REMOTE_FIELDS: Final = ("type", "name", "url", "headers")


def parse(key: str, value: Any) -> list[dict[str, Any]]:
    """Check the key's value (``cv.Invalid`` naming what is wrong; never a value)."""
    if not isinstance(value, list):
        raise cv.Invalid(key, f"expected a list of servers, got {cv.kind(value)}")
    if len(value) > MAX_SERVERS:
        raise cv.Invalid(key, f"more than {MAX_SERVERS} servers")
    servers = [_server(f"{key}[{index}]", item) for index, item in enumerate(value)]
    names = [s["name"] for s in servers]
    if len(set(names)) != len(names):
        raise cv.Invalid(key, "two servers have the same name")
    return servers


def _server(where: str, item: Any) -> dict[str, Any]:
    server = cv.table(where, item)
    kind = server.get("type")
    fields = _STDIO_FIELDS if kind is None else _REMOTE_FIELDS
    if kind is not None and kind not in ("http", "sse"):
        raise cv.Invalid(f"{where}.type", 'expected "http" or "sse" (stdio servers have no type)')
    for field in server:
        if field not in fields:
            raise cv.Invalid(f"{where}.{cv.show(field)}", cv.unknown(field, fields, "field"))
    name = cv.text(f"{where}.name", server.get("name"), MAX_SERVER_NAME)
    if not name.strip() or not name.isprintable():
        raise cv.Invalid(f"{where}.name", "expected a printable, non-blank name")
    if kind is None:
        command = cv.text(f"{where}.command", server.get("command"), MAX_COMMAND)
        if not command.startswith("/"):
            raise cv.Invalid(f"{where}.command", "expected an absolute path")
        args = server.get("args", [])
        if not isinstance(args, list) or len(args) > MAX_ARGS:
            raise cv.Invalid(f"{where}.args", f"expected a list of at most {MAX_ARGS} strings")
        return {
            "name": name,
            "command": command,
            "args": [cv.text(f"{where}.args[{i}]", a, MAX_ARG) for i, a in enumerate(args)],
            "env": _pairs(f"{where}.env", server.get("env", []), _ENV_NAME, cv.MAX_VALUE_LENGTH),
        }
    url = cv.text(f"{where}.url", server.get("url"), MAX_URL)
    if not _URL.fullmatch(url):
        raise cv.Invalid(f"{where}.url", "expected an http:// or https:// URL")
    headers = _pairs(f"{where}.headers", server.get("headers", []), _HEADER_NAME, MAX_HEADER_VALUE)
    return {"type": kind, "name": name, "url": url, "headers": headers}


def _pairs(where: str, value: Any, pattern: re.Pattern[str], limit: int) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_PAIRS:
        raise cv.Invalid(where, f"expected a list of at most {MAX_PAIRS} {{name, value}} tables")
    pairs = []
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        entry = cv.table(at, item)
        for field in entry:
            if field not in ("name", "value"):
                raise cv.Invalid(f"{at}.{cv.show(field)}", cv.unknown(field, ("name", "value")))
        name = cv.name(f"{at}.name", entry.get("name"), pattern, "a name")
        pairs.append({"name": name, "value": _value(f"{at}.value", entry.get("value"), limit)})
    return pairs


def _value(where: str, value: Any, limit: int) -> str | dict[str, Any]:
    # The value itself never goes into a message: it may be a secret.
    secret = False
    if isinstance(value, Mapping):
        for field in value:
            if field not in ("value", "secret"):
                raise cv.Invalid(
                    f"{where}.{cv.show(field)}", cv.unknown(field, ("value", "secret"))
                )
        secret = value.get("secret", False)
        if not isinstance(secret, bool):
            raise cv.Invalid(f"{where}.secret", f"expected true or false, got {cv.kind(secret)}")
        value = value.get("value")
    if not isinstance(value, str):
        raise cv.Invalid(where, f"expected a string, got {cv.kind(value)}")
    if len(value) > limit:
        raise cv.Invalid(where, f"longer than {limit} characters")
    if "\0" in value or "\r" in value or "\n" in value:
        raise cv.Invalid(where, "contains a NUL or line break")
    if secret and not value:
        raise cv.Invalid(where, "a secret value must not be empty")
    return {"value": value, "secret": True} if secret else value


# ---- using them ---------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value.get("secret"))


def _entries(servers: Any) -> list[Any]:
    """Every {name, value} entry of the servers (data as stored: maybe not valid)."""
    found: list[Any] = []
    for server in servers if isinstance(servers, list) else []:
        if isinstance(server, Mapping):
            for key in ("env", "headers"):
                entries = server.get(key)
                found.extend(entries if isinstance(entries, list) else [])
    return found


def secret_values(servers: Any) -> set[str]:
    """The secret values, to scrub from everything shown and journaled."""
    return {
        str(entry["value"]["value"])
        for entry in _entries(servers)
        if isinstance(entry, Mapping) and _is_secret(entry.get("value"))
    } - {""}


def masked(servers: Any) -> Any:
    """The servers with each secret value shown as ``"***"``."""
    if not isinstance(servers, list):
        return servers
    shown = []
    for server in servers:
        if not isinstance(server, Mapping):
            shown.append(server)
            continue
        copy = dict(server)
        for key in ("env", "headers"):
            if isinstance(copy.get(key), list):
                copy[key] = [
                    {**e, "value": MASK}
                    if isinstance(e, Mapping) and _is_secret(e.get("value"))
                    else e
                    for e in copy[key]
                ]
        shown.append(copy)
    return shown


def keep_masked(new: Any, old: Any) -> Any:
    """``new`` with each value that is just the mask put back as the secret it stood
    for in ``old`` (same server name, same entry name): a client sending back what
    it was shown keeps the secrets."""
    if not isinstance(new, list) or not isinstance(old, list):
        return new
    secrets = {
        (server.get("name"), key, entry.get("name")): entry["value"]
        for server in old
        if isinstance(server, Mapping)
        for key in ("env", "headers")
        for entry in _list(server.get(key))
        if isinstance(entry, Mapping) and _is_secret(entry.get("value"))
    }
    kept = []
    for server in new:
        if not isinstance(server, Mapping):
            kept.append(server)
            continue
        copy = dict(server)
        for key in ("env", "headers"):
            if isinstance(copy.get(key), list):
                copy[key] = [
                    {**e, "value": secrets[(copy.get("name"), key, e.get("name"))]}
                    if isinstance(e, Mapping)
                    and e.get("value") == MASK
                    and (copy.get("name"), key, e.get("name")) in secrets
                    else e
                    for e in copy[key]
                ]
        kept.append(copy)
    return kept


def for_acp(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The servers as ACP's ``mcpServers``: values in clear (stdio: no ``type``)."""

    def clear(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [
            {
                "name": e["name"],
                "value": e["value"]["value"] if _is_secret(e["value"]) else e["value"],
            }
            for e in entries
        ]

    acp = []
    for server in servers:
        if server.get("type") is None:
            acp.append(
                {
                    "name": server["name"],
                    "command": server["command"],
                    "args": list(server["args"]),
                    "env": clear(server["env"]),
                }
            )
        else:
            acp.append(
                {
                    "type": server["type"],
                    "name": server["name"],
                    "url": server["url"],
                    "headers": clear(server["headers"]),
                }
            )
    return acp
