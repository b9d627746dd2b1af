"""``agent.list``: the agent kinds sessions can use, and whether each can start."""

from __future__ import annotations

import trio

from mimird import policy
from mimird.agents.presets import agent_kinds
from mimird.api.methods import MethodTable
from mimird.config import Settings
from mimird.rpc.registry import CallContext, Registry
from mimird.wire.types import AgentList, EmptyParams

_method = MethodTable()


class AgentService:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "agent.list",
        params=EmptyParams,
        result=AgentList,
        summary=(
            "Every agent kind (presets and the config file's [agents.<name>]), with "
            "its command and whether that command is on the PATH its agent gets (the "
            "daemon's, or the one the config file's [defaults] env or the kind's env set)."
        ),
    )
    async def list(self, ctx: CallContext, params: EmptyParams) -> AgentList:
        # The same PATH a session's agent gets, short of its project's and its own
        # config layers: what a session with no env of its own would start with.
        layered = policy.effective(
            [("builtin", policy.builtin_layer()), ("defaults", self._settings.defaults)]
        ).env()
        kinds = await trio.to_thread.run_sync(agent_kinds, self._settings.agents, layered)
        return AgentList(agents=kinds)
