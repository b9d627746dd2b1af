"""Bringing a run's result home: the chosen member's work (or an ensemble's
integration session's) committed onto its branch, then merged, fast-forwarded or
squashed into the target branch of the project's repository
(:func:`mimird.workspaces.integrate.integrate`), and the run completed.

Two ways in: ``run.integrate`` (:func:`integrate_run`), and the orchestrator after a
decision (:func:`integrate_winner`, the :data:`~mimird.runs.orchestrator.Integrator`
it calls). Either way a refusal (a dirty checkout of the target, a conflict, a
target that moved) changes nothing, in git or in the run: the error is journaled
in the run's journal (``integration_refused``) and raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
import trio

from mimird import names
from mimird.errors import (
    BranchMoved,
    CheckoutDirty,
    InvalidParams,
    InvalidState,
    MergeConflict,
    NotFound,
    StorageError,
)
from mimird.runs.context import RunContext, RunOwner
from mimird.runs.modes import complete, put_losers_away, record_decision
from mimird.runs.records import RunRow
from mimird.sessions import records as sessions_
from mimird.sessions.records import SessionRow
from mimird.sessions.states import ACTIVE
from mimird.wire import run_events as ev
from mimird.wire.runs import INTEGRATION_SLOT
from mimird.workspaces.integrate import Integration, commit_worktree, integrate

log = structlog.get_logger("mimird.runs.integration")

#: Statuses in which run.integrate takes a run: waiting for a pick (the slot
#: integrated is then the decision), or decided (merge "manual", or the orchestrator's
#: integration was refused).
INTEGRABLE: Final = frozenset({"deciding", "decided"})
#: The orchestrator's own integration runs in this status (see :func:`integrate_winner`).
ORCHESTRATED: Final = frozenset({"integrating"})
#: Refusals journaled in the run's journal: the target's state, not bad input (a bad
#: name or an unknown branch changes nothing stored).
JOURNALED: Final = (MergeConflict, CheckoutDirty, BranchMoved)
#: How long recording the outcome may hold off a cancel (a few writes, and the
#: winner's agent stopped as its session completes).
RECORD_GRACE_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Integrated:
    """What :func:`integrate_run` did."""

    run: RunRow
    slot: int | None
    branch: str
    into: str
    result: Integration
    #: The members put away because this integration decided the run.
    put_away: list[int]


@dataclass(frozen=True, slots=True)
class _Source:
    slot: int | None
    row: SessionRow


async def _source(ctx: RunContext, run: RunRow, slot: int | None) -> _Source:
    """The session whose work is integrated: ``slot``'s member, else the winner's,
    else an ensemble's integration session once its phase is completed."""
    chosen = slot if slot is not None else run.winner_slot
    if (
        chosen == INTEGRATION_SLOT
        and run.integration_session_id is not None
        and INTEGRATION_SLOT not in run.pickable  # its work is not done
    ):
        raise InvalidState(
            f"run {run.id}'s integration session has not finished its work (its phase is "
            f"{run.integration_phase}); slot 0 can be integrated once it has",
            field="slot",
            id=run.id,
            detail={"integration_phase": run.integration_phase},
        )
    if chosen is not None:
        for found, row in await ctx.members():
            if found == chosen:
                return _Source(chosen, row)
        raise NotFound(f"run {run.id} has no member in slot {chosen}", field="slot", id=str(chosen))
    if run.integration_session_id is not None and run.integration_phase == "completed":
        row = await ctx.runs.store.read(sessions_.get, run.integration_session_id)
        return _Source(None, row)
    raise InvalidState(
        f"run {run.id} has no winner yet; give the slot to integrate, or pick one first (run.pick)",
        field="slot",
        id=run.id,
        detail={"status": run.status},
    )


def _target(run: RunRow, into: str | None) -> str:
    target = into or run.into
    if target is None:
        raise InvalidParams(
            f"run {run.id} has no target branch (its base {run.base_ref or 'HEAD'} is not a "
            "branch); give the branch to integrate into",
            field="into",
        )
    return names.check_branch(target, field="into")


def _check_source(run: RunRow, source: _Source) -> str:
    """The source's branch, after checking that its work is there to take."""
    row = source.row
    what = f"slot {source.slot}" if source.slot is not None else "the integration session"
    if row.workspace_kind != "worktree" or not row.branch:
        raise InvalidState(
            f"{what} of run {run.id} has no branch to integrate (workspace {row.workspace_kind})",
            field="slot",
        )
    if row.status in ACTIVE:
        raise InvalidState(
            f"{what} of run {run.id} is {row.status}: its agent is at work in the worktree; "
            "wait for its turn to end, or cancel it, then try again",
            field="slot",
            detail={"status": row.status},
        )
    return row.branch


