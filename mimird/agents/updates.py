"""What an agent tells Mimir without asking: ``session/update`` notifications
turned into journal events.

Each update is journaled as an ``update`` event (its params verbatim, secrets
masked). Message chunks are also gathered into one ``message`` event per
message, journaled once the message is complete (at the next update of another
kind, role or message id, at the end of a turn, when the agent exits). With
secrets configured, a chunk that may end with the start of a secret is held back
until the next chunk says what follows (:class:`~mimird.secrets.ChunkMasker`).

A message is gathered in memory only up to a bound (``[supervision]
message_piece_bytes``, its text's size as stored): past it, the text gathered so
far is journaled as a piece (``piece`` 1, 2, ..., ``continued`` while more
follows), so that an agent streaming one endless message holds neither the
daemon's memory nor one huge row. A piece ends after a space or a newline near
the bound when there is one (a word stays whole for search), never inside a
secret, and never in text whose ``update`` is still held back by the masker
(a piece comes after the updates it is made of).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import structlog

from mimird import journal
from mimird.agents.recorder import Recorder
from mimird.secrets import ChunkMasker, forms
from mimird.wire import events

log = structlog.get_logger("mimird.agents.updates")

#: A message's chunks are joined by this many at a time while it streams.
MESSAGE_PARTS_JOINED: Final = 1024
#: The default of ``[supervision] message_piece_bytes``.
MESSAGE_PIECE_BYTES: Final = 1 << 20
#: A ``messageId`` longer than this (or not a string) is not stored.
MAX_MESSAGE_ID_CHARS: Final = 256
#: A piece may end this far (a fraction of it) before the bound, after a space.
_WORD_SEARCH: Final = 8

_ENCODER: Final = msgspec.json.Encoder()


def _stored_size(text: str) -> int:
    """The size of ``text`` as the journal stores it: JSON-escaped UTF-8, no quotes."""
    return len(_ENCODER.encode(text)) - 2


@dataclass(slots=True)
class _Gathered:
    """The message being gathered: what is not journaled yet of its text."""

    role: str
    #: As the agent sent it (compared with the next chunk's).
    id: Any
    blocks: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    #: The stored size of ``blocks`` and ``parts``.
    size: int = 0
    #: Pieces journaled so far.
    pieces: int = 0

    def text(self) -> str:
        return "".join([*self.blocks, *self.parts])

    def keep(self, rest: str, size: int) -> None:
        self.blocks, self.parts, self.size = [rest], [], size


class Updates:
    """The notifications of one agent, turned into events in wire order."""

    def __init__(self, recorder: Recorder, piece_bytes: int = MESSAGE_PIECE_BYTES) -> None:
        self._recorder = recorder
        self._piece_bytes = piece_bytes
        #: Updates that ``session/load`` replays are history already journaled.
        self._loading = False
        self._message: _Gathered | None = None
        #: Holds back a message chunk while it may end with part of a secret.
        self._masker: ChunkMasker[Any] = ChunkMasker(recorder.secrets)
        #: No piece ends inside any form of a secret (each is masked whole).
        self._secrets = forms(recorder.secrets)
        #: Characters of the chunks the masker holds back (the end of the message).
        self._held_chars = 0

    @property
    def loading(self) -> bool:
        """Whether ``session/load`` is replaying history."""
        return self._loading

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        """While ``session/load`` runs: its replayed updates are not journaled again."""
        self._loading = True
        try:
            yield
        finally:
            self._loading = False

    async def on_notification(self, method: str, params: Any) -> None:
        """Journal one notification.

        Cancellation: a chunk may be held in the message being gathered; the next
        :meth:`flush_message` journals it."""
        if method != "session/update":
            await self._recorder.event(events.AgentNotification(method=method, params=params))
            return
        if self._loading:
            return  # session/load replays history that is in the journal already
        update = params.get("update") if isinstance(params, dict) else None
        kind = update.get("sessionUpdate") if isinstance(update, dict) else None
        text: str | None = None
        if kind in ("agent_message_chunk", "agent_thought_chunk"):
            content = update.get("content") if isinstance(update, dict) else None
            if isinstance(content, dict) and content.get("type") == "text":
                chunk = content.get("text")
                if isinstance(chunk, str):
                    await self._gather(params, update, kind, chunk)
                    return
        else:
            await self.flush_message()
            if kind in ("tool_call", "tool_call_update") and isinstance(update, dict):
                title = update.get("title")
                text = title if isinstance(title, str) else None
        await self._journal_chunks(self._masker.flush())  # chunks held back go first
        await self._recorder.event(journal.Verbatim("update", params), text=text)

    async def _gather(self, params: Any, update: Any, kind: str, chunk: str) -> None:
        """Journal a message chunk's update, and add its text to the message."""
        role = "agent" if kind == "agent_message_chunk" else "thought"
        message_id = update.get("messageId")
        current = self._message
        if current is None or current.role != role or current.id != message_id:
            await self.flush_message()
            current = self._message = _Gathered(role=role, id=message_id)
        current.parts.append(chunk)
        current.size += _stored_size(chunk)
        if len(current.parts) >= MESSAGE_PARTS_JOINED:
            # Joined as they come: a long message is a few large blocks,
            # freed whole, not a small string per chunk all over the heap.
            current.blocks.append("".join(current.parts))
            current.parts.clear()
        if self._recorder.secrets:
            self._held_chars += len(chunk)
            await self._journal_chunks(self._masker.feed(params, chunk))
        else:
            await self._recorder.event(journal.Verbatim("update", params))
        if current.size > self._piece_bytes:
            await self._journal_pieces(current, final=False)

    async def _journal_chunks(self, released: list[tuple[Any, str]]) -> None:
        """Journal message chunks the masker released, each with its masked text."""
        for params, text in released:
            self._held_chars -= len(params["update"]["content"]["text"])
            await self._recorder.event(journal.Verbatim("update", _with_chunk_text(params, text)))

    async def _journal_pieces(self, message: _Gathered, *, final: bool) -> None:
        """Journal the message's text in pieces while it is larger than the bound
        (all of it when ``final``, else what the masker released).

        Cancellation: what was journaled has left the message; the rest stays."""
        text, size = message.text(), message.size
        safe = len(text) - (0 if final else self._held_chars)
        while size > self._piece_bytes:
            cut = _piece_end(text, size, self._piece_bytes, safe, self._secrets)
            if cut <= 0:
                break  # nothing may end a piece yet: wait for more text
            piece, text = text[:cut], text[cut:]
            safe -= cut
            size -= _stored_size(piece)
            message.keep(text, size)
            message.pieces += 1
            await self._journal_message(message, piece, continued=True)
        message.keep(text, size)

    async def _journal_message(self, message: _Gathered, text: str, *, continued: bool) -> None:
        message_id = message.id
        if not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID_CHARS:
            message_id = None
        done = events.Message(
            role=message.role,
            text=text,
            message_id=message_id,
            piece=message.pieces or None,
            continued=continued,
        )
        await self._recorder.event(done, text=text)

    async def flush_message(self) -> None:
        """Journal the chunks held back and the message being gathered, if any.

        Cancellation: what was submitted before the cancel is journaled; the
        message itself is taken out first, so it is journaled at most once."""
        await self._journal_chunks(self._masker.flush())
        self._held_chars = 0
        message, self._message = self._message, None
        if message is None:
            return
        await self._journal_pieces(message, final=True)
        if message.pieces:
            message.pieces += 1
        await self._journal_message(message, message.text(), continued=False)

    async def on_protocol_error(self, line_preview: str, reason: str) -> None:
        """Journal a line of the agent that was skipped.

        Cancellation: the event was submitted or not."""
        log.warning("agent_protocol_error", session_id=self._recorder.session_id, reason=reason)
        await self._recorder.event(
            events.AgentProtocolError(reason=reason, preview=self._recorder.scrub(line_preview))
        )


