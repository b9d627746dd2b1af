"""The conversation handed over to an agent that could not load it.

When the agent's earlier ACP session was due to be loaded (a resume, or a restart)
and was not (``session/load`` failed, the agent cannot load sessions, or there was
no ACP session to load), the agent starts a new, empty conversation. The next
prompt is then preceded, once, by the session's earlier conversation as the journal
holds it: the user's prompts and the agent's messages, oldest first, as one content
block (an embedded ``resource`` with a text resource, uri
``mimir://session/<id>/history``, when the agent advertised
``promptCapabilities.embeddedContext``; a ``text`` block otherwise, as ACP requires).

It is bounded by the layered ``handoff_max_bytes`` (UTF-8 bytes of the block's
text; 0: nothing is sent): the journal is read newest first, and reading stops at
the bound, so a long session costs no more than the bound; the block says when
older turns were left out. What the journal holds is masked already.

:func:`due` decides after the handshake; :func:`history` reads the journal (a plain
function of a connection: the store runs it in a reader thread); :func:`block`
makes the content block.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import msgspec
import sqlalchemy as sa
import structlog

from mimird.agents.handshake import Handshake
from mimird.journal import events as stored
from mimird.journal.events import Committed

log = structlog.get_logger("mimird.agents.handoff")

#: Events read at once.
_PAGE: Final = 64
#: The most events read for one handoff: thoughts are read but not sent, so the
#: byte bound alone would not stop an agent that thought a million times.
MAX_EVENTS_READ: Final = 100_000
#: Room kept for the note that older turns were left out.
_NOTE_ROOM: Final = 200

Reason = Literal["load_failed", "cannot_load", "no_session"]


@dataclass(frozen=True, slots=True)
class Due:
    """A handoff to send before the next prompt."""

    reason: Reason
    #: Why, in words, for the block's first line.
    why: str
    #: Whether the agent takes embedded resources (``embeddedContext``).
    embedded: bool


def masked(
    done: Handshake, scrub: Callable[[str], str], session_id: str, load: str | None
) -> Handshake:
    """``done`` with the agent's load error (its words) masked, and logged."""
    if done.load_error is None:
        return done
    error = scrub(done.load_error)
    log.warning("agent_session_load_failed", session_id=session_id, load=load, error=error)
    return replace(done, load_error=error)


def due(load_wanted: bool, load: str | None, done: Handshake) -> Due | None:
    """Whether the conversation must be handed over after this handshake: a load
    was wanted (``load_wanted``: a resume or a restart; ``load``: the ACP session
    to load, if any) and did not happen."""
    if not load_wanted or done.loaded:
        return None
    capabilities = done.capabilities if isinstance(done.capabilities, dict) else {}
    prompt = capabilities.get("promptCapabilities")
    embedded = isinstance(prompt, dict) and prompt.get("embeddedContext") is True
    if done.load_error is not None:
        why = f"session/load of {load} failed: {done.load_error}"
        return Due("load_failed", why, embedded)
    if load is None:
        return Due("no_session", "there was no earlier ACP session to load", embedded)
    return Due("cannot_load", "the agent cannot load sessions (no loadSession)", embedded)


@dataclass(frozen=True, slots=True)
class History:
    """The earlier conversation, as sent."""

    text: str
    #: Prompts (user turns) in it, the one cut included.
    turns: int
    #: Whether older turns were left out, or the oldest kept was cut.
    cut: bool

    @property
    def size(self) -> int:
        return len(self.text.encode())


class _Data(msgspec.Struct):
    role: str = ""
    text: str = ""
    content: Any = None
    continued: bool = False


_DECODE: Final = msgspec.json.Decoder(_Data)


def _newest_first(
    conn: sa.Connection, session_id: str, kind: str, before: int
) -> Iterator[Committed]:
    while True:
        page = stored.page(
            conn,
            session_id,
            after_seq=0,
            before_seq=before,
            kind=kind,
            newest_first=True,
            limit=_PAGE,
        )
        if not page:
            return
        yield from page
        before = page[-1].seq