def _commit_and_integrate(
    root: Path,
    worktree: Path | None,
    commit_message: str,
    branch: str,
    into: str,
    squash: bool,
    message: str | None,
) -> Integration:
    """In a git thread: the work left in the worktree committed onto its branch (a
    worktree that is gone has its work on the branch already), then the branch
    brought into ``into``."""
    if worktree is not None and worktree.is_dir():
        commit_worktree(worktree, commit_message)
    return integrate(root, branch, into, squash=squash, message=message)


async def integrate_run(
    runs: RunOwner,
    run_id: str,
    *,
    slot: int | None = None,
    into: str | None = None,
    squash: bool = False,
    message: str | None = None,
    allowed: frozenset[str] = INTEGRABLE,
) -> Integrated:
    """Integrate the run's winner (or ``slot``'s member, which then becomes the
    winner, or an ensemble's integration session) into ``into`` (default: the run's
    target branch), and complete the run.

    A run still ``deciding`` is decided by this call (by the user) and its other
    members are put away as a decision does. A target checked out with changes, a
    conflict (the files listed) or a target that moved meanwhile is refused with the
    run and the repository as they were, the refusal journaled in the run's journal
    (``integration_refused``). Bad input (a run in another status, an unknown slot
    or branch, a bad name, a member still at work) is refused and changes nothing.

    Cancellation: before the git work starts nothing changed; once started it runs
    to its end in its thread, and recording the outcome is shielded (bounded), so
    a target branch that moved is recorded in the run."""
    ctx = RunContext(runs, run_id)
    found = await ctx.row()
    workspaces = runs.sessions.workspaces
    async with workspaces.project_lock(found.project_id):
        # Read again under the lock: a second integrate that waited here finds the
        # run completed.
        run = await ctx.row()
        if run.status not in allowed:
            raise InvalidState(
                f"cannot integrate run {run.id}: it is {run.status} (possible when "
                f"{', '.join(sorted(allowed))})",
                field="run",
                id=run.id,
                detail={"status": run.status, "wanted": "completed"},
            )
        source = await _source(ctx, run, slot)
        target = _target(run, into)
        try:
            branch = _check_source(run, source)
            row = source.row
            worktree = Path(row.workspace_path) if row.workspace_state == "ok" else None
            result = await workspaces.git(
                _commit_and_integrate,
                Path(run.project_path),
                worktree,
                f"mimir: work of run {run.id}, slot {source.slot} ({row.agent})",
                branch,
                target,
                squash,
                message,
            )
        except JOURNALED as exc:
            with trio.move_on_after(RECORD_GRACE_S, shield=True):
                await ctx.journal(
                    ev.IntegrationRefused(
                        slot=source.slot,
                        into=target,
                        error=exc.code.kind,
                        message=exc.message,
                        files=list((exc.detail or {}).get("files", [])),
                    )
                )
            log.info("run_integration_refused", run_id=run.id, error=exc.message)
            raise
        decides = source.slot is not None and source.slot != run.winner_slot
        with trio.move_on_after(RECORD_GRACE_S, shield=True) as recording:
            await ctx.journal(
                ev.Integrated(
                    slot=source.slot,
                    branch=branch,
                    into=target,
                    kind=result.kind,
                    commit=result.commit,
                    previous=result.previous,
                    files_changed=len(result.files),
                    insertions=sum(f.insertions for f in result.files),
                    deletions=sum(f.deletions for f in result.files),
                    worktree=None if result.worktree is None else str(result.worktree),
                )
            )
            if decides:
                await record_decision(ctx, source.slot, "user", "integrated by run.integrate")
            await complete(ctx, result.commit, target)
        if recording.cancelled_caught:
            raise StorageError(
                f"{target} now holds the work ({result.commit[:12]}), but recording it in run "
                f"{run.id} took longer than {RECORD_GRACE_S:g} s; run.get shows what was "
                "recorded",
                field="run",
                id=run.id,
            )
    put_away: list[int] = []
    if decides:
        before = {slot for slot, row in await ctx.members() if row.status != "deleted"}
        await put_losers_away(ctx)
        after = {slot for slot, row in await ctx.members() if row.status != "deleted"}
        put_away = sorted(before - after)
    log.info(
        "run_integrated",
        run_id=run.id,
        slot=source.slot,
        into=target,
        kind=result.kind,
        commit=result.commit,
    )
    return Integrated(await ctx.row(), source.slot, branch, target, result, put_away)


async def integrate_winner(ctx: RunContext, slot: int) -> None:
    """The orchestrator's :data:`~mimird.runs.orchestrator.Integrator`: bring the
    decided winner in ``slot`` home into the run's target branch and complete the
    run. Raises MimirError, with nothing changed (the refusal journaled), when it
    cannot; the orchestrator then leaves the run ``decided`` for ``run.integrate``.

    Cancellation: as :func:`integrate_run`."""
    await integrate_run(ctx.runs, ctx.run_id, slot=slot, allowed=ORCHESTRATED)
