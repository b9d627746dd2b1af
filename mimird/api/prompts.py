"""Agents at work: ``session.prompt``, ``session.cancel``, ``session.stop``,
``session.resume`` and ``session.logs``. Each decodes its params, calls the agent
manager (:mod:`mimird.agents.manager`) and encodes what it returns."""

from __future__ import annotations

from typing import Any, Final

import msgspec
import structlog
import trio

from mimird import templates
from mimird.agents.manager import AgentManager
from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.errors import InvalidParams, MimirError
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions.records import SessionRow
from mimird.wire.errors import ErrorCode
from mimird.wire.prompts import PromptSubmitted, SessionPromptParams
from mimird.wire.types import (
    PromptResult,
    Session,
    SessionCancelled,
    SessionCompleteParams,
    SessionLogs,
    SessionLogsParams,
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


#: The members each ACP v1 content block type requires, all strings (the agent gets the
#: blocks as given: one it cannot read would fail the turn, or be read wrongly).
_BLOCK_MEMBERS: Final = {
    "text": ("text",),
    "image": ("data", "mimeType"),
    "audio": ("data", "mimeType"),
    "resource_link": ("uri", "name"),
    "resource": ("resource",),
}


def _block_problem(block: dict[str, Any]) -> tuple[str, str] | None:
    """What makes ``block`` not an ACP v1 content block: (member, what is wrong)."""
    kind = block.get("type")
    if not isinstance(kind, str):
        return "type", "has no 'type'"
    members = _BLOCK_MEMBERS.get(kind)
    if members is None:
        known = ", ".join(_BLOCK_MEMBERS)
        return "type", f"has type {kind[:50]!r}; ACP content blocks are {known}"
    if kind != "resource":
        for member in members:
            if not isinstance(block.get(member), str):
                return member, f"({kind}) needs '{member}', a string"
    else:
        resource = block.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("uri"), str):
            return "resource", "(resource) needs 'resource', an object with a string 'uri'"
        if [isinstance(resource.get(k), str) for k in ("text", "blob")].count(True) != 1:
            return "resource", "(resource) needs 'resource.text' or 'resource.blob', a string"
    return None


def _content(params: SessionPromptParams) -> list[dict[str, Any]]:
    """The prompt as ACP content blocks, from ``text`` or ``content`` (a template is
    rendered by the caller)."""
    given = [f for f in ("text", "content", "template") if getattr(params, f) is not msgspec.UNSET]
    if len(given) != 1:
        raise InvalidParams(
            "give exactly one of text, content or template (with vars)"
            + (f", not {' and '.join(given)}" if given else ""),
            field="template" if len(given) > 1 and "template" in given else "text",
        )
    if params.vars is not msgspec.UNSET and params.template is msgspec.UNSET:
        raise InvalidParams("vars go with template (give template too)", field="vars")
    if params.template is not msgspec.UNSET:
        return []
    if params.content is not msgspec.UNSET:
        for index, block in enumerate(params.content):
            problem = _block_problem(block)
            if problem is not None:
                member, what = problem
                where = f"content[{index}]" + (f".{member}" if member else "")
                raise InvalidParams(f"{where} {what}", field=where)
        return params.content
    assert isinstance(params.text, str)
    return [{"type": "text", "text": params.text}]


async def render_for(
    sessions_: SessionService, row: SessionRow, name: str, vars_: dict[str, str]
) -> str:
    """The prompt the session's template ``name`` makes with ``vars_`` (see
    :func:`mimird.templates.render`; raises ``InvalidParams``).

    Cancellation: nothing happened."""
    effective = await sessions_.effective(row)
    return templates.render(
        effective.values["prompt_templates"],
        effective.sources,
        name,
        vars_,
        templates.builtins_of(row),
    )


_method = MethodTable()
log = structlog.get_logger("mimird.api.prompts")


