"""The phases of a run, and the modes made of them.

``competition``: every member's turn (:func:`work`), the checks of those that
finished, then the decision (:func:`decide`): by the user (``run.pick``), by the
checks (:func:`judge_by_checks`), or by a judge agent (``JUDGES["agent"]``), and
the finish (:func:`finish`): the losers put away, the winner integrated.

Other modes and judges plug in here: ``MODES[name]`` is an ``async def(ctx)``
that runs the run from its start (or from where a resume finds it) up to its
decision or its end; ``JUDGES[name]`` an ``async def(ctx, candidates)`` that
returns ``(winner slot or None, reasons)``. They use only :class:`RunContext`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import structlog
import trio

from mimird.errors import MimirError
from mimird.runs import judge as judge_agent
from mimird.runs import records
from mimird.runs.context import DONE, EarlyTurn, RunContext
from mimird.runs.records import RunRow
from mimird.runs.states import FINISHED
from mimird.sessions.records import SessionRow
from mimird.wire import run_events as ev
from mimird.wire.runs import INTEGRATION_SLOT
from mimird.wire.usage import Usage

log = structlog.get_logger("mimird.runs")

#: How often the run's budget is checked while members work (their live usage).
RUN_BUDGET_POLL_S: Final = 0.5
#: How long a member's early turn, cancelled, is waited for (its end journaled).
EARLY_CANCEL_WAIT_S: Final = 30.0
#: What an interrupted member is told when the run resumes.
RESUME_PREFIX: Final = (
    "Mimir was restarted while you worked on the task below; your work so far is in "
    "this worktree. Continue it and finish the task.\n\n"
)

Mode = Callable[[RunContext], Awaitable[None]]
Judge = Callable[[RunContext, list[int]], Awaitable[tuple[int | None, str]]]


# ---- the members' turns -----------------------------------------------------------------


def _over(budget: dict[str, float | int | None], used: Usage) -> ev.RunBudgetExceeded | None:
    tokens, cost = budget.get("tokens"), budget.get("cost_usd")
    if tokens is not None and used.total_tokens >= tokens:
        return ev.RunBudgetExceeded(budget="tokens", limit=tokens, used=used.total_tokens)
    if cost is not None and used.cost_usd >= cost:
        return ev.RunBudgetExceeded(budget="cost_usd", limit=cost, used=round(used.cost_usd, 6))
    return None


async def run_usage(ctx: RunContext) -> Usage:
    """What the run's sessions used: their stored turns, plus what the turns running
    now used so far (a lower bound)."""
    run = await ctx.row()
    total = await ctx.runs.store.read(records.used, run)
    for session_id in await ctx.runs.store.read(records.session_ids, run.id):
        host = ctx.runs.agents.get(session_id)
        if host is not None and host.turn is not None:
            live = host.turns.guard.meter.so_far()
            total.total_tokens += live.total_tokens
            total.cost_usd += live.cost_usd
    return total


async def _watch_budget(ctx: RunContext, budget: dict[str, float | int | None]) -> None:
    """Until cancelled: when the run's usage reaches its budget, journal it and
    cancel every member's running turn."""
    while True:
        reached = _over(budget, await run_usage(ctx))
        if reached is not None:
            await budget_reached(ctx, reached)
            return
        await trio.sleep(RUN_BUDGET_POLL_S)


async def budget_reached(ctx: RunContext, reached: ev.RunBudgetExceeded) -> None:
    """Note the run's budget reached and cancel the running turn of every session
    of the run."""
    ctx.budget_reached = (
        f"the run's budget ({reached.budget} {reached.limit:g}) was reached: {reached.used:g} used"
    )
    log.warning("run_budget_exceeded", run_id=ctx.run_id, budget=reached.budget)
    await ctx.journal(reached)
    # Every session of the run: its members, and a judge or integration session.
    for session_id in await ctx.runs.store.read(records.session_ids, ctx.run_id):
        await ctx.runs.agents.cancel_turn(session_id)


@contextlib.asynccontextmanager
async def budget_guard(ctx: RunContext) -> AsyncIterator[None]:
    """While the block runs, the run's budget is watched: once reached, every turn of
    the run's sessions is cancelled (``ctx.budget_reached`` says why). For every
    phase whose sessions work (members, a judge, an integration session)."""
    run = await ctx.row()
    budget = run.options.get("run_budget")
    async with trio.open_nursery() as watcher:
        if budget and ctx.budget_reached is None:
            watcher.start_soon(_watch_budget, ctx, budget)
        try:
            yield
        finally:
            watcher.cancel_scope.cancel()


