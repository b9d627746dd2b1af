"""What an agent's parts write: journal events and status moves of one session,
with its secrets masked.

Every piece of an agent host (supervision, handshake, turns, permissions, client
methods, updates) receives the host's :class:`Recorder` instead of reaching back
into the host: that keeps the pieces free of each other and of import cycles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec
import sqlalchemy as sa
import trio

from mimird import journal
from mimird.secrets import scrub, scrub_value
from mimird.sessions import records as sessions
from mimird.store import Store
from mimird.wire.types import SessionStatus

P = ParamSpec("P")
T = TypeVar("T")


class Recorder:
    """Journal events and database writes for one session, secrets masked."""

    def __init__(
        self, session_id: str, store: Store, journal_: journal.Journal, secrets: set[str]
    ) -> None:
        self.session_id = session_id
        self.store = store
        self.journal = journal_
        self.secrets = secrets

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets)

    def scrub_value(self, value: Any) -> Any:
        return scrub_value(value, self.secrets)

    async def write(
        self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a store write, shielded: a cancelled caller cannot know whether it
        committed, so it always finishes.

        Cancellation: none; the write completes before the cancel is seen."""
        with trio.CancelScope(shield=True):
            result = await self.store.write(fn, *args, **kwargs)
        return result

    def masked(self, fact: journal.Fact) -> journal.Fact:
        """``fact`` with the session's secrets masked in every string of its data."""
        if not self.secrets:
            return fact
        kind, data = journal.kind_and_data(fact)
        return journal.Verbatim(kind, scrub_value(msgspec.to_builtins(data), self.secrets))

    async def event(self, fact: journal.Fact, text: str | None = None) -> None:
        """Submit a journal event (batched by the journal).

        Cancellation: the event was submitted or not; never half of it."""
        # Secrets never reach the journal (DESIGN.md invariant 9), whatever the agent
        # echoes back: masked in every string of the event and in its indexed text.
        if self.secrets:
            fact = self.masked(fact)
            text = None if text is None else scrub(text, self.secrets)
        await self.journal.submit(self.session_id, fact, text=text)

    async def flush(self) -> None:
        """Wait until the events submitted so far are stored.

        Cancellation: they are stored later by the journal, in order."""
        await self.journal.flush()

    async def move(
        self,
        target: SessionStatus,
        *,
        only_from: frozenset[str],
        reason: str = "",
        values: dict[str, Any] | None = None,
        events: tuple[journal.Fact, ...] = (),
    ) -> sessions.SessionRow | None:
        """Journal ``events`` and move the session to ``target`` if it is in ``only_from``
        (after the batched events submitted so far, so the journal reads in order).

        Cancellation: if cancelled while flushing, nothing moved; once the write
        began it completes (shielded)."""
        await self.journal.flush()
        row: sessions.SessionRow | None = await self.write(
            sessions.transition_if,
            self.session_id,
            target,
            only_from=only_from,
            reason=reason,
            values=values or {},
            events=tuple(self.masked(fact) for fact in events),
        )
        return row
