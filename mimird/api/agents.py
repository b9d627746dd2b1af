"""``agent.list``: the agent kinds sessions can use, and whether each can start."""

from __future__ import annotations

import trio

from mimird.agents.presets import agent_kinds
from mimird.config import Settings
from mimird.rpc.registry import CallContext, Registry
from mimird.wire.types import AgentList, EmptyParams


class AgentService:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def register(self, registry: Registry) -> None:
        registry.add(
            "agent.list",
            self.list,
            params=EmptyParams,
            result=AgentList,
            summary="Every agent kind (presets and the config file's [agents.<name>]), with "
            "its command and whether that command is on the daemon's PATH.",
        )

    async def list(self, ctx: CallContext, params: EmptyParams) -> AgentList:
        kinds = await trio.to_thread.run_sync(agent_kinds, self._settings.agents)
        return AgentList(agents=kinds)
