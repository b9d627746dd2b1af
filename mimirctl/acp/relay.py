"""One attached session: its events followed on a connection of its own, turned
into the editor's ``session/update`` notifications, and the end of the prompt the
editor is waiting for.

Live, an ``update`` event carries the agent's ACP update as the agent sent it: it
is passed on with Mimir's session id, checked as the replay checks updates
(:func:`mimirctl.acp.replay.live_updates`). A ``prompt`` event is a user message
(``user_message_chunk``), unless it is the prompt this editor sent. Mimir's own
kinds map to nothing, except ``turn_ended``, which answers the pending
``session/prompt``, and the permission events (:mod:`mimirctl.acp.permissions`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from mimirctl.acp.replay import live_updates
from mimirctl.client import Client

#: The stop reasons ACP v1 knows; Mimir's others (error, interrupted) end the
#: prompt with an error answer.
STOP_REASONS: Final = frozenset(
    {"end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled"}
)


def acp_usage(usage: Any) -> dict[str, int] | None:
    """Mimir's ``Usage`` of a turn in ACP's (unstable) ``PromptResponse.usage`` shape."""
    if not isinstance(usage, dict):
        return None
    figures: dict[str, Any] = {
        key: usage.get(name)
        for key, name in (
            ("totalTokens", "total_tokens"),
            ("inputTokens", "input_tokens"),
            ("outputTokens", "output_tokens"),
            ("thoughtTokens", "thought_tokens"),
            ("cachedReadTokens", "cached_tokens"),
        )
    }
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in figures.values()):
        return None
    if not figures["totalTokens"]:
        return None
    return {k: v for k, v in figures.items() if v or k in ("inputTokens", "outputTokens")}


@dataclass
class PendingPrompt:
    """The editor's ``session/prompt`` waiting for its turn's end."""

    request_id: int | str | None
    prompt_seq: int


@dataclass
class Follower:
    """A session the editor has attached (``session/new`` or ``session/load``), and
    the subscription its events come on."""

    session_id: str
    client: Client
    subscription: int
    #: The last seq handed on: events at or before it are not handled twice.
    seen: int
    prompt: PendingPrompt | None = None
    #: seqs of the prompts this editor sent (not echoed back as user messages).
    own_prompts: set[int] = field(default_factory=set)
    #: A session made by this editor, not named yet (its first prompt names it).
    untitled: bool = False
    #: Its connection's descriptor while the bridge waits on it; -1 once dropped (a
    #: wait that saw it readable before the drop must not read it).
    fd: int = -1

    def messages(self) -> Iterator[dict[str, Any]]:
        """The messages already read (put aside by a call, or buffered), then one
        read from the socket (the caller knows it is readable)."""
        while self.client.notifications:
            yield self.client.notifications.pop(0)
        yield self.client.read()
        while self.client.notifications or self.client.buffered():
            yield (
                self.client.notifications.pop(0)
                if self.client.notifications
                else self.client.read()
            )

    def event_of(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The event a message carries for this subscription, once (by seq)."""
        if message.get("method") != "event":
            return None
        params = message.get("params") or {}
        if params.get("subscription") != self.subscription:
            return None
        event = params.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
            return None
        if event["seq"] <= self.seen:
            return None
        self.seen = event["seq"]
        return event

    def updates(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """What a live event shows the editor: the agent's updates as it streamed
        them, checked as the replay checks them (an update that is not ACP v1 is not
        passed on), a mode a client set, and the prompts of other clients."""
        return live_updates(event, prompts=event["seq"] not in self.own_prompts)

    def turn_end(self, event: dict[str, Any]) -> tuple[PendingPrompt, dict[str, Any]] | None:
        """The pending prompt and its ``turn_ended`` data, when ``event`` ends it."""
        if event.get("kind") != "turn_ended" or self.prompt is None:
            return None
        if event["seq"] <= self.prompt.prompt_seq:
            return None
        pending, self.prompt = self.prompt, None
        data = event.get("data")
        return pending, data if isinstance(data, dict) else {}
