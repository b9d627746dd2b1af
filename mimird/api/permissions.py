"""The permission requests agents park: ``permission.list`` and
``permission.respond``. Each decodes its params, asks the agent manager's one
registry of pending requests, and encodes the answer."""

from __future__ import annotations

import msgspec

from mimird.agents.manager import AgentManager
from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.errors import InvalidParams
from mimird.rpc.registry import CallContext, Registry
from mimird.wire.errors import ErrorCode
from mimird.wire.types import (
    PermissionAnswered,
    PermissionList,
    PermissionListParams,
    PermissionRespondParams,
)

_method = MethodTable()


class PermissionService:
    def __init__(self, sessions_: SessionService, agents: AgentManager) -> None:
        self._sessions = sessions_
        self._agents = agents

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "permission.list",
        params=PermissionListParams,
        result=PermissionList,
        summary="Permission requests agents are waiting on, oldest first.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def list(self, ctx: CallContext, params: PermissionListParams) -> PermissionList:
        """Cancellation: nothing happened."""
        session_id = None
        if params.session is not msgspec.UNSET:
            session_id = (await self._sessions.find(params.session)).id
        return PermissionList(
            permissions=[p.to_wire() for p in self._agents.pending_permissions(session_id)]
        )

    @_method(
        "permission.respond",
        params=PermissionRespondParams,
        result=PermissionAnswered,
        summary=(
            "Answer a pending permission request by option id or kind; the first answer wins."
        ),
        mutating=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def respond(
        self, ctx: CallContext, params: PermissionRespondParams
    ) -> PermissionAnswered:
        """Cancellation: none (no await once decoded): answered or not."""
        option_id = None if params.option_id is msgspec.UNSET else params.option_id
        kind = None if params.kind is msgspec.UNSET else params.kind
        if (option_id is None) == (kind is None):
            raise InvalidParams("give either option_id or kind (not both)", field="option_id")
        permission, chosen = self._agents.respond(
            params.permission, option_id, kind, f"client pid {ctx.peer.pid}"
        )
        return PermissionAnswered(
            permission=permission.id, session_id=permission.session_id, option_id=chosen
        )
