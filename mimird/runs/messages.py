"""What a session's agent said in one turn: its last message, read back from the
journal (``message`` events of role ``agent`` between the turn's ``prompt`` and its
``turn_ended``), bounded in bytes.

A long message is journaled in pieces (``piece`` 1, 2, ...; ``continued`` on all but
the last); it is read newest first, so that the end of a message (where an answer
line is) is read first and reading stops at the bound: an agent cannot make the
daemon read and hold an endless message.

A plain function that takes a connection (the store runs it in a reader thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec
import sqlalchemy as sa

from mimird.journal import events as stored

#: Events read at once.
_PAGE: Final = 64


@dataclass(frozen=True, slots=True)
class LastMessage:
    #: The message's text; when ``over`` is set, only its end (at most the bound).
    text: str | None
    #: The message is longer than the bound asked for.
    over: bool = False
    #: Its size in bytes (at least the bound plus one when ``over``).
    size: int = 0


class _MessageData(msgspec.Struct):
    role: str = ""
    text: str = ""
    message_id: str | None = None
    piece: int | None = None
    continued: bool = False


_DECODE: Final = msgspec.json.Decoder(_MessageData)


def last_message(
    conn: sa.Connection, session_id: str, after_seq: int, before_seq: int, max_bytes: int
) -> LastMessage:
    """The agent's last message between ``after_seq`` and ``before_seq`` (exclusive)."""
    parts: list[str] = []
    size = 0
    before = before_seq
    while True:
        page = stored.page(
            conn,
            session_id,
            after_seq=after_seq,
            before_seq=before,
            kind="message",
            newest_first=True,
            limit=_PAGE,
        )
        if not page:
            break
        for event in page:
            before = event.seq
            data = _DECODE.decode(event.data)
            if data.role != "agent":
                continue
            if parts and not data.continued:
                return _joined(parts, size)  # the message before the last one
            parts.append(data.text)
            size += len(data.text.encode())
            if size > max_bytes:
                return LastMessage(_end("".join(reversed(parts)), max_bytes), over=True, size=size)
            if data.piece is None or data.piece <= 1:
                return _joined(parts, size)
    return _joined(parts, size) if parts else LastMessage(None)


def last_turn_message(conn: sa.Connection, session_id: str, max_bytes: int) -> LastMessage:
    """The agent's last message in the session's last turn (after its last prompt)."""
    prompts = stored.page(conn, session_id, after_seq=0, kind="prompt", newest_first=True, limit=1)
    if not prompts:
        return LastMessage(None)
    return last_message(
        conn, session_id, prompts[0].seq, stored.head(conn, session_id) + 1, max_bytes
    )


def _joined(parts: list[str], size: int) -> LastMessage:
    return LastMessage("".join(reversed(parts)), size=size)


def _end(text: str, max_bytes: int) -> str:
    """The last ``max_bytes`` bytes of ``text``, on a character boundary."""
    data = text.encode()
    return data[-max_bytes:].decode(errors="ignore") if len(data) > max_bytes else text
