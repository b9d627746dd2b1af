"""Reading a session's events: live from a subscription, or page by page from
the journal.

A subscription's ``event`` notifications and the responses to our own requests
arrive on one connection, told apart by ``method``; :func:`messages` reads them
in a plain blocking loop, :func:`event_of` picks out one subscription's events.
:func:`history` pages through ``session.events`` for the commands that print
what is journaled (``log``, ``session log``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from mimirctl import render
from mimirctl.client import Client
from mimirctl.render import Renderer

if TYPE_CHECKING:
    from mimirctl.ask import PermissionAsker

#: Events asked of ``session.events`` per page.
PAGE_SIZE: Final = 1000


def emit_json(value: Any) -> None:
    """One JSON value on its own line, flushed (a consumer reads it as it comes)."""
    render.say(render.json_line(value), exact=True)
    sys.stdout.flush()


def next_message(client: Client) -> dict[str, Any]:
    """The next message on the connection: one read already (put aside) first."""
    return client.notifications.pop(0) if client.notifications else client.read()


def messages(client: Client) -> Iterator[dict[str, Any]]:
    """Every message on the connection, forever."""
    while True:
        yield next_message(client)


def event_of(message: dict[str, Any], subscription: int) -> dict[str, Any] | None:
    """The event a message carries for ``subscription``, if it carries one."""
    if message.get("method") != "event":
        return None
    params = message.get("params") or {}
    if params.get("subscription") != subscription:
        return None
    event: dict[str, Any] = params["event"]
    return event


def history(
    client: Client, session: str, after: int = 0, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """A session's journaled events after seq ``after``, oldest first, at most
    ``limit`` of them (all when ``None``), fetched a page at a time."""
    given = 0
    while limit is None or given < limit:
        wanted = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - given)
        page = client.call(
            "session.events", {"session": session, "after_seq": after, "limit": wanted}
        )["events"]
        yield from page
        given += len(page)
        if len(page) < wanted:
            return
        after = page[-1]["seq"]


def pending_permissions(client: Client, session_id: str) -> set[str]:
    """The ids of the session's permission requests that wait for an answer now."""
    listed = client.call("permission.list", {"session": session_id})["permissions"]
    return {str(p["id"]) for p in listed}


def asker(
    client: Client, args: argparse.Namespace, renderer: Renderer, subscription: int
) -> PermissionAsker | None:
    """A :class:`PermissionAsker` when the user is at a terminal and wants to be asked."""
    if args.json or args.no_ask or not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    from mimirctl.ask import PermissionAsker  # termios, select: only when asking

    return PermissionAsker(client, renderer, subscription, sys.stdin.fileno())
