"""Params and result of ``agent.probe`` (kept apart from :mod:`.types`)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from mimird.wire.types import AgentName, Params, Result


class AgentProbeParams(Params):
    #: The agent kind (as agent.list names it).
    kind: AgentName
    #: How long the agent has to answer ``initialize``.
    timeout_s: Annotated[float, Meta(ge=0.1, le=120)] = 10.0


class AgentProbe(Result):
    kind: str
    #: The command line started (in an empty temporary directory).
    command: list[str]
    #: Whether the agent answered initialize with the protocol Mimir speaks.
    ok: bool
    #: Whether it answered initialize at all (also with an error).
    answered: bool
    duration_ms: float
    protocol_version: int | None = None
    #: What the agent says it is (``agentInfo``), cut to 200 characters.
    agent_name: str | None = None
    agent_version: str | None = None
    #: Whether it can load earlier sessions (``agentCapabilities.loadSession``).
    load_session: bool | None = None
    #: What is wrong, when not ok (a timeout, an exit, an error answer).
    problem: str | None = None
