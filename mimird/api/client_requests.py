"""Clients that serve an agent's file and terminal requests (an editor behind
``mimirctl acp``): ``session.attach_client``, ``session.detach_client`` and
``client_request.respond``. The owner is :mod:`mimird.agents.delegation`; the
checks before a request is forwarded are :mod:`mimird.agents.client_methods`'.

An attachment belongs to the connection it was made on: a task in the
connection's nursery holds it, and releases it when the connection closes.
"""

from __future__ import annotations

from typing import Final

import msgspec
import trio

from mimird.agents.delegation import Attachment, Provides
from mimird.agents.manager import AgentManager
from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.errors import InvalidParams, InvalidState
from mimird.rpc.registry import CallContext, Connection, Registry
from mimird.wire.client_requests import (
    ClientAttachment,
    ClientDetachment,
    ClientFs,
    ClientRequestAnswered,
    ClientRequestRespondParams,
    SessionAttachClientParams,
    SessionDetachClientParams,
)
from mimird.wire.errors import ErrorCode

_STATE_KEY: Final = "client_attachments"
#: Sessions one connection may serve at once.
MAX_ATTACHMENTS: Final = 64

_method = MethodTable()


def _held(connection: Connection) -> dict[str, tuple[Attachment, trio.CancelScope]]:
    held: dict[str, tuple[Attachment, trio.CancelScope]] = connection.state.setdefault(
        _STATE_KEY, {}
    )
    return held


class ClientRequestService:
    def __init__(self, sessions_: SessionService, agents: AgentManager) -> None:
        self._sessions = sessions_
        self._agents = agents

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "session.attach_client",
        params=SessionAttachClientParams,
        result=ClientAttachment,
        summary=(
            "Serve the session's agent's file and/or terminal requests from this connection "
            "(an editor's buffers and terminals), until it detaches or closes."
        ),
        description=(
            "Mimir checks each request first (workspace confinement, sizes), then sends it as "
            "a client_request notification; answer with client_request.respond. One connection "
            "per session: a second one is refused."
        ),
        mutating=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def attach(self, ctx: CallContext, params: SessionAttachClientParams) -> ClientAttachment:
        """Cancellation: before the attachment is made, nothing happened; once made
        (no await between), the connection holds it."""
        connection = ctx.connection
        if connection is None:
            raise InvalidState("attaching needs a connection", field="session")
        session = await self._sessions.find(params.session)
        fs = ClientFs() if params.fs is msgspec.UNSET else params.fs
        provides = Provides(read=fs.read, write=fs.write, terminal=params.terminal)
        held = _held(connection)
        if session.id not in held and len(held) >= MAX_ATTACHMENTS:
            raise InvalidState(
                f"this connection serves {len(held)} sessions already (at most "
                f"{MAX_ATTACHMENTS}); detach some first",
                field="session",
            )
        delegates = self._agents.delegates
        attachment = await delegates.attach(
            session.id,
            connection.id,
            ctx.peer.pid,
            provides,
            connection.send_many,
            connection.nursery,
        )
        if session.id not in held or held[session.id][0] is not attachment:
            if session.id in held:  # its earlier attachment was detached (a timeout)
                held[session.id][1].cancel()
            scope = trio.CancelScope()
            held[session.id] = (attachment, scope)
            connection.nursery.start_soon(self._hold, connection, attachment, scope)
        return ClientAttachment(
            session_id=session.id,
            fs=fs,
            terminal=params.terminal,
            timeout_s=delegates.timeout_s,
        )

    async def _hold(
        self, connection: Connection, attachment: Attachment, scope: trio.CancelScope
    ) -> None:
        """Hold the attachment until the connection closes (or it is detached)."""
        try:
            with scope:
                await trio.sleep_forever()
        finally:
            self._agents.delegates.detach(attachment, "closed its connection")
            held = _held(connection)
            if held.get(attachment.session_id, (None,))[0] is attachment:
                del held[attachment.session_id]

    @_method(
        "session.detach_client",
        params=SessionDetachClientParams,
        result=ClientDetachment,
        summary="Stop serving the session's agent's requests from this connection.",
        mutating=True,
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def detach(self, ctx: CallContext, params: SessionDetachClientParams) -> ClientDetachment:
        """Cancellation: detached or not (no await once the session is found)."""
        session = await self._sessions.find(params.session)
        held = _held(ctx.connection) if ctx.connection is not None else {}
        entry = held.pop(session.id, None)
        detached = False
        if entry is not None:
            attachment, scope = entry
            detached = self._agents.delegates.detach(attachment, "detached")
            scope.cancel()
        return ClientDetachment(session_id=session.id, detached=detached)

    @_method(
        "client_request.respond",
        params=ClientRequestRespondParams,
        result=ClientRequestAnswered,
        summary="Answer a client_request notification: its result, or an error.",
        description=(
            "The answer is checked (shape and size, per method) before the agent gets it; a "
            "malformed one is refused, and the agent's request is then served by Mimir (files) "
            "or answered with an error (terminals)."
        ),
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def respond(
        self, ctx: CallContext, params: ClientRequestRespondParams
    ) -> ClientRequestAnswered:
        """Cancellation: none (no await)."""
        has_result = params.result is not msgspec.UNSET
        has_error = params.error is not msgspec.UNSET
        if has_result == has_error:
            raise InvalidParams("give either result or error (not both)", field="result")
        error = None
        if not isinstance(params.error, msgspec.UnsetType):
            error = {"code": params.error.code, "message": params.error.message}
        method = self._agents.delegates.respond(
            ctx.conn_id, params.id, None if not has_result else params.result, error
        )
        return ClientRequestAnswered(id=params.id, method=method)
