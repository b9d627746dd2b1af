"""The runs owner: one task per active run, in a nursery of its own that ends
with the agents.

:class:`Runs` drives each run through its mode (:mod:`.modes`), and answers the
run methods that change a run while it works: cancel, pick, resume, delete. At
start-up (:meth:`Runs.recover`) a run the previous daemon was driving is marked
``interrupted`` (its members' turns were cut short; their sessions are
``interrupted`` too) and waits for ``run.resume``, which prompts the members that
had not finished again: a restart never spends an agent's budget by itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

import structlog
import trio

from mimird.agents.manager import AgentManager
from mimird.config import Settings
from mimird.errors import InvalidParams, InvalidState, MimirError
from mimird.runs import catalog, modes, records
from mimird.runs.context import DONE, EarlyTurn, RunContext, RunSessions
from mimird.runs.integration import integrate_winner
from mimird.runs.records import RunRow
from mimird.runs.states import FINISHED, WORKING, check_run_transition
from mimird.sessions import recovery
from mimird.sessions.records import SessionRow
from mimird.store import Store
from mimird.wire import run_events as ev

log = structlog.get_logger("mimird.runs")

#: How long cancelling a run waits for its task to end (turns cancelled, checks stopped).
CANCEL_WAIT_S: Final = 60.0
#: How long run.resume waits for the run to move on before answering.
RESUME_WAIT_S: Final = 5.0


#: Brings a decided run's winner home and completes the run (see modes.complete);
#: raises MimirError (nothing changed) when it cannot.
Integrator = Callable[[RunContext, int], Awaitable[None]]


class _Task:
    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()


class Runs:
    """Owner of the runs' tasks. Open with ``async with Runs.open(...) as runs``."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        sessions: RunSessions,
        agents: AgentManager,
        nursery: trio.Nursery,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sessions = sessions
        self.agents = agents
        self._nursery = nursery
        self._tasks: dict[str, _Task] = {}
        #: The contexts of runs being made whose members already work (early turns),
        #: handed to the run's task when it starts.
        self._making: dict[str, RunContext] = {}
        #: Brings the winner home (merge "auto"); without one a decided run waits in
        #: ``decided`` for run.integrate.
        self.integrator: Integrator | None = integrate_winner

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, store: Store, settings: Settings, sessions: RunSessions, agents: AgentManager
    ) -> AsyncIterator[Runs]:
        """The owner, its runs' tasks in a nursery of its own.

        Cancellation: leaving the block cancels every run's task (their turns are
        cancelled and journaled by the agents' owner); the runs stay as recorded,
        and the next start marks the ones that were working ``interrupted``."""
        async with trio.open_nursery() as nursery:
            runs = cls(store, settings, sessions, agents, nursery)
            try:
                yield runs
            finally:
                nursery.cancel_scope.cancel()

    def context(self, run_id: str) -> RunContext:
        return RunContext(self, run_id)

    def active(self, run_id: str) -> bool:
        return run_id in self._tasks

    # ---- driving ----------------------------------------------------------------------

    async def settled(self, run_id: str) -> None:
        """Wait (bounded) until the run's task, if one runs, has ended: a step that
        moved the run to a waiting status is still finishing."""
        task = self._tasks.get(run_id)
        if task is not None:
            with trio.move_on_after(CANCEL_WAIT_S):
                await task.done.wait()

    async def stop(self) -> None:
        """Cancel every run's task and wait for them (the daemon is stopping): their
        members' turns are cancelled, the runs stay as recorded (the next start
        marks the working ones interrupted).

        Cancellation: the tasks are cancelled; the wait is cut short."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.scope.cancel()
        for making in list(self._making):
            await self.abandon_early(making)
        for task in tasks:
            with trio.move_on_after(CANCEL_WAIT_S):
                await task.done.wait()

    def prompt_early(self, run: RunRow, member: SessionRow, slot: int) -> None:
        """Start the first turn of ``member``, in ``slot`` of ``run`` (being made), in
        the owner's nursery; the run's task, once started, joins it."""
        ctx = self._making.setdefault(run.id, self.context(run.id))
        turn = ctx.early[slot] = EarlyTurn(trio.CancelScope(), trio.Event())
        self._nursery.start_soon(modes.early_turn, ctx, run, member, slot, turn)

    async def abandon_early(self, run_id: str) -> None:
        """A run's making failed: cancel its members' early turns and wait (bounded)
        for their ends to be journaled, before the members are removed.

        Cancellation: the wait is cut short."""
        ctx = self._making.pop(run_id, None)
        if ctx is None:
            return
        for turn in ctx.early.values():
            turn.scope.cancel()
        for turn in ctx.early.values():
            with trio.move_on_after(CANCEL_WAIT_S):
                await turn.done.wait()

    def start(
        self,
        run_id: str,
        step: Callable[[RunContext], Awaitable[None]],
        ctx: RunContext | None = None,
    ) -> None:
        """Run ``step`` for the run in the owner's nursery (one task per run), in
        ``ctx``, or the context its members' early turns share, or a new one."""
        if run_id in self._tasks:
            raise InvalidState(f"run {run_id} is already being worked on", field="run", id=run_id)
        task = self._tasks[run_id] = _Task()
        ctx = ctx or self._making.pop(run_id, None) or self.context(run_id)
        self._nursery.start_soon(self._drive, ctx, step, task)

    async def _drive(
        self, ctx: RunContext, step: Callable[[RunContext], Awaitable[None]], task: _Task
    ) -> None:
        run_id = ctx.run_id
        try:
            with task.scope:
                await step(ctx)
        except Exception as exc:
            # Never out of the owner's nursery: that would end every run. A MimirError
            # raised in a step's own nursery arrives inside an exception group.
            error = _mimir_error(exc)
            if error is not None:
                log.warning("run_step_failed", run_id=run_id, error=error.message)
                reason = error.message
            else:
                log.exception("run_crashed", run_id=run_id)
                reason = "internal error in mimird (see its log)"
            with trio.move_on_after(10, shield=True), contextlib.suppress(MimirError):
                await modes.fail(ctx, reason)
        finally:
            del self._tasks[run_id]
            task.done.set()

    @staticmethod
    async def drive(ctx: RunContext) -> None:
        """The run from where it is: its mode up to the decision, or the finish
        when it was decided already."""
        run = await ctx.row()
        if run.winner_slot is not None:
            await modes.finish(ctx)
            return
        mode = catalog.MODES.get(run.mode)
        if mode is None:
            await modes.fail(ctx, f"mode {run.mode!r} is not available in this mimird")
            return
        await mode(ctx)

    # ---- what the API asks ------------------------------------------------------------

    async def cancel(self, run: RunRow) -> RunRow:
        """Cancel every member's turn and the checks, stop the members' agents; the
        run is ``cancelled``.

        Cancellation: the run's task is cancelled at once; the record may still
        say what it said (a second cancel finishes)."""
        if run.status in FINISHED:
            check_run_transition(run.id, run.status, "cancelled", "cancel")
        task = self._tasks.get(run.id)
        if task is not None:
            task.scope.cancel()
            with trio.move_on_after(CANCEL_WAIT_S):
                await task.done.wait()
        ctx = self.context(run.id)
        run = await ctx.row()
        for slot in run.slots:
            if run.member(slot).get("outcome") not in DONE:
                await ctx.set_member(slot, {"outcome": "cancelled", "reason": "run.cancel"})
        row = await ctx.set_status("cancelled", ev.RunCancelled())
        for _, member in await ctx.members():
            with contextlib.suppress(MimirError):
                await self.agents.stop(member.id, reason="run_cancelled")
        log.info("run_cancelled", run_id=run.id)
        return row

    async def pick(self, run: RunRow, slot: int, reason: str | None) -> RunRow:
        """The user's decision: ``slot`` wins; the finish runs in the background.
        Refused at once unless the run is ``deciding`` (a run still at work would
        keep the call waiting for as long as its members work)."""
        _refuse_pick_unless_deciding(run)
        # The step that moved the run to deciding may still be finishing.
        await self.settled(run.id)
        run = await self.store.read(records.get, run.id)
        _refuse_pick_unless_deciding(run)
        if slot not in run.pickable:
            raise InvalidParams(
                f"run {run.id} has no member in slot {slot} (slots: "
                f"{', '.join(map(str, run.pickable))})",
                field="slot",
            )
        ctx = self.context(run.id)
        await modes.record_decision(ctx, slot, "user", reason or f"slot {slot} picked by the user")
        self.start(run.id, modes.finish)
        return await ctx.row()

    async def resume(self, run: RunRow) -> RunRow:
        """Go on with an interrupted run: the members that had not finished are
        prompted again (told that they were interrupted), then as before."""
        if run.status != "interrupted" or self.active(run.id):
            raise InvalidState(
                f"cannot resume run {run.id}: it is {run.status} (possible only when interrupted)",
                field="run",
                id=run.id,
                detail={"status": run.status, "wanted": "running"},
            )
        slots = [s for s in run.slots if run.member(s).get("outcome") not in DONE]
        ctx = self.context(run.id)
        await ctx.journal(ev.RunResumed(slots=slots))
        self.start(run.id, self.drive, ctx)
        # Answered once the run has moved on (running, checking, ...), not as it was.
        with trio.move_on_after(RESUME_WAIT_S):
            await ctx.moved.wait()
        return await ctx.row()

    # ---- start-up ---------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """At start-up, after the sessions' recovery: reap check commands the previous
        daemon left, and mark the runs it was working on ``interrupted``."""
        found = await self.store.read(records.in_status, sorted(WORKING))
        for run in found:
            members = dict(await self.store.read(records.member_sessions, run.id))
            cut: list[int] = []
            for slot in run.recorded_slots:  # an integration's (slot 0) check too
                known = run.member(slot)
                group = known.get("check_group")
                if group is not None and slot in members:
                    row = members[slot]
                    await trio.to_thread.run_sync(
                        recovery.reap, group, Path(row.workspace_path), row.id
                    )
                if known.get("outcome") == "working":
                    cut.append(slot)
                    await self.store.write(
                        records.set_member, run.id, slot, {"outcome": "interrupted"}
                    )
                if group is not None:
                    await self.store.write(records.set_member, run.id, slot, {"check_group": None})
            if run.status == "starting":
                # Cut short while its members were being made: some may be missing.
                reason = "mimird stopped while the run's members were being made"
                await self.store.write(
                    records.transition,
                    run.id,
                    "failed",
                    action="recover",
                    values={"failure": reason},
                    facts=(ev.RunFailed(reason=reason),),
                )
                continue
            await self.store.write(
                records.transition,
                run.id,
                "interrupted",
                action="recover",
                facts=(ev.RunInterrupted(status=run.status, slots=cut),),
            )
        if found:
            log.warning("runs_interrupted", runs=[run.id for run in found])
        return [run.id for run in found]


def _refuse_pick_unless_deciding(run: RunRow) -> None:
    if run.status != "deciding":
        raise InvalidState(
            f"cannot pick a winner of run {run.id}: it is {run.status} "
            "(possible only when deciding)",
            field="run",
            id=run.id,
            detail={"status": run.status, "wanted": "decided"},
        )


def _mimir_error(exc: BaseException) -> MimirError | None:
    """``exc`` if it is a MimirError, or the first of an exception group made only of
    MimirErrors; else None (a bug: logged with its traceback)."""
    if isinstance(exc, MimirError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(MimirError)
        if matched is not None and rest is None:
            first: BaseException = matched
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            return first if isinstance(first, MimirError) else None
    return None
