"""What an agent tells Mimir without asking: ``session/update`` notifications
turned into journal events.

Each update is journaled as an ``update`` event (its params verbatim, secrets
masked). Message chunks are also gathered into one ``message`` event per
message, journaled once the message is complete (at the next update of another
kind, role or message id, at the end of a turn, when the agent exits). With
secrets configured, a chunk that may end with the start of a secret is held back
until the next chunk says what follows (:class:`~mimird.secrets.ChunkMasker`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

import structlog

from mimird import journal
from mimird.agents.recorder import Recorder
from mimird.secrets import ChunkMasker
from mimird.wire import events

log = structlog.get_logger("mimird.agents.updates")

#: A message's chunks are joined by this many at a time while it streams.
MESSAGE_PARTS_JOINED: Final = 1024


class Updates:
    """The notifications of one agent, turned into events in wire order."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        #: Updates that ``session/load`` replays are history already journaled.
        self._loading = False
        self._message: dict[str, Any] | None = None
        #: Holds back a message chunk while it may end with part of a secret.
        self._masker: ChunkMasker[Any] = ChunkMasker(recorder.secrets)

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
                    role = "agent" if kind == "agent_message_chunk" else "thought"
                    message_id = update.get("messageId") if isinstance(update, dict) else None
                    current = self._message
                    if current is None or current["role"] != role or current["id"] != message_id:
                        await self.flush_message()
                        self._message = {
                            "role": role,
                            "id": message_id,
                            "parts": [],
                            "blocks": [],
                        }
                    assert self._message is not None
                    parts = self._message["parts"]
                    parts.append(chunk)
                    if len(parts) >= MESSAGE_PARTS_JOINED:
                        # Joined as they come: a long message is a few large blocks,
                        # freed whole, not a small string per chunk all over the heap.
                        self._message["blocks"].append("".join(parts))
                        parts.clear()
                    if self._recorder.secrets:
                        await self._journal_chunks(self._masker.feed(params, chunk))
                        return
        else:
            await self.flush_message()
            if kind in ("tool_call", "tool_call_update") and isinstance(update, dict):
                title = update.get("title")
                text = title if isinstance(title, str) else None
        await self._journal_chunks(self._masker.flush())  # chunks held back go first
        await self._recorder.event(journal.Verbatim("update", params), text=text)

    async def _journal_chunks(self, released: list[tuple[Any, str]]) -> None:
        """Journal message chunks the masker released, each with its masked text."""
        for params, text in released:
            await self._recorder.event(journal.Verbatim("update", _with_chunk_text(params, text)))

    async def flush_message(self) -> None:
        """Journal the chunks held back and the message being gathered, if any.

        Cancellation: what was submitted before the cancel is journaled; the
        message itself is taken out first, so it is journaled at most once."""
        await self._journal_chunks(self._masker.flush())
        message, self._message = self._message, None
        if message is None:
            return
        text = "".join([*message["blocks"], *message["parts"]])
        done = events.Message(role=message["role"], text=text, message_id=message["id"])
        await self._recorder.event(done, text=text)

    async def on_protocol_error(self, line_preview: str, reason: str) -> None:
        """Journal a line of the agent that was skipped.

        Cancellation: the event was submitted or not."""
        log.warning("agent_protocol_error", session_id=self._recorder.session_id, reason=reason)
        await self._recorder.event(
            events.AgentProtocolError(reason=reason, preview=self._recorder.scrub(line_preview))
        )


def _with_chunk_text(params: Any, text: str) -> Any:
    """A message chunk's update with its text replaced (by its masked form)."""
    update = params["update"]
    if update["content"]["text"] == text:
        return params
    return {**params, "update": {**update, "content": {**update["content"], "text": text}}}
