"""``agent.probe``: does an agent kind's command start and answer ACP ``initialize``?"""

from __future__ import annotations

import trio

from mimird import policy
from mimird.agents.presets import resolve_command
from mimird.agents.probe import probe
from mimird.api.methods import MethodTable
from mimird.config import Settings
from mimird.errors import AgentUnavailable
from mimird.rpc.registry import CallContext, Registry
from mimird.wire.errors import ErrorCode
from mimird.wire.probe_types import AgentProbe, AgentProbeParams

_method = MethodTable()


class AgentProbeService:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "agent.probe",
        params=AgentProbeParams,
        result=AgentProbe,
        summary=(
            "Start an agent kind's command in an empty temporary directory, send it ACP "
            "initialize, read its answer (within timeout_s), and stop it."
        ),
        description=(
            "The agent gets the environment a session with no env of its own would give "
            "it. Its output is read up to 1 MiB, its stderr is not kept, and it is stopped "
            "with its whole process group. A kind whose command cannot be found is "
            "agent_unavailable; an agent that does not answer is a result with ok false "
            "and the problem."
        ),
        errors=(ErrorCode.AGENT_UNAVAILABLE,),
        concurrent=True,
    )
    async def probe(self, ctx: CallContext, params: AgentProbeParams) -> AgentProbe:
        layered = policy.effective(
            [("builtin", policy.builtin_layer()), ("defaults", self._settings.defaults)]
        ).env()
        try:
            command = await trio.to_thread.run_sync(
                resolve_command,
                params.kind,
                self._settings.agents,
                layered,
                self._settings.agents_dir,
            )
        except AgentUnavailable as exc:
            raise AgentUnavailable(exc.message, field="kind", id=params.kind) from None
        return await probe(params.kind, command, params.timeout_s)
