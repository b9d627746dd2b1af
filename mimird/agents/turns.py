"""Prompt turns: one ``session/prompt`` at a time per agent, from the journaled
prompt to the journaled ``turn_ended``, with ``session.cancel`` and a watchdog for
agents that do not end a cancelled turn.

Whatever ends a turn (the agent's answer, an error answer, the agent exiting, a
cancel, or the caller cancelled at any await) ``turn_ended`` is journaled once and
the session leaves ``running``/``awaiting_permission``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgspec
import structlog
import trio

from mimird import policy
from mimird.agents import handoff, turn_files, usage
from mimird.agents.acp import AcpConnection, AcpConnectionClosed, AcpError
from mimird.agents.budget import Guard
from mimird.agents.permissions import CANCELLED, PermissionRegistry, answer
from mimird.agents.recorder import Recorder
from mimird.agents.updates import Updates
from mimird.config import SupervisionSection
from mimird.errors import AgentUnavailable, Busy, InvalidParams, InvalidState
from mimird.sessions import records as sessions
from mimird.sessions import usage as stored
from mimird.wire import events
from mimird.wire.usage import Usage

log = structlog.get_logger("mimird.agents.turns")

#: An agent's stopReason is kept (journaled, answered) up to this many characters.
STOP_REASON_CHARS: Final = 64

#: How long the shielded cleanup of a cancelled prompt may take (telling the
#: agent, journaling ``turn_ended``).
CLEANUP_TIMEOUT_S: Final = 5.0
#: How long telling the agent ``session/cancel`` may wait for its stdin.
CANCEL_NOTIFY_TIMEOUT_S: Final = 1.0


@dataclass(eq=False)
class Turn:
    started_at: float = field(default_factory=trio.current_time)
    cancel_requested: bool = False
    #: Whether session/prompt went out (a cancel before it ends the turn at once).
    sent: bool = False
    #: Whether turn_ended is journaled.
    ended: bool = False
    #: Whether the turn is ending (its turn_ended is being or has been journaled).
    ending: bool = False
    #: Why Mimir cancelled the turn itself (``turn_timeout``, ``budget_exceeded``).
    reason: str | None = None
    done: trio.Event = field(default_factory=trio.Event)
    #: When the prompt was journaled (the turn's active time runs from there).
    prompted_at: float | None = None
    #: The workspace when the turn started (see :mod:`.turn_files`).
    files_start: turn_files.Start | None = None


@dataclass(frozen=True, slots=True)
class TurnResult:
    stop_reason: str
    usage: Usage | None
    prompt_seq: int
    end_seq: int
    #: Permission requests still unanswered when the turn ended (then answered cancelled).
    pending_permissions: int = 0


async def _builtin() -> policy.Effective:
    return policy.effective([])


class AgentLink(Protocol):
    """What turns need of the agent's host."""

    @property
    def acp_session_id(self) -> str | None: ...

    @property
    def conn(self) -> AcpConnection | None: ...

    @property
    def agent_state(self) -> dict[str, Any]: ...

    async def wait_ready(self) -> AcpConnection: ...

    async def restart_unresponsive(self, grace: float) -> None: ...


#: The content blocks a prompt may hold only when the agent's ``promptCapabilities``
#: say so (ACP v1: every agent takes ``text`` and ``resource_link``).
GATED_BLOCKS: Final = {"image": "image", "audio": "audio", "resource": "embeddedContext"}


def check_prompt_capabilities(content: list[Any], capabilities: Any) -> None:
    """Raise :class:`InvalidParams` for a block of ``content`` that the agent (its
    ``agentCapabilities``) did not say it accepts: ACP forbids sending it. Turns check
    each prompt once the agent is ready, before it is journaled."""
    prompt = capabilities.get("promptCapabilities") if isinstance(capabilities, dict) else None
    accepted = prompt if isinstance(prompt, dict) else {}
    for index, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        capability = GATED_BLOCKS.get(kind) if isinstance(kind, str) else None
        if capability is not None and accepted.get(capability) is not True:
            raise InvalidParams(
                f"content[{index}] is a {kind} block, but the session's agent does not accept "
                f"them (its promptCapabilities.{capability} is not true); send text or "
                "resource_link blocks instead",
                field=f"content[{index}].type",
            )


