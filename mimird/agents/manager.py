"""The owner of every agent host: opened with ``async with AgentManager.open(...)``,
it runs the hosts in its nursery; leaving it stops every agent, cancelling running
turns first. It also holds the one registry of pending permission requests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
import trio

from mimird.agents.host import AgentHost
from mimird.agents.permissions import Permission, PermissionRegistry
from mimird.agents.presets import AgentCommand
from mimird.agents.recorder import Recorder
from mimird.config import Settings
from mimird.journal import writer as journal
from mimird.sessions import records as sessions
from mimird.store import Store

log = structlog.get_logger("mimird.agents.manager")


class AgentManager:
    """Owner of every agent host. Open with ``async with AgentManager.open(...)``."""

    def __init__(
        self, store: Store, journal_: journal.Journal, settings: Settings, nursery: trio.Nursery
    ) -> None:
        self.store = store
        self.journal = journal_
        self.settings = settings
        self.nursery = nursery
        self.hosts: dict[str, AgentHost] = {}
        self.permissions = PermissionRegistry()
        self._starting: dict[str, trio.Lock] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, store: Store, journal_: journal.Journal, settings: Settings
    ) -> AsyncIterator[AgentManager]:
        """The manager, running its hosts in a nursery of its own.

        Cancellation: leaving the block, however, stops every agent (shielded:
        turns cancelled and journaled, process groups stopped), then cancels the
        hosts' tasks."""
        async with trio.open_nursery() as nursery:
            manager = cls(store, journal_, settings, nursery)
            try:
                yield manager
            finally:
                with trio.CancelScope(shield=True):
                    await manager.stop_all("daemon_shutdown")
                nursery.cancel_scope.cancel()

    def log_path(self, session_id: str) -> Path:
        return self.settings.state_dir / "agent-logs" / f"{session_id}.log"

    def get(self, session_id: str) -> AgentHost | None:
        host = self.hosts.get(session_id)
        return None if host is None or host.finished else host

    def lock(self, session_id: str) -> trio.Lock:
        return self._starting.setdefault(session_id, trio.Lock())

    async def start(
        self, row: sessions.SessionRow, command: AgentCommand, secrets: set[str], *, resume: bool
    ) -> AgentHost:
        """Start a host for a session that has none (the caller holds ``lock``).

        Cancellation: none; the session is marked ``starting`` (shielded) and the
        host started before a cancel is seen."""
        host = AgentHost(
            row=row,
            command=command,
            recorder=Recorder(row.id, self.store, self.journal, secrets),
            permissions=self.permissions,
            ids=self.store.ids,
            options=self.settings.supervision,
            log_path=self.log_path(row.id),
            nursery=self.nursery,
            resume=resume,
        )
        self.hosts[row.id] = host
        await host.recorder.write(
            sessions.transition,
            row.id,
            "starting",
            action="start the agent of",
            reason="agent_starting",
            values={"agent": command.kind, "failure": None},
        )
        self.nursery.start_soon(self._run_host, host)
        return host

    async def _run_host(self, host: AgentHost) -> None:
        try:
            await host.run()
        except Exception:
            log.exception("agent_host_crashed", session_id=host.session_id)
            host.failure = "internal error in mimird's agent host (see the daemon's log)"
            with trio.CancelScope(shield=True):
                await self.store.write(
                    sessions.transition_if,
                    host.session_id,
                    "failed",
                    only_from=sessions.AGENT_UP,
                    reason="agent_host_crashed",
                    values={"failure": host.failure},
                    events=(),
                )
        finally:
            if self.hosts.get(host.session_id) is host:
                del self.hosts[host.session_id]

    async def stop(self, session_id: str, *, reason: str) -> sessions.SessionRow | None:
        """Stop the session's agent; the session as it is then, or None if it had none.

        Cancellation: the agent is stopped anyway (see :meth:`AgentHost.stop`); the
        session may not be marked ``stopped`` yet (its status says ``starting`` or
        ``idle`` until the next start's reconciliation)."""
        host = self.get(session_id)
        if host is None:
            return None
        await host.stop()
        await self.journal.flush()
        row: sessions.SessionRow | None = await self.store.write(
            sessions.transition_if,
            session_id,
            "stopped",
            only_from=sessions.AGENT_UP,
            reason=reason,
            values={"process_group": None},
            events=(),
        )
        return row

    async def stop_all(self, reason: str) -> None:
        """Stop every agent, concurrently.

        Cancellation: as :meth:`stop`, for each."""
        hosts = [h for h in self.hosts.values() if not h.finished]
        if not hosts:
            return
        log.info("agents_stopping", count=len(hosts), reason=reason)
        async with trio.open_nursery() as nursery:
            for host in hosts:
                nursery.start_soon(self._stop_for, host.session_id, reason)

    async def _stop_for(self, session_id: str, reason: str) -> None:
        await self.stop(session_id, reason=reason)

    def find_permission(self, permission_id: str) -> Permission:
        return self.permissions.find(permission_id)


__all__ = ["AgentManager"]
