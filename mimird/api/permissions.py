"""The permission requests agents park: ``permission.list`` and
``permission.respond``. Each decodes its params, asks the agent manager's one
registry of pending requests, and encodes the answer."""

from __future__ import annotations

import msgspec
import trio

from mimird.agents import remember
from mimird.agents.manager import AgentManager
from mimird.agents.permissions import pick
from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.errors import InvalidParams, InvalidState
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
        description=(
            "With remember (session or project), a rule is first written into that layer's "
            "config so that the next identical request is decided by the tool policy."
        ),
        mutating=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE, ErrorCode.INVALID_PARAMS),
    )
    async def respond(
        self, ctx: CallContext, params: PermissionRespondParams
    ) -> PermissionAnswered:
        """Cancellation: without ``remember``, none (no await once decoded): answered or
        not. With it: before the rule's write, nothing happened; the write is shielded,
        and the answer follows it with no await between."""
        option_id = None if params.option_id is msgspec.UNSET else params.option_id
        kind = None if params.kind is msgspec.UNSET else params.kind
        if (option_id is None) == (kind is None):
            raise InvalidParams("give either option_id or kind (not both)", field="option_id")
        if params.remember is not msgspec.UNSET:
            await self._remember(params.permission, option_id, kind, params.remember)
        permission, chosen = self._agents.respond(
            params.permission, option_id, kind, f"client pid {ctx.peer.pid}"
        )
        return PermissionAnswered(
            permission=permission.id, session_id=permission.session_id, option_id=chosen
        )

    async def _remember(
        self, permission_id: str, option_id: str | None, kind: str | None, layer: remember.Layer
    ) -> None:
        """Write the rule that decides the next request identical to this one; the
        rule is kept on the permission for its ``permission_answered`` event."""
        permission = self._agents.permissions.find(permission_id)
        host = self._agents.get(permission.session_id)
        if host is None or permission.answered.is_set():
            raise InvalidState(
                f"permission {permission.id} was answered already, or its agent is gone",
                field="permission",
                id=permission.id,
            )
        decision = remember.decision_of(pick(permission, option_id, kind))
        tool_kind, patterns = await remember.patterns_of(host, permission)
        with trio.CancelScope(shield=True):
            permission.remembered = await self._agents.store.write(
                remember.write_rule,
                permission.session_id,
                layer,
                tool_kind,
                patterns,
                decision,
                self._sessions.owner.layers,
            )
