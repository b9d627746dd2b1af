"""The judge's answer (``judge: "agent"``), read defensively: what a judge writes is
hostile input, like anything an agent sends.

The format (asked for by :func:`mimird.runs.prompts.judge_prompt`): the judge's last
message of its turn ends with one line ``WINNER-<token>: <slot>``, where ``<token>``
is the random token of its prompt, after its reasons. Around the line, whitespace
and Markdown emphasis (``*``, `````, ``_``) are tolerated, and so are ``winner`` in
any case and ``slot 2`` for ``2``. The reasons are the rest of the message.

A line naming a winner without the token (one a member planted in its diff and the
judge quoted back, or a judge that did not follow the format) is not an answer. No
answer, an answer naming a slot that is not a member's (or not one that may win), two
lines naming different slots, or a message longer than :data:`MAX_ANSWER_BYTES` give
a :class:`Verdict` without a winner that says why: the run then waits for
``run.pick``. The reasons are kept in any case, masked and bounded, so that the user
sees what the judge said.

The judge itself (:func:`by_agent`) is a session of the run, not a member: agent kind
``judge_agent`` (default: the first member's), in a worktree of its own at the run's
base commit (so that it cannot change a member's work, nor the user's checkout), on
the branch ``mimir/run-<id>/judge-<agent>``, its tool policy denying edits, deletes
and moves (a request to change a file is refused at once, never left waiting for a
user). Its prompt and its answer are journaled in the run (``judge_started``,
``judge_decided``); once it answered, its agent is stopped and the session completed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
import structlog
import trio

from mimird.errors import MimirError
from mimird.runs import material, messages, prompts
from mimird.runs.context import ENDED, RunContext
from mimird.runs.messages import LastMessage
from mimird.secrets import scrub
from mimird.sessions.records import SessionRow
from mimird.store.schema import run_events
from mimird.wire import run_events as ev

log = structlog.get_logger("mimird.runs")

#: The judge's tool policy on top of the run's: it reads, it does not write.
JUDGE_DENIES: Final = {"edit": "deny", "delete": "deny", "move": "deny"}
#: How long putting the judge's session away may hold off a cancel.
PUT_AWAY_TIMEOUT_S: Final = 30.0
#: The largest answer read: a longer last message is no answer.
MAX_ANSWER_BYTES: Final = 64 * 1024
#: The reasons kept in the run (characters), and what marks a cut.
MAX_REASONS_CHARS: Final = 4000
CUT_MARK: Final = " [...]"
#: Characters tolerated around the answer line (Markdown emphasis, quotes, spaces).
_DECORATION: Final = " \t*`_>\"'"
_WINNER_WORD: Final = re.compile(r"\bwinner\b", re.IGNORECASE)
_SLOT: Final = re.compile(r"(?:slot\s*|member\s*|#)?([0-9]{1,6})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the judge decided: a winner, or why there is none; its reasons."""

    winner: int | None
    #: The judge's words around its answer (masked, at most MAX_REASONS_CHARS).
    reasons: str
    #: Why the answer is not valid (None when ``winner`` is set).
    problem: str | None = None


def parse_answer(
    text: str | None, token: str, slots: Collection[int], secrets: set[str]
) -> Verdict:
    """The verdict in the judge's last message ``text`` (None: it sent none), whose
    prompt had ``token``; ``slots`` are the members that may win; ``secrets`` are
    masked in the reasons."""
    if not text or not text.strip():
        return Verdict(None, "", "the judge gave no answer (no message in its turn)")
    size = len(text.encode())
    if size > MAX_ANSWER_BYTES:
        return Verdict(
            None,
            reasons_of(text, secrets),
            f"the judge's answer is {size} bytes, more than the {MAX_ANSWER_BYTES} read",
        )
    pattern = re.compile(rf"winner-{re.escape(token)}\s*:\s*(.*)", re.IGNORECASE)
    named: list[str] = []
    kept: list[str] = []
    untokened = False
    for line in text.splitlines():
        bare = line.strip(_DECORATION)
        found = pattern.fullmatch(bare)
        if found is None:
            untokened = untokened or bool(_WINNER_WORD.search(bare) and ":" in bare)
            kept.append(line)
            continue
        named.append(found.group(1).strip(_DECORATION))
    reasons = reasons_of("\n".join(kept), secrets)
    if not named:
        hint = " (a line named a winner without the prompt's token: not an answer)"
        return Verdict(
            None,
            reasons,
            f"the judge's answer has no line 'WINNER-{token}: <slot>'"
            + (hint if untokened else ""),
        )
    chosen: set[int] = set()
    for value in named:
        slot = _SLOT.fullmatch(value)
        if slot is None:
            return Verdict(
                None,
                reasons,
                f"the judge's answer names {_short(scrub(value, secrets))!r}, which is not a slot",
            )
        chosen.add(int(slot.group(1)))
    if len(chosen) > 1:
        listed = ", ".join(map(str, sorted(chosen)))
        return Verdict(None, reasons, f"the judge's answer names several winners ({listed})")
    (winner,) = chosen
    if winner not in slots:
        allowed = ", ".join(map(str, sorted(slots))) or "none"
        return Verdict(
            None,
            reasons,
            f"the judge's answer names slot {winner}, which is not a member that may win "
            f"(slots: {allowed})",
        )
    return Verdict(winner, reasons)


