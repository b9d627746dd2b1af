"""Agents at work: ``session.prompt``, ``session.cancel``, ``session.stop``,
``session.resume`` and ``session.logs``. Each decodes its params, calls the agent
manager (:mod:`mimird.agents.manager`) and encodes what it returns."""

from __future__ import annotations

from typing import Any

import msgspec

from mimird.agents.manager import AgentManager
from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.errors import InvalidParams
from mimird.rpc.registry import CallContext, Registry
from mimird.wire.errors import ErrorCode
from mimird.wire.types import (
    PromptResult,
    Session,
    SessionCancelled,
    SessionLogs,
    SessionLogsParams,
    SessionPromptParams,
    SessionRefParams,
)


def _prompt_text(content: list[dict[str, Any]]) -> str:
    """What of a prompt is indexed for search: its texts and the URIs it names."""
    parts = []
    for block in content:
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif block.get("type") in ("resource_link", "resource"):
            uri = block.get("uri") or (block.get("resource") or {}).get("uri")
            if isinstance(uri, str):
                parts.append(uri)
    return "\n".join(parts)


def _content(params: SessionPromptParams) -> list[dict[str, Any]]:
    """The prompt as ACP content blocks, from ``text`` or ``content``."""
    if (params.text is msgspec.UNSET) == (params.content is msgspec.UNSET):
        raise InvalidParams("give either text or content (not both)", field="text")
    if params.content is not msgspec.UNSET:
        for index, block in enumerate(params.content):
            if not isinstance(block.get("type"), str):
                raise InvalidParams(
                    f"content[{index}] has no 'type'", field=f"content[{index}].type"
                )
        return params.content
    assert isinstance(params.text, str)
    return [{"type": "text", "text": params.text}]


_method = MethodTable()


class PromptService:
    def __init__(self, sessions_: SessionService, agents: AgentManager) -> None:
        self._sessions = sessions_
        self._agents = agents

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "session.prompt",
        params=SessionPromptParams,
        result=PromptResult,
        summary="Send a prompt to the session's agent; answers when the turn ends.",
        description=(
            "Give text or content (ACP content blocks). The prompt is journaled, the agent "
            "is started first if the session is created, stopped or interrupted, and the "
            "turn's progress flows as events (subscribe). A prompt while a turn runs is "
            "refused as busy (not queued); a prompt to a session whose budget is used up "
            "is refused as budget_exceeded."
        ),
        mutating=True,
        concurrent=True,
        errors=(
            ErrorCode.NOT_FOUND,
            ErrorCode.INVALID_STATE,
            ErrorCode.AGENT_UNAVAILABLE,
            ErrorCode.BUDGET_EXCEEDED,
            ErrorCode.BUSY,
        ),
    )
    async def prompt(self, ctx: CallContext, params: SessionPromptParams) -> PromptResult:
        """Cancellation: as :meth:`AgentManager.prompt` (``turn_ended`` is journaled)."""
        content = _content(params)
        row = await self._sessions.find(params.session)
        result = await self._agents.prompt(row, self._sessions, content, _prompt_text(content))
        return PromptResult(
            session=row.id,
            stop_reason=result.stop_reason,
            usage=result.usage,
            prompt_seq=result.prompt_seq,
            end_seq=result.end_seq,
        )

    @_method(
        "session.cancel",
        params=SessionRefParams,
        result=SessionCancelled,
        summary=(
            "Cancel the running turn: session/cancel to the agent, pending permission "
            "requests answered cancelled; an agent that does not end the turn within "
            "[supervision] cancel_grace_s is restarted."
        ),
        mutating=True,
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def cancel(self, ctx: CallContext, params: SessionRefParams) -> SessionCancelled:
        """Cancellation: as :meth:`AgentManager.cancel_turn`."""
        row = await self._sessions.find(params.session)
        if row.status == "preparing":
            # No agent yet: what runs is the setup command.
            return SessionCancelled(session=row.id, cancelled=self._sessions.cancel_setup(row.id))
        cancelled = await self._agents.cancel_turn(row.id)
        return SessionCancelled(session=row.id, cancelled=cancelled)

    @_method(
        "session.stop",
        params=SessionRefParams,
        result=Session,
        summary=(
            "Stop the session's agent (its turn cancelled first): stdin closed, then "
            "SIGTERM, then SIGKILL to its whole process group."
        ),
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def stop(self, ctx: CallContext, params: SessionRefParams) -> Session:
        """Cancellation: as :meth:`AgentManager.stop_session`."""
        row = await self._sessions.find(params.session)
        return (await self._agents.stop_session(row.id)).to_wire()

    @_method(
        "session.resume",
        params=SessionRefParams,
        result=Session,
        summary="Start the session's agent again; answers once it is ready.",
        description=(
            "Uses ACP session/load when the agent supports it (the conversation goes on), "
            "else a new ACP session in the same workspace. The journal keeps the whole "
            "history either way. A budget_exceeded session resumes once its budget allows "
            "more (else budget_exceeded)."
        ),
        mutating=True,
        concurrent=True,
        errors=(
            ErrorCode.NOT_FOUND,
            ErrorCode.INVALID_STATE,
            ErrorCode.AGENT_UNAVAILABLE,
            ErrorCode.BUDGET_EXCEEDED,
        ),
    )
    async def resume(self, ctx: CallContext, params: SessionRefParams) -> Session:
        """Cancellation: as :meth:`AgentManager.resume` (the agent goes on starting)."""
        row = await self._sessions.find(params.session)
        return (await self._agents.resume(row, self._sessions)).to_wire()

    @_method(
        "session.logs",
        params=SessionLogsParams,
        result=SessionLogs,
        summary="The last lines the session's agent wrote on stderr.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def logs(self, ctx: CallContext, params: SessionLogsParams) -> SessionLogs:
        """Cancellation: nothing happened."""
        row = await self._sessions.find(params.session)
        secrets = (await self._sessions.effective(row)).secret_values()
        path, lines = await self._agents.stderr_tail(row.id, params.lines, secrets)
        return SessionLogs(session=row.id, path=str(path), lines=lines)