def _piece_end(text: str, size: int, bound: int, safe: int, secrets: Sequence[str]) -> int:
    """Where the next piece of ``text`` (``size`` bytes stored) ends: at most ``bound``
    bytes stored and ``safe`` characters, after a space or newline near there if
    there is one, and never inside a secret. 0 when no piece can end yet."""
    cut = min(safe, len(text) * bound // size)
    excess = _stored_size(text[:cut]) - bound
    if excess > 0:
        cut -= excess  # every character takes at least one byte
    if cut <= 0:
        return 0
    near = cut - cut // _WORD_SEARCH
    space = max(text.rfind(" ", near, cut), text.rfind("\n", near, cut))
    if space >= 0:
        cut = space + 1
    moved = True
    while moved and cut > 0:
        # A secret across the cut would be in neither piece whole, and neither
        # piece's masking would find it.
        moved = False
        for secret in secrets:
            start = text.find(secret, max(0, cut - len(secret) + 1), cut + len(secret) - 1)
            if 0 <= start < cut:
                cut, moved = start, True
    return cut


def _with_chunk_text(params: Any, text: str) -> Any:
    """A message chunk's update with its text replaced (by its masked form)."""
    update = params["update"]
    if update["content"]["text"] == text:
        return params
    return {**params, "update": {**update, "content": {**update["content"], "text": text}}}
