"""The explicit method table.

Methods are registered by name with their params and result types; dispatch
only ever looks names up in this table (never ``getattr`` on user input, the
lesson of supervisor's CVE-2017-11610). The same types drive validation and
the OpenRPC document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import trio

from mimird.wire.errors import ErrorCode
from mimird.wire.types import Params

#: Errors any method can answer with, on top of its own.
COMMON_ERRORS: tuple[ErrorCode, ...] = (
    ErrorCode.INVALID_PARAMS,
    ErrorCode.INTERNAL_ERROR,
    ErrorCode.STORAGE_ERROR,
    ErrorCode.SHUTTING_DOWN,
)


class PeerCredentials(NamedTuple):
    """Who is on the other end of a connection, from ``SO_PEERCRED`` at connect time."""

    pid: int
    uid: int
    gid: int


@dataclass(eq=False, slots=True)
class Connection:
    """What a method may do with the connection it was called on: send it
    notifications from tasks of its own (subscriptions)."""

    id: int
    #: Write whole messages (without their newlines) to the client, in order.
    send_many: Callable[[list[bytes]], Awaitable[None]]
    #: Tasks started here end when the connection closes.
    nursery: trio.Nursery
    #: Per connection state owned by services (e.g. its subscriptions), by name.
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallContext:
    peer: PeerCredentials
    conn_id: int
    connection: Connection | None = None
    #: Run once this call's response has been sent (e.g. start a subscription's
    #: stream, so that the client has its id before the first notification).
    after_response: list[Callable[[], None]] | None = None


Handler = Callable[[CallContext, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    params: type[Params]
    result: Any
    handler: Handler
    summary: str
    #: Mutating calls are written to the audit log.
    mutating: bool = False
    #: Calls that may take long (a prompt turn) run in their own task, so that the
    #: connection keeps serving other requests meanwhile; all others run in order,
    #: inline in the connection's task, which is much cheaper.
    concurrent: bool = False
    errors: tuple[ErrorCode, ...] = ()
    description: str = ""
    decoder: msgspec.json.Decoder[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder", msgspec.json.Decoder(self.params))


class Registry:
    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def add(
        self,
        name: str,
        handler: Handler,
        *,
        params: type[Params],
        result: Any,
        summary: str,
        mutating: bool = False,
        concurrent: bool = False,
        errors: tuple[ErrorCode, ...] = (),
        description: str = "",
    ) -> None:
        if name in self._methods:
            raise ValueError(f"method {name} registered twice")
        self._methods[name] = Method(
            name=name,
            params=params,
            result=result,
            handler=handler,
            summary=summary,
            mutating=mutating,
            concurrent=concurrent,
            errors=errors,
            description=description,
        )

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def __iter__(self) -> Iterator[Method]:
        return iter(sorted(self._methods.values(), key=lambda m: m.name))

    def __len__(self) -> int:
        return len(self._methods)
