"""``subscribe`` and ``unsubscribe``: the journal, replayed from a cursor and
then live, as ``event`` notifications on the caller's connection.

Each notification is ``{"jsonrpc": "2.0", "method": "event", "params":
{"subscription": N, "event": {id, session_id, seq, kind, data, created_at}}}``.
Stored events are sent first, then live ones, with no gap and no duplicate at
the seam; a client that reads too slowly is caught up from the database and
loses nothing. The subscription ends with the connection.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import structlog
import trio

from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.errors import InvalidParams, InvalidState, MimirError, NotFound
from mimird.journal import Journal, Subscription, seq_at
from mimird.rpc.registry import CallContext, Connection, Registry
from mimird.wire.errors import ErrorCode
from mimird.wire.types import Subscribed, SubscribeParams, Unsubscribed, UnsubscribeParams

log = structlog.get_logger("mimird.rpc")

#: Subscriptions one connection may hold at once.
MAX_SUBSCRIPTIONS: Final = 64
_STATE_KEY: Final = "subscriptions"


_method = MethodTable()


def connection_subscriptions(connection: Connection) -> dict[int, Subscription]:
    """The subscriptions a connection holds (of sessions and of runs), by id:
    ``unsubscribe`` ends any of them."""
    subs: dict[int, Subscription] = connection.state.setdefault(_STATE_KEY, {})
    return subs


def room_for_one(ctx: CallContext, field: str) -> dict[int, Subscription]:
    """The subscriptions of the caller's connection, checked to have room for one
    more (InvalidParams naming ``field`` when not; InvalidState without a connection)."""
    connection = ctx.connection
    if connection is None or ctx.after_response is None:
        raise InvalidState("subscriptions need a connection", field="subscription")
    active = connection_subscriptions(connection)
    if len(active) >= MAX_SUBSCRIPTIONS:
        raise InvalidParams(
            f"this connection holds {len(active)} subscriptions already (at most "
            f"{MAX_SUBSCRIPTIONS}); unsubscribe some first",
            field=field,
        )
    return active


def serve(ctx: CallContext, journal: Journal, sub: Subscription, method: bytes) -> None:
    """Once the answer is sent, send ``sub``'s events to the caller's connection as
    ``method`` notifications, until it is unsubscribed or the connection ends."""
    connection = ctx.connection
    assert connection is not None  # room_for_one checked both
    assert ctx.after_response is not None
    active = connection_subscriptions(connection)
    active[sub.id] = sub
    prefix = b'{"jsonrpc":"2.0","method":"%s","params":{"subscription":%d,"event":' % (
        method,
        sub.id,
    )

    def notification(event: Any) -> bytes:
        wire: bytes = event.wire()
        return prefix + wire + b"}}"

    async def run() -> None:
        try:
            await sub.run(connection.send_many, notification)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except MimirError as exc:
            log.warning("subscription_failed", subscription=sub.id, error=exc.message)
        finally:
            journal.unsubscribe(sub)
            active.pop(sub.id, None)

    ctx.after_response.append(lambda: connection.nursery.start_soon(run))


class EventService:
    def __init__(self, journal: Journal, sessions_: SessionService) -> None:
        self._journal = journal
        self._sessions = sessions_

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @staticmethod
    def _subscriptions(connection: Connection) -> dict[int, Subscription]:
        return connection_subscriptions(connection)

    @_method(
        "subscribe",
        params=SubscribeParams,
        result=Subscribed,
        summary=(
            "Receive a session's (or every session's) events as 'event' notifications: "
            "the stored ones after the cursor, then live ones."
        ),
        description=(
            "Without a cursor only new events are sent. after_seq needs a session; after_id "
            "(the global event id) works with or without one. Events arrive exactly once, in "
            "order, also for a client that reads slowly (it is caught up from the database)."
        ),
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def subscribe(self, ctx: CallContext, params: SubscribeParams) -> Subscribed:
        room_for_one(ctx, "session")
        session_id: str | None = None
        if params.session is not msgspec.UNSET:
            session_id = (await self._sessions.find(params.session)).id
        after: int | None = None
        if params.after_seq is not msgspec.UNSET:
            if session_id is None:
                raise InvalidParams(
                    "after_seq needs a session (seqs count per session); use after_id for all "
                    "sessions",
                    field="after_seq",
                )
            if params.after_id is not msgspec.UNSET:
                raise InvalidParams("give after_seq or after_id, not both", field="after_id")
            after = params.after_seq
        elif params.after_id is not msgspec.UNSET:
            after = params.after_id
            if session_id is not None:
                after = await self._journal.store.read(seq_at, session_id, after)
        sub = await self._journal.subscribe(session_id, after=after)
        serve(ctx, self._journal, sub, b"event")
        return Subscribed(
            subscription=sub.id,
            session_id=session_id,
            cursor_kind="seq" if session_id is not None else "id",
            cursor=sub.cursor,
        )

    @_method(
        "unsubscribe",
        params=UnsubscribeParams,
        result=Unsubscribed,
        summary="End a subscription of this connection.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def unsubscribe(self, ctx: CallContext, params: UnsubscribeParams) -> Unsubscribed:
        active = self._subscriptions(ctx.connection) if ctx.connection is not None else {}
        sub = active.pop(params.subscription, None)
        if sub is None:
            raise NotFound(
                f"this connection has no subscription {params.subscription}",
                field="subscription",
                id=str(params.subscription),
            )
        sub.close()
        return Unsubscribed(subscription=params.subscription)


__all__ = ["EventService", "Subscription", "connection_subscriptions"]
