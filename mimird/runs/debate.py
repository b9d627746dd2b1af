"""``debate``: ``rounds`` rounds (1..5). Round 1 is a competition's work: every member
is given the task. In each later round every member still in the debate (its last
turn finished) is prompted again, in its own worktree and conversation, with the
other members' diffs, check results and summaries (their last message), and asked
to critique them and its own work and to revise its own
(:func:`mimird.runs.prompts.debate_prompt`, bounded by ``[runs] prompt_max_bytes``).
After each round the check command runs in every prompted member's worktree.

Each round is journaled in the run: ``round_started`` (every prompt: its session,
size, the pieces cut to fit, the start of its text) and ``round_ended`` (every
member's outcome, figures, check and summary); the members' own
``member_started``/``member_finished`` carry the round. A round with fewer than two
members left is not held (a note says so).

After the last round: the decision as in a competition (``then: "decide"``, by the
run's judge), or an integration as in an ensemble (``then: "ensemble"``). A resume
goes on with the round the run was in: the members that had not finished it are
prompted again.
"""

from __future__ import annotations

from typing import Final

from mimird.runs import ensemble, material, messages, modes, prompts
from mimird.runs.context import DONE, RunContext
from mimird.runs.records import RunRow
from mimird.wire import run_events as ev
from mimird.wire.runs import INTEGRATION_SLOT

#: The outcomes of a member still in the debate (``working``/``interrupted``: a round
#: cut short by a restart).
_IN_DEBATE: Final = frozenset({"finished", "working", "interrupted"})


async def debate(ctx: RunContext) -> None:
    """The mode: every round from where the run is, then the decision or integration."""
    run = await ctx.row()
    rounds = int(run.options.get("rounds", 1))
    then = run.options.get("then", "decide")
    if then == "ensemble":
        if run.integration_phase is None:
            run = await ctx.update({"integration_phase": "pending"})
        if run.integration_phase != "pending":  # the rounds are over
            await ensemble.integrate(ctx, ensemble.finished_members(run))
            return
    first = max(run.round, 1)
    if first == 1:
        await _first_round(ctx, rounds)
        first = 2
    for round_ in range(first, rounds + 1):
        if not await _later_round(ctx, round_, rounds):
            break
    run = await ctx.row()
    finished = ensemble.finished_members(run)
    if not finished:
        await modes.fail(ctx, "no member finished its turn")
        return
    if then == "ensemble":
        await ensemble.integrate(ctx, finished)
    else:
        await modes.decide(ctx, finished)


async def _first_round(ctx: RunContext, rounds: int) -> None:
    run = await ctx.row()
    members = await ctx.members()
    if run.round == 0:  # not a resume
        sent = []
        for slot, row in members:
            text = await ctx.prompt_text(row, run)
            built = prompts.Built(text=text, token="")
            sent.append(await material.sent(ctx, built, row, slot))
        await ctx.journal(ev.RoundStarted(round=1, rounds=rounds, prompts=sent))
    slots = [slot for slot, _ in members if slot != INTEGRATION_SLOT]
    unfinished = [s for s in slots if run.member(s).get("outcome") not in DONE]
    if run.round > 1 or not (unfinished or _unchecked(run, slots)):
        return  # a resume after round 1 was over
    await modes.work(ctx, round_=1)
    await _end_round(ctx, 1, rounds, slots, slots)


async def _later_round(ctx: RunContext, round_: int, rounds: int) -> bool:
    """Round ``round_``; False when it was not held (fewer than two members left).

    Cancellation: the members' turns are cancelled (journaled); those not done stay
    ``working`` in the run's records, and a resume prompts them again."""
    run = await ctx.row()
    active = [
        slot
        for slot in run.slots
        if slot != INTEGRATION_SLOT and run.member(slot).get("outcome") in _IN_DEBATE
    ]
    if len(active) < 2:
        await ctx.journal(
            ev.RunNote(
                text=f"round {round_} of {rounds} was not held: fewer than two members "
                "are still in the debate"
            )
        )
        return False
    pending = [
        slot
        for slot in active
        if not (
            run.member(slot).get("outcome") == "finished"
            and int(run.member(slot).get("round") or 1) >= round_
        )
    ]
    if not pending:  # a resume after the round's turns: only its checks may be missing
        missing = _unchecked(run, active)
        if missing:
            await _end_round(ctx, round_, rounds, missing, active)
        return True
    sessions = dict(await ctx.members())
    work = await material.members_work(ctx, with_summary=True, slots=active)
    bound = ctx.runs.settings.runs.prompt_max_bytes
    texts: dict[int, str] = {}
    sent: list[ev.PromptSent] = []
    for me in work:
        if me.slot not in pending:
            continue
        others = [m for m in work if m.slot != me.slot]
        built = prompts.debate_prompt(run.task, me, others, round_, rounds, bound)
        texts[me.slot] = built.text
        sent.append(await material.sent(ctx, built, sessions[me.slot], me.slot))
    if sent:
        for slot in pending:
            await ctx.set_member(slot, {"check": None})  # checked again after this round
        await ctx.journal(ev.RoundStarted(round=round_, rounds=rounds, prompts=sent))
    await modes.work(ctx, round_=round_, prompts=texts)
    await _end_round(ctx, round_, rounds, pending, active)
    return True


def _unchecked(run: RunRow, slots: list[int]) -> list[int]:
    """The members of ``slots`` whose turn finished and whose check has not run."""
    if run.check_command is None:
        return []
    return [
        s
        for s in slots
        if run.member(s).get("outcome") == "finished" and run.member(s).get("check") is None
    ]


async def _end_round(
    ctx: RunContext, round_: int, rounds: int, prompted: list[int], active: list[int]
) -> None:
    """The checks of the members in the debate that finished the round and are not
    checked yet (a resumed round: those checked before the restart are not checked
    again), then ``round_ended`` with the results of those ``prompted``."""
    run = await ctx.row()
    finished = [s for s in active if run.member(s).get("outcome") == "finished"]
    if finished:
        await ctx.set_status("checking")
        await ctx.check_all(finished)
    run = await ctx.row()
    sessions = dict(await ctx.members())
    results = []
    for slot in prompted:
        known = run.member(slot)
        check = known.get("check") or {}
        last = await ctx.runs.store.read(
            messages.last_turn_message, sessions[slot].id, material.JOURNALED_SUMMARY_CHARS * 4
        )
        summary = (last.text or "")[-material.JOURNALED_SUMMARY_CHARS :] or None
        results.append(
            ev.RoundResult(
                slot=slot,
                outcome=str(known.get("outcome")),
                stop_reason=known.get("stop_reason"),
                files_changed=known.get("files_changed"),
                lines_added=known.get("lines_added"),
                lines_deleted=known.get("lines_deleted"),
                check_exit_code=check.get("exit_code"),
                check_summary=check.get("summary"),
                summary=summary,
            )
        )
    await ctx.journal(ev.RoundEnded(round=round_, rounds=rounds, results=results))
