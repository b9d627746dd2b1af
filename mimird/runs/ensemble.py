"""``ensemble``: the members work on the task as in a competition (their turns, then
their checks); then an integration session combines their work.

The integration session is a session of the run in slot 0 (:data:`INTEGRATION_SLOT`;
the members are 1..n): agent kind ``integration_agent`` (default: the first
member's), in a fresh worktree from the run's base commit on the branch
``mimir/run-<id>/integration-<agent>``, prompted with every member's diff and check
result (:func:`mimird.runs.prompts.integration_prompt`, bounded by ``[runs]
prompt_max_bytes``). Its turn is a member's turn in every other way: journaled
(``member_started``/``member_finished`` of slot 0), its work committed to its branch
and measured, shown by ``run.get`` among the members. The run's
``integration_phase`` goes ``pending`` (the members work) → ``in_progress`` (its
turn) → ``completed``, or ``failed`` when its agent could not start or its turn
did not end as meant.

Then the run's check command runs on its result. Passed (or no check command): the
integration wins (``decision`` by ``ensemble``, winner 0) and is brought home like a
competition's winner. Its check failed, or the integration failed: the run decides
among the members (and a checked integration) by its judge, as a competition does
(``user``: ``run.pick`` may choose slot 0 too). A debate with ``then: "ensemble"``
ends with the same integration (:func:`integrate`).
"""

from __future__ import annotations

from typing import Final

import structlog

from mimird.errors import MimirError
from mimird.runs import material, modes, prompts
from mimird.runs.context import RunContext
from mimird.runs.records import RunRow
from mimird.wire import run_events as ev
from mimird.wire.runs import INTEGRATION_SLOT

log = structlog.get_logger("mimird.runs")

#: The phases after which the members' turns are over.
_AFTER_MEMBERS: Final = frozenset({"in_progress", "completed", "failed"})


def finished_members(run: RunRow) -> list[int]:
    """The members (not the integration) whose last turn finished."""
    return [
        slot
        for slot in run.slots
        if slot != INTEGRATION_SLOT and run.member(slot).get("outcome") == "finished"
    ]


async def ensemble(ctx: RunContext) -> None:
    """The mode: the members' turns and checks (unless a resume finds them done),
    then :func:`integrate`."""
    run = await ctx.row()
    if run.integration_phase is None:
        run = await ctx.update({"integration_phase": "pending"})
    if run.integration_phase in _AFTER_MEMBERS:
        finished = finished_members(run)
    else:
        finished = await modes.work(ctx)
        if not finished:
            await _no_integration(ctx, "no member finished its turn")
            return
        await ctx.set_status("checking")
        await ctx.check_all(finished)
    await integrate(ctx, finished)


async def integrate(ctx: RunContext, finished: list[int]) -> None:
    """The integration session's turn (unless done), its check, then the decision:
    the integration when its check passed, else among ``finished`` by the judge.

    Cancellation: the integration's turn is cancelled (journaled); the run stays
    ``integrating`` for a resume, which prompts the integration session again."""
    run = await ctx.row()
    if run.integration_phase == "failed" or (
        run.integration_phase != "completed" and not await _integration_turn(ctx)
    ):
        await modes.decide(ctx, finished)
        return
    run = await ctx.row()
    check = run.member(INTEGRATION_SLOT).get("check")
    if run.check_command is not None and check is None:
        await ctx.set_status("checking")
        outcome = await ctx.check(INTEGRATION_SLOT)
        passed = outcome is None or outcome.passed
    else:
        passed = check is None or bool(check.get("passed"))
    if not passed:
        await ctx.journal(
            ev.RunNote(
                slot=INTEGRATION_SLOT,
                text="the integration's check failed: the run decides among the members "
                "and the integration",
            )
        )
        await modes.decide(ctx, [*finished, INTEGRATION_SLOT])
        return
    combined = ", ".join(map(str, finished)) or "none"
    reasons = f"the integration session combined the work of members {combined}" + (
        "; its check passed" if run.check_command is not None else ""
    )
    await modes.record_decision(ctx, INTEGRATION_SLOT, "ensemble", reasons)
    await modes.finish(ctx)


async def _integration_turn(ctx: RunContext) -> bool:
    """Make (or find) the integration session and run its turn; True when it
    finished (its work committed), False when it failed (journaled, phase failed)."""
    run = await ctx.row()
    await ctx.set_status("integrating")
    agent = run.options.get("integration_agent") or run.options["agents"][0]
    work = [m for m in await material.members_work(ctx) if m.slot != INTEGRATION_SLOT]
    built = prompts.integration_prompt(
        run.task, work, ctx.runs.settings.runs.prompt_max_bytes, check_command=run.check_command
    )
    text = built.text
    # Found by its slot, not by integration_session_id: a crash may have come between
    # the session's making and that record.
    row = dict(await ctx.members()).get(INTEGRATION_SLOT)
    if row is None:
        title = run.title or run.task.strip().splitlines()[0][:80]
        try:
            row = await ctx.create_session(
                agent,
                f"integration of run {title}",
                run.task,
                role="integration",
                slot=INTEGRATION_SLOT,
            )
        except MimirError as exc:
            reason = f"the integration session could not be made: {exc.message}"
            await ctx.update(
                {"integration_phase": "failed"},
                ev.IntegrationEnded(session_id=None, outcome="failed", reason=reason),
            )
            return False
        await ctx.set_member(INTEGRATION_SLOT, {"outcome": "pending"})
    elif run.member(INTEGRATION_SLOT).get("outcome") in ("working", "interrupted"):
        text = modes.RESUME_PREFIX + text  # its turn was cut short by a restart
    await ctx.update(
        {"integration_phase": "in_progress", "integration_session_id": row.id},
        ev.IntegrationStarted(
            session_id=row.id,
            agent=agent,
            branch=row.branch,
            prompt=await material.sent(ctx, built, row),
        ),
    )
    async with modes.budget_guard(ctx):
        turn = await ctx.run_member(INTEGRATION_SLOT, text, round_=max(run.round, 1))
    if turn.outcome != "finished":
        await ctx.update(
            {"integration_phase": "failed"},
            ev.IntegrationEnded(
                session_id=row.id,
                outcome="failed",
                reason=turn.reason,
                stop_reason=turn.stop_reason,
            ),
        )
        log.info("run_integration_failed", run_id=run.id, reason=turn.reason)
        return False
    known = (await ctx.row()).member(INTEGRATION_SLOT)
    await ctx.update(
        {"integration_phase": "completed"},
        ev.IntegrationEnded(
            session_id=row.id,
            outcome="completed",
            stop_reason=turn.stop_reason,
            files_changed=known.get("files_changed"),
            lines_added=known.get("lines_added"),
            lines_deleted=known.get("lines_deleted"),
        ),
    )
    return True


async def _no_integration(ctx: RunContext, reason: str) -> None:
    await ctx.update({"integration_phase": "failed"})
    await modes.fail(ctx, reason)
