"""What a phase of a run may do, in one small object handed to every phase.

The orchestrator (:mod:`.orchestrator`) runs a run as phases: the members'
turns, the checks, the decision, the finish. Each mode is a function of a
:class:`RunContext` (:mod:`.modes`), so that a mode, a judge or an integration
step lives in a module of its own and uses only these verbs: prompt a member (or
another session of the run), run the checks, read a member's diff, journal a run
event, move the run. Every verb says what a cancel leaves behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import structlog
import trio

from mimird import journal, policy, templates
from mimird.agents.manager import AgentManager
from mimird.agents.turns import TurnResult
from mimird.config import Settings
from mimird.errors import BudgetExceeded, MimirError
from mimird.processes import SESSION_ENV, child_environment
from mimird.runs import records, work
from mimird.runs.checks import CheckOutcome, run_check
from mimird.runs.records import RunRow
from mimird.sessions import records as sessions_
from mimird.sessions.lifecycle import Sessions
from mimird.sessions.records import SessionRow
from mimird.store import Store
from mimird.wire import run_events as ev
from mimird.wire.runs import RunStatus
from mimird.wire.types import SessionCreateParams, TemplatePrompt
from mimird.workspaces.integrate import is_clean
from mimird.workspaces.provision import SNAPSHOT_REF_PREFIX, Workspaces

log = structlog.get_logger("mimird.runs")

#: Where what a check left in a clean worktree is saved before it is removed.
CHECK_REFS: Final = f"{SNAPSHOT_REF_PREFIX}runs/"
#: Outcomes after which a member's turn is not run again (resume skips it).
DONE: Final = frozenset({"finished", "failed", "budget_exceeded", "cancelled"})
#: The most of a member's failure reason a run keeps.
REASON_CHARS: Final = 2000
#: Stop reasons of a turn that ended as the agent meant it to.
ENDED: Final = frozenset({"end_turn", "max_tokens", "max_turn_requests", "refusal"})


class RunSessions(Protocol):
    """What runs need of the sessions (the API's SessionService)."""

    owner: Sessions
    workspaces: Workspaces

    def refuse_drifted(self, row: SessionRow, action: str) -> None: ...

    async def effective(self, row: SessionRow) -> policy.Effective: ...

    async def git(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


class RunOwner(Protocol):
    """What a run's context needs of its owner (:class:`~mimird.runs.orchestrator.Runs`)."""

    store: Store
    settings: Settings
    sessions: RunSessions
    agents: AgentManager
    integrator: Callable[[RunContext, int], Awaitable[None]] | None


@dataclass(frozen=True, slots=True, eq=False)
class EarlyTurn:
    """A member's first turn, started while the run was still being made (run.create
    prompts each member as soon as it exists); the run's first phase joins it."""

    scope: trio.CancelScope
    done: trio.Event


@dataclass(frozen=True, slots=True)
class MemberTurn:
    """How one member's turn ended, as the run records it."""

    slot: int
    outcome: str
    stop_reason: str | None = None
    reason: str | None = None
    commit: str | None = None


class RunContext:
    """One run, as a phase sees it."""

    def __init__(self, runs: RunOwner, run_id: str) -> None:
        self.runs = runs
        self.run_id = run_id
        #: Set when the run's budget was reached: the turns cancelled then count as
        #: budget_exceeded.
        self.budget_reached: str | None = None
        #: Members whose first turn started while the run was being made, by slot;
        #: the first round joins them instead of prompting again.
        self.early: dict[int, EarlyTurn] = {}
        #: Set once this context moved the run (run.resume answers after that).
        self.moved = trio.Event()

    # ---- reading -----------------------------------------------------------------------

    async def row(self) -> RunRow:
        """The run as stored now. Cancellation: nothing changes."""
        return await self.runs.store.read(records.get, self.run_id)

    async def members(self) -> list[tuple[int, SessionRow]]:
        """The member sessions, by slot. Cancellation: nothing changes."""
        return await self.runs.store.read(records.member_sessions, self.run_id)

    async def member(self, slot: int) -> SessionRow:
        """The member session in ``slot``. Cancellation: nothing changes."""
        row = await self.runs.store.read(records.member_session, self.run_id, slot)
        if row is None:
            raise LookupError(f"run {self.run_id} has no member in slot {slot}")
        return row

    # ---- writing -----------------------------------------------------------------------

    async def journal(self, *facts: ev.RunEventData) -> RunRow:
        """Append events to the run's journal (committed before anyone sees them).

        Cancellation: committed or not, never half."""
        return await self.runs.store.write(records.update, self.run_id, {}, *facts)

    async def update(self, values: dict[str, Any], *facts: ev.RunEventData) -> RunRow:
        """Change the run's columns (integration_phase, integration_session_id, round,
        ...), journaling ``facts``. Cancellation: committed or not."""
        return await self.runs.store.write(records.update, self.run_id, values, *facts)

    async def set_status(
        self,
        target: RunStatus,
        *facts: ev.RunEventData,
        values: dict[str, Any] | None = None,
        only_from: frozenset[str] | None = None,
    ) -> RunRow:
        """Move the run (journaled after ``facts``). Cancellation: committed or not."""
        row = await self.runs.store.write(
            records.transition,
            self.run_id,
            target,
            action=f"move to {target}",
            values=values,
            facts=facts,
            only_from=only_from,
        )
        self.moved.set()
        return row

    async def set_member(
        self, slot: int, changes: dict[str, Any], *facts: ev.RunEventData
    ) -> RunRow:
        """Record what the run learnt of a member. Cancellation: committed or not."""
        return await self.runs.store.write(records.set_member, self.run_id, slot, changes, *facts)

    # ---- members' turns ----------------------------------------------------------------

    async def prompt_text(self, row: SessionRow, run: RunRow) -> str:
        """The member's prompt: the task, or the run's template rendered for it."""
        template = run.options.get("template")
        if template is None:
            return run.task
        prompt = TemplatePrompt(template=template["template"], vars=template.get("vars", {}))
        effective = await self.runs.sessions.effective(row)
        return templates.render(
            effective.values["prompt_templates"],
            effective.sources,
            prompt.template,
            prompt.vars,
            templates.builtins_of(row),
        )

    async def prompt_session(self, row: SessionRow, text: str) -> TurnResult:
        """One turn of a session of the run (a member, a judge, an integrator): its
        agent started first if need be.

        Cancellation: as :meth:`AgentManager.prompt` (the turn is cancelled and its
        end journaled)."""
        content = [{"type": "text", "text": text}]
        return await self.runs.agents.prompt(row, self.runs.sessions, content, text)

    async def run_member(
        self,
        slot: int,
        text: str,
        *,
        round_: int = 1,
        member: SessionRow | None = None,
        early: bool = False,
    ) -> MemberTurn:
        """Prompt the member in ``slot`` with ``text`` and wait for its turn's end;
        commit its worktree's changes to its branch; record and journal the
        outcome (``member_started`` / ``member_finished``). A member that fails
        (cannot start, its turn fails, a budget stops it) is recorded so; it never
        raises for that. ``member``: the member's session as just read, if the
        caller has it.

        ``early``: the run is still being made (``starting``): ``member_started`` is
        recorded while the turn starts instead of before it (the writer is busy with
        the journals of the members already at work, and a run cut short while
        ``starting`` fails at the next start-up, so no resume reads it). Otherwise
        ``working`` is on record before the prompt goes out, so that a resume after a
        crash knows the member was at work.

        Cancellation: the member's turn is cancelled (and journaled); the member
        stays ``working`` in the run's records (a resume prompts it again)."""
        row = member if member is not None else await self.member(slot)
        started = ev.MemberStarted(slot=slot, session_id=row.id, round=round_)
        working = {"outcome": "working", "round": round_}
        if early:
            turn = await self._turn_recording(slot, row, text, working, started)
        else:
            await self.set_member(slot, working, started)
            turn = await self._turn(slot, row, text)
        return await self.member_done(turn, round_=round_)

    async def _turn_recording(
        self,
        slot: int,
        row: SessionRow,
        text: str,
        working: dict[str, Any],
        started: ev.MemberStarted,
    ) -> MemberTurn:
        """:meth:`_turn`, with ``started`` recorded meanwhile; a record that failed is
        raised after the turn, which did not wait for it."""
        not_recorded: list[MimirError] = []

        async def record() -> None:
            try:
                await self.set_member(slot, working, started)
            except MimirError as exc:
                not_recorded.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(record)
            turn = await self._turn(slot, row, text)
        if not_recorded:
            raise not_recorded[0]
        return turn

    async def _turn(self, slot: int, row: SessionRow, text: str) -> MemberTurn:
        try:
            result = await self.prompt_session(row, text)
        except BudgetExceeded as exc:
            return MemberTurn(slot, "budget_exceeded", reason=exc.message)
        except MimirError as exc:
            return MemberTurn(slot, "failed", reason=exc.message)
        after = await self.runs.store.read(sessions_.get, row.id)
        # The agent's own text: bounded here, and shown only made visible.
        stop = result.stop_reason  # bounded by the agents owner
        if self.budget_reached is not None:
            return MemberTurn(slot, "budget_exceeded", stop, self.budget_reached)
        if after.status == "budget_exceeded":
            return MemberTurn(slot, "budget_exceeded", stop, "the session's budget was reached")
        if after.status == "failed":
            return MemberTurn(slot, "failed", stop, after.failure or "the agent failed")
        if stop in ENDED:
            return MemberTurn(slot, "finished", stop)
        if stop == "cancelled":
            return MemberTurn(slot, "cancelled", stop, "the turn was cancelled")
        error = await self._turn_error(row.id, result.end_seq)
        return MemberTurn(slot, "failed", stop, error or f"the turn ended with {stop}")

    async def _turn_error(self, session_id: str, end_seq: int) -> str | None:
        found = await self.runs.store.read(
            lambda conn: journal.page(conn, session_id, after_seq=end_seq - 1, limit=1)
        )
        if not found or found[0].kind != "turn_ended":
            return None
        error = found[0].decoded().get("error")
        return error if isinstance(error, str) else None

    async def member_done(self, turn: MemberTurn, *, round_: int = 1) -> MemberTurn:
        """Commit the member's work and record how its turn ended.

        Cancellation: the git work runs to its end; the record commits or not."""
        run = await self.row()
        row = await self.member(turn.slot)
        reason = None if turn.reason is None else turn.reason[:REASON_CHARS]
        stats: work.WorkStats | None = None
        commit: str | None = None
        path = Path(row.workspace_path)
        if row.workspace_kind == "worktree" and run.base_commit and row.workspace_state == "ok":
            message = f"mimir: run {run.id} slot {turn.slot} ({row.agent}), round {round_}"
            try:
                commit, stats = await self.runs.sessions.git(
                    work.commit_work, path, message, run.base_commit
                )
            except MimirError as exc:
                log.warning(
                    "run_member_commit_failed", run_id=run.id, slot=turn.slot, error=exc.message
                )
                await self.journal(
                    ev.RunNote(
                        slot=turn.slot,
                        text=f"member {turn.slot}'s work was not committed: {exc.message}",
                    )
                )
        figures = {
            "files_changed": None if stats is None else stats.files_changed,
            "lines_added": None if stats is None else stats.lines_added,
            "lines_deleted": None if stats is None else stats.lines_deleted,
        }
        await self.set_member(
            turn.slot,
            {
                "outcome": turn.outcome,
                "stop_reason": turn.stop_reason,
                "reason": reason,
                "commit": commit or run.member(turn.slot).get("commit"),
                **figures,
            },
            ev.MemberFinished(
                slot=turn.slot,
                session_id=row.id,
                outcome=turn.outcome,  # type: ignore[arg-type]
                stop_reason=turn.stop_reason,
                reason=reason,
                commit=commit,
                round=round_,
                **figures,
            ),
        )
        log.info("run_member_finished", run_id=run.id, slot=turn.slot, outcome=turn.outcome)
        return MemberTurn(turn.slot, turn.outcome, turn.stop_reason, reason, commit)

    async def create_session(
        self,
        agent: str,
        title: str,
        task: str,
        *,
        config: dict[str, Any] | None = None,
        role: str | None = None,
        slot: int | None = None,
    ) -> SessionRow:
        """Make another session of the run (a judge, an integration session): in a
        fresh worktree from the run's base commit, on a branch of the run's (named
        after ``role`` when given, as the members' are after their slot), with the
        run's member config (``config`` on top); ``run_id`` set, and ``slot`` (None:
        not a member; 0: an ensemble's integration). It counts against the run's
        budget and goes with the run (run.delete).

        Cancellation: as :meth:`Sessions.create` (nothing half-made is left)."""
        run = await self.row()
        layered = {"auto_complete": False, **run.config, **(config or {})}
        short = self.run_id[-8:]
        count = len(await self.runs.store.read(records.session_ids, self.run_id))
        params = SessionCreateParams(
            project=run.project_id,
            title=title[:500],
            task=task,
            agent=agent,
            base_ref=run.base_commit or run.base_ref or "HEAD",
            branch=f"mimir/run-{short}/{role or count + 1}-{agent}",
            config=layered,
        )
        row = await self.runs.sessions.owner.create(params)
        await self.runs.store.write(records.set_membership, row.id, self.run_id, slot)
        return await self.runs.store.read(sessions_.get, row.id)

    # ---- checks ------------------------------------------------------------------------

    async def check(self, slot: int, *, workspace: SessionRow | None = None) -> CheckOutcome | None:
        """Run the run's check command in the member's worktree (or, with slot 0,
        in ``workspace``'s: an integration session's); record and journal its result
        under that slot. None when the run has no check command.

        Cancellation: the command's process group is stopped; nothing is recorded."""
        run = await self.row()
        command = run.check_command
        if command is None:
            return None
        row = workspace if workspace is not None else await self.member(slot)
        if row.workspace_state == "ok":
            outcome = await self._run_check(command, slot, row)
        else:  # drifted, or an import's (foreign): not a place to run anything in
            outcome = CheckOutcome(
                exit_code=None,
                passed=False,
                summary=f"not run: the workspace is {row.workspace_state}",
                duration_s=0.0,
                output="",
                output_dropped=0,
            )
        result = {
            "exit_code": outcome.exit_code,
            "passed": outcome.passed,
            "summary": outcome.summary,
            "duration_s": outcome.duration_s,
            "timed_out": outcome.timed_out,
        }
        await self.set_member(
            slot,
            {"check": result, "check_group": None},
            ev.CheckFinished(
                slot=slot,
                exit_code=outcome.exit_code,
                passed=outcome.passed,
                summary=outcome.summary,
                duration_s=outcome.duration_s,
                output=outcome.output,
                timed_out=outcome.timed_out,
                output_dropped=outcome.output_dropped,
            ),
        )
        return outcome

    async def _run_check(self, command: str, slot: int, row: SessionRow) -> CheckOutcome:
        effective = await self.runs.sessions.effective(row)
        options = self.runs.settings.runs
        await self.journal(ev.CheckStarted(slot=slot, command=command))

        async def started(pgid: int) -> None:
            await self.set_member(slot, {"check_group": pgid})

        path = Path(row.workspace_path)
        clean = await self.runs.sessions.git(is_clean, path)
        outcome = await run_check(
            command,
            path,
            child_environment({**effective.env(), SESSION_ENV: row.id}),
            effective.secret_values(),
            timeout_s=options.check_timeout_s,
            output_bytes=options.check_output_bytes,
            on_start=started,
        )
        if clean:  # what the check left is not the member's work: saved, then removed
            ref = f"{CHECK_REFS}{self.run_id}/check-{slot}"
            message = f"what run {self.run_id}'s check left in slot {slot}'s worktree"
            await self.runs.sessions.git(work.undo_check, path, ref, message)
        return outcome

    async def check_all(self, slots: list[int], *, again: bool = False) -> None:
        """Run the checks of ``slots`` concurrently (those already checked are not
        run again, unless ``again``: a later round's work). Cancellation: every
        check's process group is stopped."""
        run = await self.row()
        pending = [s for s in slots if again or run.member(s).get("check") is None]
        if run.check_command is None or not pending:
            return
        async with trio.open_nursery() as nursery:
            for slot in pending:
                nursery.start_soon(self.check, slot)

    # ---- diffs -------------------------------------------------------------------------

    async def member_stats(self, slot: int) -> work.WorkStats | None:
        """The member's files changed and lines added/deleted against the base."""
        run = await self.row()
        row = await self.member(slot)
        if run.base_commit is None or row.workspace_state != "ok":
            return None
        return await self.runs.sessions.workspaces.read_git(
            work.stats, Path(row.workspace_path), run.base_commit
        )

    async def member_patch(self, slot: int, max_bytes: int) -> tuple[str, bool]:
        """The member's unified diff against the base, bounded; True when cut."""
        run = await self.row()
        row = await self.member(slot)
        if run.base_commit is None or row.workspace_state != "ok":
            return "", False
        return await self.runs.sessions.workspaces.read_git(
            work.patch, Path(row.workspace_path), run.base_commit, max_bytes
        )