async def work(
    ctx: RunContext, *, round_: int = 1, prompts: dict[int, str] | None = None
) -> list[int]:
    """Every member whose turn is not done yet works on the task, concurrently, under
    the run's budget; returns the slots whose turn finished. With ``prompts`` (a
    later round of a debate): exactly those members, each with its own text. An
    ensemble's integration session (slot 0) is never prompted here.

    Cancellation: every running turn is cancelled (journaled); members stay
    ``working`` for a resume."""
    run = await ctx.set_status("running", values={"round": max(round_, 1)})
    budget = run.options.get("run_budget")
    if budget:
        reached = _over(budget, await run_usage(ctx))
        if reached is not None:
            await ctx.journal(reached)
            ctx.budget_reached = f"the run's budget ({reached.budget}) was reached"
    # Members prompted while the run was made: joined, not prompted again.
    early = ctx.early if prompts is None else {}
    async with budget_guard(ctx), trio.open_nursery() as members:
        for slot, row in await ctx.members():
            known = run.member(slot)
            if slot == INTEGRATION_SLOT:
                continue
            if slot in early:
                members.start_soon(_join_early, early.pop(slot))
                continue
            if prompts is not None and slot not in prompts:
                continue
            if prompts is None and known.get("outcome") in DONE:
                continue
            if ctx.budget_reached is not None:
                await ctx.set_member(
                    slot,
                    {"outcome": "budget_exceeded", "reason": ctx.budget_reached},
                    ev.MemberFinished(
                        slot=slot,
                        session_id=row.id,
                        outcome="budget_exceeded",
                        reason=ctx.budget_reached,
                    ),
                )
                continue
            text = prompts[slot] if prompts is not None else await ctx.prompt_text(row, run)
            if known.get("outcome") in ("working", "interrupted"):
                text = RESUME_PREFIX + text
            members.start_soon(_member_task, ctx, slot, text, round_)
    run = await ctx.row()
    wanted = run.slots if prompts is None else sorted(prompts)
    return [
        slot
        for slot in wanted
        if slot != INTEGRATION_SLOT and run.member(slot).get("outcome") == "finished"
    ]


async def early_turn(
    ctx: RunContext, run: RunRow, member: SessionRow, slot: int, turn: EarlyTurn
) -> None:
    """The first turn of ``member``, in ``slot``, started as soon as run.create made
    it (while it makes the next ones; ``run`` and ``member`` as run.create made them,
    not read again): the run's first phase joins it (:func:`_join_early`). A budget
    reached meanwhile is seen once the phase watches the run's budget.

    Cancellation: through ``turn.scope`` (the phase's cancellation, or an undone
    run.create): as :meth:`RunContext.run_member`."""
    try:
        with turn.scope:
            text = await ctx.prompt_text(member, run)
            await _member_task(ctx, slot, text, 1, member, early=True)
    except MimirError as exc:  # the member or its prompt could not be read
        log.warning("run_member_not_started", run_id=ctx.run_id, slot=slot, error=exc.message)
    finally:
        turn.done.set()


async def _join_early(turn: EarlyTurn) -> None:
    """Wait for an early turn to end; cancelled, cancel it and wait (bounded) for
    its end to be journaled."""
    try:
        await turn.done.wait()
    finally:
        if not turn.done.is_set():
            turn.scope.cancel()
            with trio.move_on_after(EARLY_CANCEL_WAIT_S, shield=True):
                await turn.done.wait()


async def _member_task(
    ctx: RunContext,
    slot: int,
    text: str,
    round_: int,
    member: SessionRow | None = None,
    *,
    early: bool = False,
) -> None:
    try:
        await ctx.run_member(slot, text, round_=round_, member=member, early=early)
    except MimirError as exc:  # recording the outcome failed: the run notes it
        log.warning("run_member_not_recorded", run_id=ctx.run_id, slot=slot, error=exc.message)


# ---- the decision -----------------------------------------------------------------------