class Turns:
    """The turns of one agent."""

    def __init__(
        self,
        recorder: Recorder,
        permissions: PermissionRegistry,
        updates: Updates,
        options: SupervisionSection,
        nursery: trio.Nursery,
        agent: AgentLink,
        files: turn_files.TurnFiles | None = None,
    ) -> None:
        self._recorder = recorder
        self._permissions = permissions
        self._updates = updates
        self._options = options
        self._nursery = nursery
        self._agent = agent
        self._files = files
        self.current: Turn | None = None
        self.guard = Guard(recorder)
        #: The earlier conversation is due before the next prompt (set by the host
        #: when the agent started without it), until a prompt carries it.
        self.handoff: handoff.Due | None = None

    @property
    def session_id(self) -> str:
        return self._recorder.session_id

    async def prompt(
        self,
        content: list[Any],
        text: str,
        *,
        template: str | None = None,
        journaled: Callable[[int], None] | None = None,
    ) -> TurnResult:
        """Journal the prompt, send it to the agent (starting first if needed) and
        return once the turn ended; ``journaled(prompt_seq)`` is called once the
        prompt is in the journal (``session.submit`` answers then). Raises
        :class:`Busy` while another turn runs, :class:`AgentUnavailable` when the
        agent is gone or answered with an error.

        Cancellation: before the prompt is journaled, nothing happened. After, the
        agent is told (``$/cancel_request`` and ``session/cancel``), pending
        permission requests are answered ``cancelled``, and ``turn_ended`` (stop
        reason ``cancelled``) is journaled and the session moved to ``idle``, in a
        shielded cleanup bounded by :data:`CLEANUP_TIMEOUT_S`."""
        if self.current is not None:
            raise Busy(
                f"session {self.session_id} is running a turn; wait for it to end or cancel it "
                "('mimirctl cancel')",
                field="session",
                id=self.session_id,
            )
        turn = self.current = Turn()
        prompt_seq: int | None = None
        try:
            conn = await self._agent.wait_ready()
            check_prompt_capabilities(content, self._agent.agent_state.get("capabilities"))
            if self._files is not None:
                turn.files_start = await self._files.start()
            await self._recorder.flush()
            due = self.handoff
            prompt_seq = await self._recorder.write(
                sessions.prompt_started,
                self.session_id,
                events.Prompt(content=self._recorder.scrub_value(content), template=template),
                text=self._recorder.scrub(text),
            )
            assert prompt_seq is not None
            self._recorder.journal.metrics.turn_started()
            if journaled is not None:
                journaled(prompt_seq)
            turn.prompted_at = trio.current_time()
            if due is not None:
                content = await self._with_handoff(due, prompt_seq, content)
            timeout = await self.guard.start_turn()
            if timeout is not None:
                self._nursery.start_soon(self._deadline, turn, timeout)
            if turn.cancel_requested:  # while it waited for the agent or the journal
                return await self._end(turn, prompt_seq, "cancelled", None, None)
            return await self._send(turn, conn, prompt_seq, content)
        except BaseException as exc:
            if prompt_seq is not None and not turn.ended:
                # Cancelled (or failed) at an await after the prompt was journaled.
                with trio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                    await self._abandon(turn, prompt_seq, exc)
            raise
        finally:
            turn.done.set()
            if self.current is turn:
                self.current = None

    async def wait_ending_turn(self) -> None:
        """Wait, at most :data:`CLEANUP_TIMEOUT_S`, for a turn whose ``turn_ended`` is
        journaled to finish ending (its budget check): a client that saw
        ``turn_ended`` may prompt again at once, and must not be told "busy".

        Cancellation: nothing changed."""
        turn = self.current
        if turn is not None and turn.ending:
            with trio.move_on_after(CLEANUP_TIMEOUT_S):
                await turn.done.wait()

    async def _with_handoff(
        self, due: handoff.Due, prompt_seq: int, content: list[Any]
    ) -> list[Any]:
        """``content`` preceded by the conversation before ``prompt_seq``, bounded by
        ``handoff_max_bytes``, and journaled (``handoff_sent``); once per fallback.

        Cancellation: the handoff is still due (the journaled event may be there)."""
        effective = await (self.guard.effective or _builtin)()
        max_bytes = effective.values["handoff_max_bytes"]
        found = None
        if max_bytes > 0:
            found = await self._recorder.store.read(
                handoff.history, self.session_id, prompt_seq, max_bytes, due.why
            )
        if self.handoff is due:
            self.handoff = None
        if found is None:
            return content
        await self._recorder.event(
            events.HandoffSent(
                bytes=found.size, turns=found.turns, cut=found.cut, reason=due.reason
            )
        )
        log.info(
            "handoff_sent",
            session_id=self.session_id,
            bytes=found.size,
            turns=found.turns,
            cut=found.cut,
        )
        return [handoff.block(self.session_id, found, due.embedded), *content]

    async def _send(
        self, turn: Turn, conn: AcpConnection, prompt_seq: int, content: list[Any]
    ) -> TurnResult:
        try:
            # Queued synchronously: a session/cancel sent after this line follows it.
            turn.sent = True
            result = await conn.request(
                "session/prompt", {"sessionId": self._agent.acp_session_id, "prompt": content}
            )
        except AcpConnectionClosed:
            if turn.cancel_requested:
                return await self._end(turn, prompt_seq, "cancelled", None, None)
            await self._end(turn, prompt_seq, "error", None, "the agent exited during the turn")
            raise AgentUnavailable(
                f"the agent of session {self.session_id} exited during the turn; "
                "it is being restarted (see 'mimirctl logs')",
                field="session",
                id=self.session_id,
            ) from None
        except AcpError as exc:
            await self._end(turn, prompt_seq, "error", None, f"{exc.message} (code {exc.code})")
            raise AgentUnavailable(
                f"the agent answered the prompt with an error: {exc.message} (code {exc.code})",
                field="session",
                id=self.session_id,
                detail={"code": exc.code, "data": exc.data},
            ) from None
        result = result if isinstance(result, dict) else {}
        stop_reason = result.get("stopReason")
        if not isinstance(stop_reason, str):
            stop_reason = "cancelled" if turn.cancel_requested else "end_turn"
        stop_reason = stop_reason[:STOP_REASON_CHARS]  # ACP's are short: an agent's may not be
        reported = usage.of_prompt_result(result)
        return await self._end(turn, prompt_seq, stop_reason, reported, None)

    async def _abandon(self, turn: Turn, prompt_seq: int, exc: BaseException) -> None:
        """The caller of a turn went away (or its code failed) before the turn ended:
        tell the agent, and journal the end."""
        cancelled = isinstance(exc, trio.Cancelled)
        turn.cancel_requested = True
        conn = self._agent.conn
        if conn is not None and turn.sent and not conn.closed:
            with (
                contextlib.suppress(AcpConnectionClosed),
                trio.move_on_after(CANCEL_NOTIFY_TIMEOUT_S),
            ):
                await conn.notify("session/cancel", {"sessionId": self._agent.acp_session_id})
        log.info(
            "turn_abandoned",
            session_id=self.session_id,
            error=None if cancelled else repr(exc),
        )
        await self._end(
            turn,
            prompt_seq,
            "cancelled" if cancelled else "error",
            None,
            None if cancelled else f"internal error in mimird: {exc!r}",
        )

    async def _end(
        self,
        turn: Turn,
        prompt_seq: int,
        stop_reason: str,
        reported: Usage | None,
        error: str | None,
    ) -> TurnResult:
        turn.ending = True
        await self._updates.flush_message()
        # Counted from the connection too: a request read just before the answer to the
        # prompt may not have reached the registry yet.
        conn = self._agent.conn
        pending = max(
            len(self._permissions.unanswered(self.session_id)),
            0 if conn is None else conn.handling("session/request_permission"),
        )
        self._permissions.cancel_session(self.session_id, "turn_ended")
        used = self.guard.meter.end_turn(reported)
        active_s = trio.current_time() - (turn.prompted_at or trio.current_time())
        ended = events.TurnEnded(
            stop_reason=stop_reason, usage=used, error=error, reason=turn.reason
        )
        text = None
        if self._files is not None:
            changes = await self._files.changes(turn.files_start)
            files = turn_files.masked(changes.files, self._recorder.scrub)
            ended = msgspec.structs.replace(
                ended, files=files, files_more=changes.more, files_skipped=changes.skipped
            )
            text = turn_files.search_text(files)
        await self._recorder.flush()
        seq: int = await self._recorder.write(
            stored.turn_ended,
            self.session_id,
            ended,
            self.guard.meter.reported_cost,
            active_s=active_s,
            text=text,
        )
        turn.ended = True
        self._recorder.journal.metrics.turn_ended(stop_reason)
        try:
            await self.guard.after_turn()
        except Exception:  # the turn has ended whatever the check found
            log.exception("budget_check_failed", session_id=self.session_id)
        return TurnResult(stop_reason, used, prompt_seq, seq, pending)

    async def on_update(self, params: Any) -> None:
        """Count a ``session/update``'s usage; a budget reached during a turn cancels it.

        Cancellation: the usage is counted; the turn may not be cancelled yet."""
        update = params.get("update") if isinstance(params, dict) else None
        if not self.guard.meter.on_update(update):
            return
        turn = self.current
        if turn is None:
            self.guard.meter.between_turns()
            return
        if turn.cancel_requested or turn.ended:
            return
        found = await self.guard.during_turn()
        if found is not None and not turn.cancel_requested:
            log.warning("budget_reached_in_turn", session_id=self.session_id, budget=found.budget)
            turn.reason = "budget_exceeded"
            self._nursery.start_soon(self._cancel_for, turn)

    async def _deadline(self, turn: Turn, limit_s: float) -> None:
        """Cancel ``turn`` once it has run ``limit_s`` seconds (``turn_timeout_s``)."""
        with trio.move_on_after(limit_s):
            await turn.done.wait()
            return
        if self.current is turn and not turn.cancel_requested:
            log.warning("turn_timeout", session_id=self.session_id, timeout_s=limit_s)
            turn.reason = "turn_timeout"
            await self._cancel_for(turn)

    async def _cancel_for(self, turn: Turn) -> None:
        """Cancel ``turn`` as session.cancel does, if it still runs."""
        if self.current is turn and not turn.cancel_requested:
            with contextlib.suppress(InvalidState):
                await self.cancel()

    async def cancel(self, *, grace: float | None = None) -> None:
        """Cancel the running turn: ``session/cancel`` to the agent, its pending
        permission requests answered ``cancelled``; an agent that has not ended the
        turn ``grace`` seconds later (``cancel_grace_s``) is restarted. Raises
        :class:`InvalidState` when no turn runs.

        Cancellation: the turn is marked cancelled at once (so the turn ends
        ``cancelled``); the agent may not have been told yet."""
        turn = self.current
        if turn is None:
            raise InvalidState(
                f"session {self.session_id} has no turn running",
                field="session",
                id=self.session_id,
            )
        if turn.cancel_requested:
            return
        turn.cancel_requested = True
        await self._recorder.event(events.CancelRequested())
        for permission in self._permissions.of_session(self.session_id):
            answer(permission, dict(CANCELLED), "cancelled")
        conn = self._agent.conn
        if conn is not None and turn.sent:
            with contextlib.suppress(AcpConnectionClosed):
                await conn.notify("session/cancel", {"sessionId": self._agent.acp_session_id})
        self._nursery.start_soon(
            self._watchdog, turn, self._options.cancel_grace_s if grace is None else grace
        )

    async def _watchdog(self, turn: Turn, grace: float) -> None:
        with trio.move_on_after(grace):
            await turn.done.wait()
            return
        if self.current is turn:
            await self._agent.restart_unresponsive(grace)