#: What session.prompt and session.submit may answer besides invalid params.
_PROMPT_ERRORS: Final = (
    ErrorCode.NOT_FOUND,
    ErrorCode.INVALID_STATE,
    ErrorCode.AGENT_UNAVAILABLE,
    ErrorCode.BUDGET_EXCEEDED,
    ErrorCode.BUSY,
)


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
            "Give text, content (ACP content blocks), or template with vars (a prompt "
            "template of the session's config, filled in). The prompt is journaled, the agent "
            "is started first if the session is created, stopped or interrupted, and the "
            "turn's progress flows as events (subscribe). A prompt while a turn runs is "
            "refused as busy (not queued); a prompt to a session whose budget is used up "
            "is refused as budget_exceeded."
        ),
        mutating=True,
        concurrent=True,
        errors=_PROMPT_ERRORS,
    )
    async def prompt(self, ctx: CallContext, params: SessionPromptParams) -> PromptResult:
        """Cancellation: as :meth:`AgentManager.prompt` (``turn_ended`` is journaled)."""
        row, content, template = await self._prepare(params)
        result = await self._agents.prompt(
            row, self._sessions, content, _prompt_text(content), template=template
        )
        return PromptResult(
            session=row.id,
            stop_reason=result.stop_reason,
            usage=result.usage,
            prompt_seq=result.prompt_seq,
            end_seq=result.end_seq,
        )

    async def _prepare(
        self, params: SessionPromptParams
    ) -> tuple[SessionRow, list[dict[str, Any]], str | None]:
        """The session, the prompt's content blocks and its template's name.

        Cancellation: nothing happened."""
        content = _content(params)
        row = await self._sessions.find(params.session)
        template = None
        if params.template is not msgspec.UNSET:
            template = params.template
            vars_ = params.vars if params.vars is not msgspec.UNSET else {}
            text = await render_for(self._sessions, row, template, vars_)
            content = [{"type": "text", "text": text}]
        return row, content, template

    @_method(
        "session.submit",
        params=SessionPromptParams,
        result=PromptSubmitted,
        summary=(
            "Send a prompt to the session's agent; answers once the prompt is journaled, "
            "and the turn goes on without the caller."
        ),
        description=(
            "As session.prompt (same params, same checks and errors), but the turn does not "
            "belong to the call: the answer carries the prompt's seq, the turn's progress "
            "and its end (turn_ended) are events (subscribe), and the turn goes on when the "
            "caller disconnects (session.cancel ends it). For clients that must not take "
            "the turn with them: editors through 'mimirctl acp'."
        ),
        mutating=True,
        concurrent=True,
        errors=_PROMPT_ERRORS,
    )
    async def submit(self, ctx: CallContext, params: SessionPromptParams) -> PromptSubmitted:
        """Cancellation: before the prompt is journaled, nothing happened (the agent
        may have been started); after, the turn is the agent manager's and goes on."""
        row, content, template = await self._prepare(params)
        prompt_seq: int = await self._agents.nursery.start(self._detached, row, content, template)
        return PromptSubmitted(session=row.id, prompt_seq=prompt_seq)

    async def _detached(
        self,
        row: SessionRow,
        content: list[dict[str, Any]],
        template: str | None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """One turn, in the agent manager's nursery once its prompt is journaled
        (``task_status.started(prompt_seq)``). Before that, an error is the caller's;
        after, it is in the journal (``turn_ended``) and only logged here: nothing
        may leave the manager's nursery."""
        journaled = False

        def started(prompt_seq: int) -> None:
            nonlocal journaled
            journaled = True
            task_status.started(prompt_seq)

        try:
            await self._agents.prompt(
                row,
                self._sessions,
                content,
                _prompt_text(content),
                template=template,
                journaled=started,
            )
        except MimirError as exc:
            if not journaled:
                raise
            log.info("submitted_turn_failed", session_id=row.id, error=exc.code.kind)
        except Exception:
            if not journaled:
                raise
            log.exception("submitted_turn_crashed", session_id=row.id)

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
        "session.complete",
        params=SessionCompleteParams,
        result=Session,
        summary=(
            "Say the session is done: its agent is stopped and it becomes completed, with "
            "completed_at; the worktree and branch are kept."
        ),
        description=(
            "The note is journaled (session_completed) and found by search. Refused while "
            "a turn runs (cancel it first). session.resume goes on with a completed "
            "session; archive and delete take it as any other."
        ),
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def complete(self, ctx: CallContext, params: SessionCompleteParams) -> Session:
        """Cancellation: as :meth:`AgentManager.complete_session`."""
        row = await self._sessions.find(params.session)
        note = None if params.note is msgspec.UNSET else params.note
        done = await self._agents.complete_session(row, self._sessions, note, by="client")
        return done.to_wire()

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
