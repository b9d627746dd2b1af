"""``session.set_model`` and ``session.set_mode``: the agent's model and mode
(owner: :mod:`mimird.agents.model_mode`).

The value is stored in the session's config layer (``model``/``mode``), so that
every later start of the agent applies it. While the agent runs it is told at
once, and the value is stored only if it accepted; while it does not run, the value
is checked against what the agent offered when it last started (a session whose
agent never started takes any value, checked at its start: ``setting_failed`` is
journaled if the agent does not offer it).
"""

from __future__ import annotations

from typing import Any

from mimird import policy
from mimird.agents import model_mode
from mimird.agents.manager import AgentManager
from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.errors import AgentUnavailable, InvalidState
from mimird.rpc.registry import CallContext, Registry
from mimird.wire.errors import ErrorCode
from mimird.wire.prompts import ChoiceSet, SessionSetModelParams, SessionSetModeParams

_method = MethodTable()

_DESCRIPTION = (
    "Checked against what the agent offers (its {key}s, or a config option of category "
    "{key}); an id it does not offer is invalid_params listing those it does. While the "
    "agent runs it is told at once ({method} or session/set_config_option) and "
    "{key}_changed is journaled; otherwise the value is stored in the session's config "
    "and applied at the agent's next start. An agent that offers no choice is invalid_state."
)
_ERRORS = (ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE)


class ModelModeService:
    def __init__(self, sessions_: SessionService, agents: AgentManager) -> None:
        self._sessions = sessions_
        self._agents = agents

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "session.set_model",
        params=SessionSetModelParams,
        result=ChoiceSet,
        summary="Choose the model of the session's agent (now if it runs, else at its start).",
        description=_DESCRIPTION.format(key="model", method="session/set_model"),
        mutating=True,
        concurrent=True,
        errors=_ERRORS,
    )
    async def set_model(self, ctx: CallContext, params: SessionSetModelParams) -> ChoiceSet:
        """Cancellation: as :meth:`_set`."""
        return await self._set(params.session, "model", params.model)

    @_method(
        "session.set_mode",
        params=SessionSetModeParams,
        result=ChoiceSet,
        summary="Choose the mode of the session's agent (now if it runs, else at its start).",
        description=_DESCRIPTION.format(key="mode", method="session/set_mode"),
        mutating=True,
        concurrent=True,
        errors=_ERRORS,
    )
    async def set_mode(self, ctx: CallContext, params: SessionSetModeParams) -> ChoiceSet:
        """Cancellation: as :meth:`_set`."""
        return await self._set(params.session, "mode", params.mode)

    async def _set(self, ref: str, key: model_mode.Key, value: str) -> ChoiceSet:
        """Cancellation: before the agent answered, nothing is stored (the agent may
        have made the change); after, the store commits or not."""
        row = await self._sessions.find(ref)
        if row.status in ("archived", "deleted"):
            raise InvalidState(
                f"session {row.id} is {row.status}; restore it first",
                field="session",
                id=row.id,
                detail={"status": row.status},
            )
        config = {**row.config, key: value}
        policy.parse_layer(config, "session")
        host = self._agents.get(row.id)
        conn = None
        if host is not None:
            try:
                conn = await host.wait_ready()
            except AgentUnavailable:
                host = None  # it went away: store the value for its next start
        via: str | None = None
        state: dict[str, Any] | None = row.agent_state
        if host is not None and conn is not None:
            via, state = (await host.model_mode.set(conn, key, value)).method, host.agent_state
        else:
            model_mode.check(row.agent_state, key, value, session_id=row.id)
        row = await self._sessions.find(row.id)  # as it is now: keep what changed meanwhile
        await self._sessions.owner.update(row, {"config": {**row.config, key: value}})
        known = model_mode.offer_of(state, key)
        return ChoiceSet(
            session=row.id,
            key=key,
            value=value,
            applied=via is not None,
            via=via,
            offered=known.offered if known else [],
        )


__all__ = ["ModelModeService"]