def reasons_of(text: str, secrets: set[str]) -> str:
    """``text`` masked, trimmed and cut to :data:`MAX_REASONS_CHARS` (the mask first,
    so that no part of a secret is left at the cut)."""
    masked = scrub(text, secrets).strip()
    if len(masked) <= MAX_REASONS_CHARS:
        return masked
    return masked[: MAX_REASONS_CHARS - len(CUT_MARK)] + CUT_MARK


def _short(text: str) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def verdict_of(
    message: LastMessage, token: str, slots: Collection[int], secrets: set[str]
) -> Verdict:
    """The verdict in the judge's last message as read from the journal (at most
    :data:`MAX_ANSWER_BYTES` of it: a longer one is no valid answer)."""
    if message.over:
        return Verdict(
            None,
            reasons_of(message.text or "", secrets),
            f"the judge's answer is more than the {MAX_ANSWER_BYTES} bytes read",
        )
    return parse_answer(message.text, token, slots, secrets)


async def by_agent(ctx: RunContext, candidates: list[int]) -> tuple[int | None, str]:
    """The run's decision by a judge session among ``candidates``: ``(winner,
    reasons)``, or ``(None, why there is none)``; journaled (``judge_started``,
    ``judge_decided``).

    Cancellation: the judge's turn is cancelled (journaled in its session); nothing
    is recorded in the run after ``judge_started``."""
    run = await ctx.row()
    bound = ctx.runs.settings.runs.prompt_max_bytes
    agent = run.options.get("judge_agent") or run.options["agents"][0]
    built = prompts.judge_prompt(
        run.task, await material.members_work(ctx), bound, eligible=candidates
    )
    # A run judged again (resumed after a restart cut its judge short) has a judge
    # session already, on its own branch: the next one is judge2, judge3, ...
    earlier = len(await ctx.runs.store.read(_judges_started, run.id))
    try:
        row = await ctx.create_session(
            agent,
            f"judge of run {run.title or run.task.strip().splitlines()[0][:80]}",
            run.task,
            config=judge_config(run.config),
            role="judge" if not earlier else f"judge{earlier + 1}",
        )
    except MimirError as exc:
        problem = f"the judge's session could not be made: {exc.message}"
        await ctx.journal(
            ev.JudgeDecided(session_id=None, winner=None, reasons="", problem=problem)
        )
        return None, problem
    await ctx.journal(
        ev.JudgeStarted(session_id=row.id, agent=agent, prompt=await material.sent(ctx, built, row))
    )
    try:
        verdict = await _ask(ctx, row, built, candidates)
    finally:
        # However it ended (answered, failed, the run cancelled), the judge's agent
        # does not outlive its answer.
        with trio.move_on_after(PUT_AWAY_TIMEOUT_S, shield=True):
            await _put_away(ctx, row)
    await ctx.journal(
        ev.JudgeDecided(
            session_id=row.id,
            winner=verdict.winner,
            reasons=verdict.reasons,
            problem=verdict.problem,
        )
    )
    log.info("run_judged", run_id=run.id, winner=verdict.winner, problem=verdict.problem)
    if verdict.winner is None:
        assert verdict.problem is not None
        return None, verdict.problem
    return verdict.winner, verdict.reasons or "the judge gave no reasons"


async def _ask(
    ctx: RunContext, row: SessionRow, built: prompts.Built, candidates: list[int]
) -> Verdict:
    """The judge's turn, and the verdict in its last message."""
    secrets = (await ctx.runs.sessions.effective(row)).secret_values()
    try:
        turn = await ctx.prompt_session(row, built.text)
    except MimirError as exc:
        return Verdict(None, "", f"the judge's agent failed: {exc.message}")
    if ctx.budget_reached is not None:
        return Verdict(None, "", f"the judge was stopped: {ctx.budget_reached}")
    if turn.stop_reason not in ENDED:
        return Verdict(None, "", f"the judge's turn ended with {turn.stop_reason}")
    said = await ctx.runs.store.read(
        messages.last_message, row.id, turn.prompt_seq, turn.end_seq, MAX_ANSWER_BYTES
    )
    return verdict_of(said, built.token, candidates, secrets)


async def _put_away(ctx: RunContext, row: SessionRow) -> None:
    """Complete the judge's session (its agent stopped); one that cannot complete
    (its agent failed) is stopped."""
    try:
        await ctx.runs.agents.complete_session(row, ctx.runs.sessions, None, by="run")
    except MimirError as exc:
        log.info("run_judge_not_completed", session_id=row.id, error=exc.message)
        with contextlib.suppress(MimirError):
            await ctx.runs.agents.stop(row.id, reason="run_judged")


def _judges_started(conn: sa.Connection, run_id: str) -> list[int]:
    """The seqs of the run's ``judge_started`` events."""
    return list(
        conn.execute(
            sa.select(run_events.c.seq).where(
                run_events.c.run_id == run_id, run_events.c.kind == ev.JudgeStarted.KIND
            )
        ).scalars()
    )


def judge_config(run_config: dict[str, Any]) -> dict[str, Any]:
    """The judge session's config on top of the run's: the run's tool policy, with
    edits, deletes and moves denied (the other kinds as the run says)."""
    policy = run_config.get("tool_policy")
    return {"tool_policy": {**(policy if isinstance(policy, dict) else {}), **JUDGE_DENIES}}
