"""What the prompts of a run's modes are made of: each member's work as
:class:`~mimird.runs.prompts.MemberWork` (its outcome, diff, figures, check, last
message), and the record of a prompt sent, for the run's journal."""

from __future__ import annotations

from typing import Final

import structlog

from mimird.errors import MimirError
from mimird.runs import messages, prompts
from mimird.runs.context import RunContext
from mimird.runs.prompts import Built, MemberWork
from mimird.secrets import scrub
from mimird.sessions.records import SessionRow
from mimird.wire import run_events as ev

log = structlog.get_logger("mimird.runs")

#: The start of a prompt kept in the run's journal (the whole of it is in the
#: session's own journal, as its ``prompt`` event).
JOURNALED_PROMPT_CHARS: Final = 16 * 1024
#: A member's last message, as a debate round's result shows it.
JOURNALED_SUMMARY_CHARS: Final = 2000


async def members_work(
    ctx: RunContext, *, with_summary: bool = False, slots: list[int] | None = None
) -> list[MemberWork]:
    """Every member's work (of ``slots`` only, when given), by slot: its diff
    against the base cut to ``[runs] prompt_max_bytes`` (no prompt could hold more),
    and with ``with_summary`` its last message (the end of it, at most as much).

    Cancellation: nothing changes."""
    run = await ctx.row()
    bound = ctx.runs.settings.runs.prompt_max_bytes
    found: list[MemberWork] = []
    for slot, row in await ctx.members():
        if slots is not None and slot not in slots:
            continue
        known = run.member(slot)
        status = str(known.get("outcome", "pending"))
        try:
            diff, _ = await ctx.member_patch(slot, bound)
        except MimirError as exc:  # one member's broken worktree does not stop the others
            log.warning("run_member_diff_unread", run_id=run.id, slot=slot, error=exc.message)
            diff, status = "", f"{status}; its diff could not be read"
        check = known.get("check")
        summary = ""
        if with_summary:
            last = await ctx.runs.store.read(messages.last_turn_message, row.id, bound)
            summary = last.text or ""
        found.append(
            MemberWork(
                slot=slot,
                agent=row.agent or "",
                status=status,
                diff=diff,
                files_changed=known.get("files_changed") or 0,
                insertions=known.get("lines_added") or 0,
                deletions=known.get("lines_deleted") or 0,
                check=None
                if check is None
                else prompts.Check(check.get("exit_code"), str(check.get("summary") or "")),
                summary=summary,
            )
        )
    return found


async def sent(
    ctx: RunContext, built: Built, row: SessionRow, slot: int | None = None
) -> ev.PromptSent:
    """A prompt as the run's journal records it: its size, what was cut, its start,
    the session's secrets masked (a member may have written one into a file).

    Cancellation: nothing changes."""
    secrets = (await ctx.runs.sessions.effective(row)).secret_values()
    return ev.PromptSent(
        session_id=row.id,
        slot=slot,
        bytes=built.bytes,
        text=scrub(built.text[:JOURNALED_PROMPT_CHARS], secrets),
        text_cut=len(built.text) > JOURNALED_PROMPT_CHARS,
        cut=list(built.cut),
    )