def _prompt_text(content: Any) -> str:
    """A journaled prompt's blocks as text (what is not text, named)."""
    parts: list[str] = []
    for item in content if isinstance(content, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text" and isinstance(item.get("text"), str):
            parts.append(item["text"])
        elif kind in ("resource_link", "resource"):
            inner = item.get("resource") if kind == "resource" else item
            uri = inner.get("uri") if isinstance(inner, dict) else None
            parts.append(f"[{kind}: {uri}]")
        else:
            parts.append(f"[{kind}]")
    return "\n".join(parts)


def _entries(conn: sa.Connection, session_id: str, before_seq: int) -> Iterator[tuple[str, str]]:
    """(who, text) of the conversation, newest first: ``User`` for a prompt,
    ``Agent`` for a message (a message in pieces is one entry); ``("", "")`` when
    :data:`MAX_EVENTS_READ` events were read before the start."""
    merged = heapq.merge(
        _newest_first(conn, session_id, "prompt", before_seq),
        _newest_first(conn, session_id, "message", before_seq),
        key=lambda event: -event.seq,
    )
    pieces: list[str] = []
    for read, event in enumerate(merged):
        if read >= MAX_EVENTS_READ:
            yield "", ""  # the end of what is read: taken as a cut
            return
        data = _DECODE.decode(event.data)
        if event.kind == "prompt":
            if pieces:
                yield "Agent", "".join(reversed(pieces))
                pieces = []
            yield "User", _prompt_text(data.content)
        elif data.role == "agent":
            if pieces and not data.continued:  # the newer message ended before this one
                yield "Agent", "".join(reversed(pieces))
                pieces = []
            pieces.append(data.text)
    if pieces:
        yield "Agent", "".join(reversed(pieces))


def _end(text: str, max_bytes: int) -> str:
    """The end of ``text``, at most ``max_bytes`` UTF-8 bytes."""
    data = text.encode()[-max_bytes:] if max_bytes > 0 else b""
    return data.decode(errors="ignore")


def history(
    conn: sa.Connection, session_id: str, before_seq: int, max_bytes: int, why: str
) -> History | None:
    """The session's conversation before ``before_seq``, the newest turns that fit in
    ``max_bytes`` (the whole text), or None when there is none (or no room)."""
    header = (
        f"Mimir session {session_id}: the conversation so far, oldest first. The agent's "
        f"earlier conversation was not loaded ({why}), so it is given here for context; "
        "it is not a new request.\n"
    )
    budget = max_bytes - len(header.encode()) - _NOTE_ROOM
    if budget <= 0:
        return None
    kept: list[str] = []
    turns, used, cut = 0, 0, False
    for who, text in _entries(conn, session_id, before_seq):
        if not who:
            cut = True
            break
        entry = f"\n### {who}\n{text}\n"
        size = len(entry.encode())
        if used + size > budget:
            cut = True
            left = budget - used - len(f"\n### {who}\n[…]\n".encode())
            if not kept and left > 0:  # the newest alone is too long: its end
                kept.append(f"\n### {who}\n[…]{_end(text, left)}\n")
                turns += who == "User"
            break
        kept.append(entry)
        used += size
        turns += who == "User"
    if not kept:
        return None
    note = ""
    if cut:
        note = (
            f"[Older parts of the conversation were left out to fit handoff_max_bytes "
            f"({max_bytes} bytes): only the newest are here.]\n"
        )
    return History(header + note + "".join(reversed(kept)), turns, cut)


def uri(session_id: str) -> str:
    return f"mimir://session/{session_id}/history"


def block(session_id: str, found: History, embedded: bool) -> dict[str, Any]:
    """The content block that carries ``found``: an embedded text resource, or a
    text block for an agent that does not take them; either with
    ``_meta.mimir.handoff`` (the uri)."""
    # Marked, so that a client (or a test) reading what the agent got tells it apart.
    meta = {"mimir": {"handoff": uri(session_id)}}
    if not embedded:
        return {"type": "text", "text": found.text, "_meta": meta}
    resource = {"uri": uri(session_id), "mimeType": "text/markdown", "text": found.text}
    return {"type": "resource", "resource": resource, "_meta": meta}


__all__ = ["Due", "History", "block", "due", "history", "masked", "uri"]
