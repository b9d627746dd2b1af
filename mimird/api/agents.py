"""``agent.list``: the agent kinds sessions can use, and whether each can start;
``agent.install`` / ``agent.update`` / ``agent.remove``: agents Mimir installs from
the ACP Registry into its data dir (:mod:`mimird.agents.install`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import trio

from mimird import policy
from mimird.agents import install as installer
from mimird.agents.installed import InstalledAgent, read_installed, read_one
from mimird.agents.manager import AgentManager
from mimird.agents.presets import agent_kinds, kind_of, registry_id
from mimird.agents.registry import Manifest, Registry, check_id, load_registry
from mimird.api.methods import MethodTable
from mimird.config import Settings
from mimird.errors import Busy, InvalidState, NotFound
from mimird.rpc.registry import CallContext
from mimird.rpc.registry import Registry as MethodRegistry
from mimird.wire.agents import (
    AgentInstallParams,
    AgentInstallResult,
    AgentRemoveParams,
    AgentRemoveResult,
    AgentUpdateParams,
    AgentUpdateResult,
    InstalledAgentInfo,
)
from mimird.wire.types import AgentList, EmptyParams

_method = MethodTable()

#: Installs at once (npm, pip and downloads are heavy on a small machine).
INSTALL_THREADS: Final = 2
#: How long a cancelled install may take to kill its tool and clean up.
STOP_WAIT_S: Final = 10.0


class AgentService:
    def __init__(self, settings: Settings, agents: AgentManager | None = None) -> None:
        self._settings = settings
        self._agents = agents
        #: Agents being installed, updated or removed: a second call for one is refused.
        self._busy: set[str] = set()
        self._limiter = trio.CapacityLimiter(INSTALL_THREADS)

    def register(self, registry: MethodRegistry) -> None:
        _method.register(self, registry)

    @property
    def _dir(self) -> Path:
        if self._settings.agents_dir is None:
            raise InvalidState("this daemon has no data dir for installed agents")
        return self._settings.agents_dir

    @_method(
        "agent.list",
        params=EmptyParams,
        result=AgentList,
        summary=(
            "Every agent kind (presets, the config file's [agents.<name>] and agents "
            "installed by agent.install), with its command and whether that command is "
            "found (on the PATH its agent gets: the daemon's, or the one the config "
            "file's [defaults] env or the kind's env set); for a kind not found, the "
            "command that installs it."
        ),
    )
    async def list(self, ctx: CallContext, params: EmptyParams) -> AgentList:
        # The same PATH a session's agent gets, short of its project's and its own
        # config layers: what a session with no env of its own would start with.
        layered = policy.effective(
            [("builtin", policy.builtin_layer()), ("defaults", self._settings.defaults)]
        ).env()
        kinds = await trio.to_thread.run_sync(
            agent_kinds, self._settings.agents, layered, self._settings.agents_dir
        )
        return AgentList(agents=kinds)

    @contextlib.contextmanager
    def _claim(self, agent_id: str) -> Iterator[None]:
        if agent_id in self._busy:
            raise Busy(
                f"agent {agent_id} is being installed, updated or removed already; "
                "wait for that to finish",
                field="name",
                id=agent_id,
            )
        self._busy.add(agent_id)
        try:
            yield
        finally:
            self._busy.discard(agent_id)

    def _in_use(self, agent_id: str) -> dict[str, str]:
        """The versions of an installed agent that running sessions use: {version: session}."""
        home = self._dir / agent_id
        used: dict[str, str] = {}
        for host in list(self._agents.hosts.values()) if self._agents else []:
            if host.finished:
                continue
            path = Path(host.command.argv[0])
            if path.is_relative_to(home):
                used.setdefault(path.relative_to(home).parts[0], host.session_id)
        return used

    def _info(self, record: InstalledAgent) -> InstalledAgentInfo:
        return InstalledAgentInfo(
            kind=kind_of(record.id),
            id=record.id,
            version=record.version,
            distribution=record.distribution,
            package=record.package,
            path=str(record.executable(self._dir)),
            args=record.args,
            license=record.license,
            registry=record.registry,
            registry_date=record.registry_date,
            installed_at=record.installed_at,
        )

    async def _install(
        self, registry: Registry, agent_id: str, version: str | None
    ) -> AgentInstallResult:
        manifest = registry.find(agent_id)
        with self._claim(manifest.id):
            _, wanted = installer.choose(manifest, version)
            if session := self._in_use(manifest.id).get(wanted):
                # Its files would be replaced under the running agent.
                raise InvalidState(
                    f"agent {manifest.id} {wanted} is in use by session {session}; stop it "
                    f"first (mimirctl stop {session})",
                    field="name",
                    id=manifest.id,
                )
            record, previous = await self._install_in_thread(registry, manifest, version)
            keep = set(self._in_use(manifest.id))
            await trio.to_thread.run_sync(installer.prune, self._dir, manifest.id, keep)
        replaced = previous.version if previous and previous.version != record.version else None
        return AgentInstallResult(agent=self._info(record), previous_version=replaced)

    async def _install_in_thread(
        self, registry: Registry, manifest: Manifest, version: str | None
    ) -> tuple[InstalledAgent, InstalledAgent | None]:
        """The install in a worker thread. Cancellation (the daemon stopping): the
        install is called off, its tool's process group killed, and this waits
        (shielded, at most :data:`STOP_WAIT_S`) for the thread to be done."""
        stop = threading.Event()
        done = trio.Event()

        def work() -> tuple[InstalledAgent, InstalledAgent | None]:
            try:
                return installer.install(self._dir, registry, manifest, version, stop)
            finally:
                trio.from_thread.run_sync(done.set)

        try:
            return await trio.to_thread.run_sync(
                work, limiter=self._limiter, abandon_on_cancel=True
            )
        except trio.Cancelled:
            stop.set()
            with trio.move_on_after(STOP_WAIT_S, shield=True):
                await done.wait()
            raise

    @_method(
        "agent.install",
        params=AgentInstallParams,
        result=AgentInstallResult,
        mutating=True,
        summary=(
            "Install an agent from the ACP Registry (Mimir's snapshot, or the registry "
            "file or URL given) into the daemon's data dir: npx with npm, uvx with pip "
            "into a venv, binary by downloading and unpacking its archive. It becomes a "
            "kind sessions can use. Long: it answers when the install is done."
        ),
    )
    async def install(self, ctx: CallContext, params: AgentInstallParams) -> AgentInstallResult:
        registry = await trio.to_thread.run_sync(load_registry, params.registry)
        return await self._install(
            registry, registry_id(check_id(params.name, "name")), params.version
        )

    @_method(
        "agent.update",
        params=AgentUpdateParams,
        result=AgentUpdateResult,
        mutating=True,
        summary=(
            "Install the registry's version of an installed agent (or of every one) "
            "where it differs from the installed one. Each agent is read from the "
            "registry given, else the one it was installed from."
        ),
    )
    async def update(self, ctx: CallContext, params: AgentUpdateParams) -> AgentUpdateResult:
        installed = await trio.to_thread.run_sync(read_installed, self._dir)
        if params.name is not None:
            agent_id = registry_id(check_id(params.name, "name"))
            if agent_id not in installed:
                raise NotFound(f"agent {params.name!r} is not installed", field="name")
            installed = {agent_id: installed[agent_id]}
        registries: dict[str | None, Registry] = {}
        updated: list[AgentInstallResult] = []
        unchanged: list[str] = []
        for agent_id, record in installed.items():
            source = params.registry or (None if record.registry == "snapshot" else record.registry)
            if source not in registries:
                registries[source] = await trio.to_thread.run_sync(load_registry, source)
            manifest = registries[source].agents.get(agent_id)
            if manifest is None or manifest.version == record.version:
                unchanged.append(agent_id)
                continue
            updated.append(await self._install(registries[source], agent_id, None))
        return AgentUpdateResult(updated=updated, unchanged=unchanged)

    @_method(
        "agent.remove",
        params=AgentRemoveParams,
        result=AgentRemoveResult,
        mutating=True,
        summary=(
            "Remove an installed agent (every version of it) from the daemon's data dir. "
            "Refused while a session's agent runs it: stop that session first."
        ),
    )
    async def remove(self, ctx: CallContext, params: AgentRemoveParams) -> AgentRemoveResult:
        agent_id = registry_id(check_id(params.name, "name"))
        with self._claim(agent_id):
            record = await trio.to_thread.run_sync(read_one, self._dir, agent_id)
            if record is None:
                raise NotFound(f"agent {params.name!r} is not installed", field="name")
            if used := self._in_use(agent_id):
                sessions = ", ".join(sorted(set(used.values())))
                raise InvalidState(
                    f"agent {agent_id} is in use by session {sessions}; stop it first "
                    f"(mimirctl stop {sorted(used.values())[0]})",
                    field="name",
                    id=agent_id,
                )
            await trio.to_thread.run_sync(installer.remove, self._dir, agent_id)
        return AgentRemoveResult(
            kind=kind_of(agent_id),
            id=agent_id,
            version=record.version,
            path=str(self._dir / agent_id),
        )