async def judge_by_checks(ctx: RunContext, candidates: list[int]) -> tuple[int | None, str]:
    """Members whose check passed, then the smallest diff (lines added + deleted,
    then files, then the lowest slot)."""
    run = await ctx.row()
    passed = [s for s in candidates if (run.member(s).get("check") or {}).get("passed")]
    if not passed:
        return None, "no member's check passed"

    def size(slot: int) -> tuple[int, int, int]:
        known = run.member(slot)
        lines = (known.get("lines_added") or 0) + (known.get("lines_deleted") or 0)
        return lines, known.get("files_changed") or 0, slot

    winner = min(passed, key=size)
    lines, files, _ = size(winner)
    others = len(passed) - 1
    return winner, (
        f"slot {winner}'s check passed with the smallest diff ({_count(lines, 'line')} in "
        f"{_count(files, 'file')})"
        + (f"; {others} other member(s) passed too" if others else "; the only one that passed")
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


JUDGES: dict[str, Judge] = {"checks": judge_by_checks, "agent": judge_agent.by_agent}


async def decide(ctx: RunContext, candidates: list[int]) -> None:
    """Decide among ``candidates`` by the run's judge; the user's decision waits in
    ``deciding`` for run.pick."""
    run = await ctx.row()
    if run.judge == "user":
        await ctx.set_status("deciding")
        return
    judge = JUDGES.get(run.judge)
    if judge is None:
        await ctx.set_status(
            "deciding", ev.RunNote(text=f"no {run.judge!r} judge in this mimird: pick by hand")
        )
        return
    if run.judge == "agent":
        await ctx.set_status("judging")
    async with budget_guard(ctx):  # a judge agent's turn counts in the run's budget
        winner, reasons = await judge(ctx, candidates)
    if winner is None:
        await ctx.set_status(
            "deciding", ev.RunNote(text=f"{reasons}: no winner by {run.judge}; run.pick decides")
        )
        return
    await record_decision(ctx, winner, run.judge, reasons)
    await finish(ctx)


async def record_decision(ctx: RunContext, winner: int | None, by: str, reasons: str) -> None:
    await ctx.update(
        {"winner_slot": winner, "decision": {"winner": winner, "by": by, "reasons": reasons}},
        ev.Decision(winner=winner, by=by, reasons=reasons),  # type: ignore[arg-type]
    )


# ---- the finish -------------------------------------------------------------------------


async def put_losers_away(ctx: RunContext) -> None:
    """Stop every member but the winner; unless preserve_worktrees, delete them as
    session.delete does (their work snapshotted, their branch kept, restorable)."""
    run = await ctx.row()
    for slot, row in await ctx.members():
        if slot == run.winner_slot or row.status == "deleted":
            continue
        try:
            if run.options.get("preserve_worktrees"):
                await ctx.runs.agents.stop(row.id, reason="run_decided")
            else:
                await ctx.runs.sessions.owner.delete(row.id)
        except MimirError as exc:
            await ctx.journal(
                ev.RunNote(slot=slot, text=f"member {slot} was not put away: {exc.message}")
            )


async def finish(ctx: RunContext) -> None:
    """After the decision: the losers put away, the winner integrated (merge
    "auto") or left for run.integrate (merge "manual", or no integration here),
    and the run completed."""
    await put_losers_away(ctx)
    run = await ctx.row()
    integrator = ctx.runs.integrator
    if run.options.get("merge") == "manual" or integrator is None or run.winner_slot is None:
        note = (
            "merge is manual: run.integrate brings the winner home"
            if integrator is not None
            else "run.integrate brings the winner home"
        )
        await ctx.set_status("decided", ev.RunNote(text=note))
        return
    await ctx.set_status("integrating")
    try:
        await integrator(ctx, run.winner_slot)
    except MimirError as exc:
        await ctx.set_status(
            "decided",
            ev.RunNote(text=f"the winner was not integrated: {exc.message}"),
            values={"failure": exc.message},
        )


async def complete(ctx: RunContext, commit: str | None, into: str | None) -> None:
    """The run's end once its result is home: the winner's session completed (its
    agent stopped), then the run ``completed`` (so that a client that sees the run
    completed sees its winner completed too)."""
    run = await ctx.row()
    if run.winner_slot is not None:
        row = await ctx.member(run.winner_slot)
        try:
            await ctx.runs.agents.complete_session(row, ctx.runs.sessions, None, by="run")
        except MimirError as exc:
            log.info("run_winner_not_completed", run_id=run.id, error=exc.message)
    await ctx.set_status(
        "completed",
        ev.RunCompleted(winner=run.winner_slot, commit=commit, into=into),
        values={"failure": None},
    )


# ---- the modes --------------------------------------------------------------------------


async def competition(ctx: RunContext) -> None:
    finished = await work(ctx)
    if not finished:
        await fail(ctx, "no member finished its turn")
        return
    await ctx.set_status("checking")
    await ctx.check_all(finished)
    await decide(ctx, finished)


async def fail(ctx: RunContext, reason: str) -> None:
    run = await ctx.row()
    if run.status in FINISHED:
        return
    if ctx.budget_reached is not None:
        reason = f"{reason} ({ctx.budget_reached})"
    await ctx.set_status("failed", ev.RunFailed(reason=reason), values={"failure": reason})


MODES: dict[str, Mode] = {"competition": competition}
