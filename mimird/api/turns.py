"""Agents at work: ``session.prompt``, ``session.cancel``, ``session.stop``,
``session.resume``, ``session.logs``, and the permission requests agents park
(``permission.list``, ``permission.respond``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import trio

from mimird.agents import permissions
from mimird.agents.host import AgentHost
from mimird.agents.manager import AgentManager
from mimird.agents.presets import resolve_command
from mimird.agents.stderr_log import BoundedLog
from mimird.api.sessions import SessionService
from mimird.errors import InvalidParams, InvalidState
from mimird.processes import SESSION_ENV
from mimird.rpc.registry import CallContext, Registry
from mimird.secrets import scrub
from mimird.sessions import records as sessions
from mimird.sessions.records import SessionRow
from mimird.wire.errors import ErrorCode
from mimird.wire.types import (
    PermissionAnswered,
    PermissionList,
    PermissionListParams,
    PermissionRequest,
    PermissionRespondParams,
    PromptResult,
    Session,
    SessionCancelled,
    SessionLogs,
    SessionLogsParams,
    SessionPromptParams,
    SessionRefParams,
)

#: Statuses from which a prompt starts the agent by itself.
_STARTS_ON_PROMPT = frozenset({"created", "stopped", "interrupted"})
#: Statuses from which session.resume starts the agent.
_RESUMABLE = frozenset({"created", "stopped", "interrupted", "failed", "budget_exceeded"})


def _prompt_text(content: list[dict[str, Any]]) -> str:
    parts = []
    for block in content:
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif block.get("type") in ("resource_link", "resource"):
            uri = block.get("uri") or (block.get("resource") or {}).get("uri")
            if isinstance(uri, str):
                parts.append(uri)
    return "\n".join(parts)


class TurnService:
    def __init__(self, sessions_: SessionService, agents: AgentManager) -> None:
        self._sessions = sessions_
        self._agents = agents
        self._store = agents.store
        self._settings = agents.settings

    def register(self, registry: Registry) -> None:
        busy_errors = (
            ErrorCode.NOT_FOUND,
            ErrorCode.INVALID_STATE,
            ErrorCode.AGENT_UNAVAILABLE,
            ErrorCode.BUSY,
        )
        registry.add(
            "session.prompt",
            self.prompt,
            params=SessionPromptParams,
            result=PromptResult,
            summary="Send a prompt to the session's agent; answers when the turn ends.",
            description=(
                "Give text or content (ACP content blocks). The prompt is journaled, the agent "
                "is started first if the session is created, stopped or interrupted, and the "
                "turn's progress flows as events (subscribe). A prompt while a turn runs is "
                "refused as busy (not queued)."
            ),
            mutating=True,
            concurrent=True,
            errors=busy_errors,
        )
        registry.add(
            "session.cancel",
            self.cancel,
            params=SessionRefParams,
            result=SessionCancelled,
            summary="Cancel the running turn: session/cancel to the agent, pending permission "
            "requests answered cancelled; an agent that does not end the turn within "
            "[supervision] cancel_grace_s is restarted.",
            mutating=True,
            errors=(ErrorCode.NOT_FOUND,),
        )
        registry.add(
            "session.stop",
            self.stop,
            params=SessionRefParams,
            result=Session,
            summary="Stop the session's agent (its turn cancelled first): stdin closed, then "
            "SIGTERM, then SIGKILL to its whole process group.",
            mutating=True,
            concurrent=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
        )
        registry.add(
            "session.resume",
            self.resume,
            params=SessionRefParams,
            result=Session,
            summary="Start the session's agent again; answers once it is ready.",
            description=(
                "Uses ACP session/load when the agent supports it (the conversation goes on), "
                "else a new ACP session in the same workspace. The journal keeps the whole "
                "history either way."
            ),
            mutating=True,
            concurrent=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE, ErrorCode.AGENT_UNAVAILABLE),
        )
        registry.add(
            "session.logs",
            self.logs,
            params=SessionLogsParams,
            result=SessionLogs,
            summary="The last lines the session's agent wrote on stderr.",
            errors=(ErrorCode.NOT_FOUND,),
        )
        registry.add(
            "permission.list",
            self.permission_list,
            params=PermissionListParams,
            result=PermissionList,
            summary="Permission requests agents are waiting on, oldest first.",
            errors=(ErrorCode.NOT_FOUND,),
        )
        registry.add(
            "permission.respond",
            self.permission_respond,
            params=PermissionRespondParams,
            result=PermissionAnswered,
            summary="Answer a pending permission request by option id or kind; the first "
            "answer wins.",
            mutating=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
        )

    # ---- starting agents --------------------------------------------------------------

    async def _ensure_host(self, row: SessionRow, *, allowed: frozenset[str]) -> AgentHost:
        async with self._agents.lock(row.id):
            host = self._agents.get(row.id)
            if host is not None:
                return host
            row = await self._store.read(sessions.get, row.id)
            if row.status not in allowed:
                raise InvalidState(
                    f"cannot start the agent of session {row.id}: it is {row.status}"
                    + (" ('mimirctl resume' starts it again)" if row.status == "failed" else ""),
                    field="session",
                    id=row.id,
                    detail={"status": row.status},
                )
            self._sessions.refuse_drifted(row, "start the agent of")
            effective = await self._sessions.effective(row)
            kind = row.agent or effective.values["agent"]
            command = await trio.to_thread.run_sync(
                resolve_command,
                kind,
                self._settings.agents,
                {**effective.env(), SESSION_ENV: row.id},
            )
            resume = row.status != "created"
            return await self._agents.start(row, command, effective.secret_values(), resume=resume)

    # ---- methods ----------------------------------------------------------------------

    async def prompt(self, ctx: CallContext, params: SessionPromptParams) -> PromptResult:
        if (params.text is msgspec.UNSET) == (params.content is msgspec.UNSET):
            raise InvalidParams("give either text or content (not both)", field="text")
        if params.content is not msgspec.UNSET:
            content = params.content
            for index, block in enumerate(content):
                if not isinstance(block.get("type"), str):
                    raise InvalidParams(
                        f"content[{index}] has no 'type'", field=f"content[{index}].type"
                    )
        else:
            assert isinstance(params.text, str)
            content = [{"type": "text", "text": params.text}]
        row = await self._sessions.find(params.session)
        host = await self._ensure_host(row, allowed=_STARTS_ON_PROMPT)
        result = await host.prompt(content, _prompt_text(content))
        return PromptResult(
            session=row.id,
            stop_reason=result.stop_reason,
            usage=result.usage,
            prompt_seq=result.prompt_seq,
            end_seq=result.end_seq,
        )

    async def cancel(self, ctx: CallContext, params: SessionRefParams) -> SessionCancelled:
        row = await self._sessions.find(params.session)
        if row.status == "preparing":
            # No agent yet: what runs is the setup command.
            return SessionCancelled(session=row.id, cancelled=self._sessions.cancel_setup(row.id))
        host = self._agents.get(row.id)
        if host is None or host.turn is None:
            return SessionCancelled(session=row.id, cancelled=False)
        await host.cancel()
        return SessionCancelled(session=row.id, cancelled=True)

    async def stop(self, ctx: CallContext, params: SessionRefParams) -> Session:
        row = await self._sessions.find(params.session)
        async with self._agents.lock(row.id):
            stopped = await self._agents.stop(row.id, reason="stopped")
            if stopped is not None:
                return stopped.to_wire()
            # No agent runs: a session that never started one is marked stopped too.
            row = await self._store.read(sessions.get, row.id)
            if row.status not in ("stopped", "failed"):
                row = await self._store.write(
                    sessions.transition, row.id, "stopped", action="stop", reason="stopped"
                )
            return row.to_wire()

    async def resume(self, ctx: CallContext, params: SessionRefParams) -> Session:
        row = await self._sessions.find(params.session)
        host = self._agents.get(row.id)
        if host is None:
            host = await self._ensure_host(row, allowed=_RESUMABLE)
        await host.wait_ready()
        row = await self._store.read(sessions.get, row.id)
        return row.to_wire()

    async def logs(self, ctx: CallContext, params: SessionLogsParams) -> SessionLogs:
        row = await self._sessions.find(params.session)
        path = self._agents.log_path(row.id)
        secrets = (await self._sessions.effective(row)).secret_values()
        lines = [
            scrub(line, secrets)
            for line in await trio.to_thread.run_sync(_tail, path, params.lines)
        ]
        return SessionLogs(session=row.id, path=str(path), lines=lines)

    async def permission_list(
        self, ctx: CallContext, params: PermissionListParams
    ) -> PermissionList:
        session_id = None
        if params.session is not msgspec.UNSET:
            session_id = (await self._sessions.find(params.session)).id
        pending = [
            PermissionRequest(
                id=p.id,
                session_id=p.session_id,
                tool_call=p.tool_call,
                options=p.options,
                requested_at=p.requested_at,
            )
            for p in self._agents.permissions.unanswered(session_id)
        ]
        return PermissionList(permissions=pending)

    async def permission_respond(
        self, ctx: CallContext, params: PermissionRespondParams
    ) -> PermissionAnswered:
        option_id = None if params.option_id is msgspec.UNSET else params.option_id
        kind = None if params.kind is msgspec.UNSET else params.kind
        if (option_id is None) == (kind is None):
            raise InvalidParams("give either option_id or kind (not both)", field="option_id")
        permission = self._agents.find_permission(params.permission)
        host = self._agents.get(permission.session_id)
        if host is None:
            raise InvalidState(
                f"the agent that asked permission {permission.id} is gone",
                field="permission",
                id=permission.id,
            )
        chosen = permissions.respond(permission, option_id, kind, f"client pid {ctx.peer.pid}")
        return PermissionAnswered(
            permission=permission.id, session_id=permission.session_id, option_id=chosen
        )


def _tail(path: Path, lines: int) -> list[str]:
    if not path.exists() and not path.with_name(path.name + ".1").exists():
        return []
    return BoundedLog(path).tail(lines)
