"""The ACP handshake: ``initialize``, then ``session/load`` (to go on with the
agent's earlier ACP session, when it can) or ``session/new``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mimird import __version__, mcp_servers
from mimird.agents.acp import INTERNAL_ERROR, AcpConnection, AcpError
from mimird.policy import Effective

#: The longest agent error kept (journaled and logged).
MAX_ERROR_CHARS: Final = 2000

ACP_PROTOCOL_VERSION: Final = 1
CLIENT_CAPABILITIES: Final = {
    "fs": {"readTextFile": True, "writeTextFile": True},
    "terminal": True,
}


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the agent said while starting its session."""

    #: ``initialize``'s result (``{}`` if it was not an object).
    init: dict[str, Any]
    capabilities: Any
    #: ``session/load``'s or ``session/new``'s result (``{}`` if not an object).
    session: dict[str, Any]
    acp_session_id: str | None
    #: Whether ``session/load`` continued the earlier ACP session.
    loaded: bool
    #: Why ``session/load`` failed: the agent's error, its message, code and data
    #: (bounded, not masked); None when it was not tried or worked.
    load_error: str | None = None


async def handshake(
    conn: AcpConnection,
    workspace: Path,
    *,
    load: str | None,
    replaying: Callable[[], AbstractContextManager[None]],
    config: Callable[[], Awaitable[Effective]] | None = None,
) -> Handshake:
    """Initialize the agent and start its ACP session in ``workspace``: load the
    session ``load`` if given and the agent can, else (or if loading fails) a new one.
    ``replaying()`` is held while ``session/load`` replays history; the session's
    ``mcp_servers`` (read from ``config()``) go with both as ACP's ``mcpServers``.

    Raises :class:`AcpError` (or ``TypeError`` for answers of the wrong shape) when
    the agent refuses, and :class:`~mimird.agents.acp.AcpConnectionClosed` when it
    goes away. Cancellation: requests still waiting are abandoned (the connection
    sends ``$/cancel_request``); the agent is left half started, for the caller
    to stop."""
    servers = [] if config is None else mcp_servers.for_acp((await config()).values["mcp_servers"])
    init = await conn.request(
        "initialize",
        {
            "protocolVersion": ACP_PROTOCOL_VERSION,
            "clientCapabilities": CLIENT_CAPABILITIES,
            "clientInfo": {"name": "mimir", "title": "Mimir", "version": __version__},
        },
    )
    init = init if isinstance(init, dict) else {}
    capabilities = init.get("agentCapabilities") or {}
    can_load = bool(isinstance(capabilities, dict) and capabilities.get("loadSession"))
    loaded = False
    load_error: str | None = None
    acp_session_id = load
    result: Any = None
    if load and can_load:
        with replaying():
            try:
                result = await conn.request(
                    "session/load",
                    {"sessionId": load, "cwd": str(workspace), "mcpServers": servers},
                )
                loaded = True
            except AcpError as exc:
                load_error = describe_error(exc)
                result = None
    if not loaded:
        result = await conn.request("session/new", {"cwd": str(workspace), "mcpServers": servers})
        if not isinstance(result, dict) or not isinstance(result.get("sessionId"), str):
            raise AcpError(INTERNAL_ERROR, f"session/new answered without a sessionId: {result!r}")
        acp_session_id = result["sessionId"]
    return Handshake(
        init=init,
        capabilities=capabilities,
        session=result if isinstance(result, dict) else {},
        acp_session_id=acp_session_id,
        loaded=loaded,
        load_error=load_error,
    )


def describe_error(exc: AcpError) -> str:
    """An agent's error as one line: its message, code and data (as JSON), at most
    :data:`MAX_ERROR_CHARS` characters (gemini-cli says why a load failed in ``data``)."""
    text = f"{exc.message} (code {exc.code})"
    if exc.data is not None:
        try:
            data = json.dumps(exc.data, ensure_ascii=False, default=repr)
        except ValueError:  # a circular structure cannot come from JSON, but be safe
            data = repr(exc.data)
        text += f"; data: {data}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text
