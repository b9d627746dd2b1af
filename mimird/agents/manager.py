"""The owner of every agent host: opened with ``async with AgentManager.open(...)``,
it runs the hosts in its nursery; leaving it stops every agent, cancelling running
turns first. It also holds the one registry of pending permission requests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Protocol

import structlog
import trio

from mimird import journal, policy
from mimird.agents import budget, turn_files
from mimird.agents import permissions as permissions_
from mimird.agents.delegation import Delegates
from mimird.agents.host import AgentHost
from mimird.agents.permissions import Permission, PermissionRegistry
from mimird.agents.presets import AgentCommand, resolve_command
from mimird.agents.recorder import Recorder
from mimird.agents.stderr_log import BoundedLog
from mimird.agents.turns import TurnResult
from mimird.config import Settings
from mimird.errors import InvalidState, MimirError
from mimird.processes import SESSION_ENV
from mimird.secrets import scrub
from mimird.sessions import records as sessions
from mimird.sessions import usage as stored
from mimird.sessions.records import SessionRow
from mimird.sessions.states import (
    AGENT_UP,
    IN_TURN,
    RESUMABLE,
    STARTS_ON_PROMPT,
    check_transition,
)
from mimird.store import Store
from mimird.wire import events
from mimird.workspaces.provision import GIT_READ_THREADS

log = structlog.get_logger("mimird.agents.manager")

#: How long completing a session by auto_complete (stopping its agent) may take once
#: the turn's caller is gone.
AUTO_COMPLETE_TIMEOUT_S: Final = 30.0


class SessionConfigs(Protocol):
    """What starting an agent needs to know of its session (SessionService)."""

    def refuse_drifted(self, row: SessionRow, action: str) -> None: ...

    async def effective(self, row: SessionRow) -> policy.Effective: ...


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
        #: The clients (editors) that serve agents' file and terminal requests.
        options = settings.supervision
        self.delegates = Delegates(
            journal_,
            store.ids,
            nursery,
            timeout_s=options.client_request_timeout_s,
            max_read_bytes=options.file_max_bytes,
            max_output_bytes=options.terminal_output_bytes,
        )
        self._starting: dict[str, trio.Lock] = {}
        #: The threads that read git state; the daemon shares the workspaces' own
        #: (their reads limiter), so that turns' file checks queue with other reads.
        self.git_limiter = trio.CapacityLimiter(GIT_READ_THREADS)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, store: Store, journal_: journal.Journal, settings: Settings
    ) -> AsyncIterator[AgentManager]:
        """The manager, running its hosts in a nursery of its own.

        Cancellation: leaving the block, however, stops every agent (shielded:
        turns cancelled and journaled, process groups stopped), then cancels the
        hosts' tasks."""
        left = await trio.to_thread.run_sync(
            turn_files.clear_leftovers, settings.state_dir / turn_files.SCRATCH_DIR
        )
        if left:
            log.info("turn_indexes_cleared", left_by_earlier_daemons=len(left))
        async with trio.open_nursery() as nursery:
            manager = cls(store, journal_, settings, nursery)
            try:
                yield manager
            finally:
                with trio.CancelScope(shield=True):
                    await manager.stop_all("daemon_shutdown")
                nursery.cancel_scope.cancel()

    @property
    def running(self) -> int:
        """Hosts whose agent has not ended (running, starting or restarting)."""
        return sum(1 for host in self.hosts.values() if not host.finished)

    def log_path(self, session_id: str) -> Path:
        return self.settings.state_dir / "agent-logs" / f"{session_id}.log"

    def get(self, session_id: str) -> AgentHost | None:
        host = self.hosts.get(session_id)
        return None if host is None or host.finished else host

    def lock(self, session_id: str) -> trio.Lock:
        return self._starting.setdefault(session_id, trio.Lock())

    async def start(
        self,
        row: sessions.SessionRow,
        command: AgentCommand,
        secrets: set[str],
        *,
        resume: bool,
        wanted: dict[str, Any] | None = None,
        configs: SessionConfigs | None = None,
    ) -> AgentHost:
        """Start a host for a session that has none (the caller holds ``lock``).

        Cancellation: none; the session is marked ``starting`` (shielded) and the
        host started before a cancel is seen."""
        config = None if configs is None else self._current_config(row.id, configs)
        host = AgentHost(
            row=row,
            command=command,
            recorder=Recorder(row.id, self.store, self.journal, secrets),
            permissions=self.permissions,
            delegates=self.delegates,
            ids=self.store.ids,
            options=self.settings.supervision,
            log_path=self.log_path(row.id),
            nursery=self.nursery,
            resume=resume,
            wanted=wanted,
            git_limiter=self.git_limiter,
            turn_scratch=self.settings.state_dir / turn_files.SCRATCH_DIR,
            config=config,
        )
        if config is not None:
            host.turns.guard.effective = config
        self.hosts[row.id] = host
        await host.recorder.write(
            sessions.transition,
            row.id,
            "starting",
            action="start the agent of",
            reason="agent_starting",
            values={"agent": command.kind, "failure": None, "completed_at": None},
        )
        self.nursery.start_soon(self._run_host, host)
        return host

    def _current_config(
        self, session_id: str, configs: SessionConfigs
    ) -> Callable[[], Awaitable[policy.Effective]]:
        """Reads the session's configuration as it is at each call (a remembered
        rule, a ``session.update``, a ``project.update`` apply at once): what the
        tool policy and the budgets are checked against."""

        async def current() -> policy.Effective:
            return await configs.effective(await self.store.read(sessions.get, session_id))

        return current

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
                    only_from=AGENT_UP,
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
            only_from=AGENT_UP,
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

    # ---- what the API asks of agents -------------------------------------------------

    async def ensure_running(
        self, row: SessionRow, configs: SessionConfigs, *, allowed: frozenset[str]
    ) -> AgentHost:
        """The session's host, started first if it has none and its status is in
        ``allowed`` (else :class:`InvalidState`); the agent may still be starting.

        Cancellation: before the start, nothing happened; once it began, the host
        is started (see :meth:`start`)."""
        async with self.lock(row.id):
            host = self.get(row.id)
            if host is not None:
                return host
            row = await self.store.read(sessions.get, row.id)
            if row.status not in allowed:
                raise InvalidState(
                    f"cannot start the agent of session {row.id}: it is {row.status}"
                    + (" ('mimirctl resume' starts it again)" if row.status == "failed" else ""),
                    field="session",
                    id=row.id,
                    detail={"status": row.status},
                )
            configs.refuse_drifted(row, "start the agent of")
            effective = await configs.effective(row)
            kind = row.agent or effective.values["agent"]
            command = await trio.to_thread.run_sync(
                resolve_command,
                kind,
                self.settings.agents,
                {**effective.env(), SESSION_ENV: row.id},
                self.settings.agents_dir,
            )
            resume = row.status != "created"
            wanted = {key: effective.values[key] for key in ("model", "mode")}
            if wanted["mode"] is None:  # the kind's own default (claude: "default")
                wanted["mode"] = command.quirks.mode
            return await self.start(
                row,
                command,
                effective.secret_values(),
                resume=resume,
                wanted=wanted,
                configs=configs,
            )

    async def check_budget(self, row: SessionRow, configs: SessionConfigs) -> bool:
        """Refuse work on a session whose budget is used up: raise
        :class:`~mimird.errors.BudgetExceeded` (an idle session is moved to
        ``budget_exceeded`` first, journaled). True when the session is
        ``budget_exceeded`` but its budgets now allow more (it may resume).

        Cancellation: the move is made (shielded) or not."""
        effective = await configs.effective(row)
        used = await self.store.read(stored.of_session, row.id)
        found = budget.reached(effective, used)
        if found is None:
            return row.status == "budget_exceeded"
        if row.status == "idle":
            await self.journal.flush()
            await self.store.write(
                sessions.transition_if,
                row.id,
                "budget_exceeded",
                only_from=frozenset({"idle"}),
                reason=found.budget,
                events=(found.event(),),
            )
        raise budget.refusal(row.id, row.project_name, found)

    async def prompt(
        self,
        row: SessionRow,
        configs: SessionConfigs,
        content: list[Any],
        text: str,
        *,
        template: str | None = None,
        journaled: Callable[[int], None] | None = None,
    ) -> TurnResult:
        """Run one turn of the session's agent (started first when the session is
        created, stopped or interrupted) and return how it ended.

        Cancellation: as :meth:`Turns.prompt`: a journaled prompt always gets its
        ``turn_ended`` and the session leaves ``running``."""
        await self._wait_ending_turn(row.id)
        row = await self.store.read(sessions.get, row.id)
        if await self.check_budget(row, configs):
            raise InvalidState(
                f"session {row.id} stopped at its budget, which now allows more: "
                f"'mimirctl resume {row.id}' continues it",
                field="session",
                id=row.id,
                detail={"status": row.status},
            )
        host = await self.ensure_running(row, configs, allowed=STARTS_ON_PROMPT)
        result = await host.prompt(content, text, template=template, journaled=journaled)
        if result.stop_reason == "end_turn" and not result.pending_permissions:
            # Shielded: a caller gone once the turn ended must not leave the session
            # idle where auto_complete says completed.
            with trio.move_on_after(AUTO_COMPLETE_TIMEOUT_S, shield=True):
                await self._auto_complete(row.id, configs)
        return result

    async def _wait_ending_turn(self, session_id: str) -> None:
        """A client acts on ``turn_ended`` at once (prompts again, completes), while
        the daemon still finishes that turn: wait for it (bounded, see
        :meth:`Turns.wait_ending_turn`) rather than refuse the call for it.

        Cancellation: nothing changed."""
        if (host := self.get(session_id)) is not None:
            await host.turns.wait_ending_turn()

    async def _auto_complete(self, session_id: str, configs: SessionConfigs) -> None:
        row: SessionRow = await self.store.read(sessions.get, session_id)
        if row.status != "idle" or not (await configs.effective(row)).values["auto_complete"]:
            return
        try:
            await self.complete_session(row, configs, None, by="auto_complete")
        except MimirError as exc:  # overtaken: a prompt, a stop, a delete came first
            log.info("auto_complete_skipped", session_id=session_id, reason=str(exc))

    async def complete_session(
        self, row: SessionRow, configs: SessionConfigs, note: str | None, *, by: str
    ) -> SessionRow:
        """Stop the session's agent if it is up, then mark the session completed
        (``completed_at`` now), journaled with ``note`` (secrets masked). Refused with
        invalid_state while a turn runs, and from statuses that cannot complete.

        Cancellation: as :meth:`stop` until the agent is stopped; the completion
        itself is written shielded, or not at all."""
        await self._wait_ending_turn(row.id)
        async with self.lock(row.id):
            row = await self.store.read(sessions.get, row.id)
            host = self.get(row.id)
            if row.status in IN_TURN or (host is not None and host.turn is not None):
                raise InvalidState(
                    f"cannot complete session {row.id}: a turn is running; cancel it first "
                    f"('mimirctl cancel {row.id}') or wait for it to end",
                    field="session",
                    id=row.id,
                    detail={"status": row.status, "wanted": "completed"},
                )
            if row.status not in AGENT_UP:
                check_transition(row.id, row.status, "completed", "complete")
            secrets = (await configs.effective(row)).secret_values()
            await self.stop(row.id, reason="completing")
            completed = events.SessionCompleted(
                by=by, note=None if note is None else scrub(note, secrets)
            )
            with trio.CancelScope(shield=True):
                done: SessionRow = await self.store.write(
                    sessions.complete, row.id, completed, reason=by
                )
            return done

    async def cancel_turn(self, session_id: str) -> bool:
        """Cancel the session's running turn; False if none runs.

        Cancellation: as :meth:`Turns.cancel`."""
        host = self.get(session_id)
        if host is None or host.turn is None:
            return False
        await host.cancel()
        return True

    async def stop_session(self, session_id: str) -> SessionRow:
        """Stop the session's agent; a session that never started one is marked
        stopped too. Returns the session as it is then.

        Cancellation: as :meth:`stop`; the status may still say what it said."""
        async with self.lock(session_id):
            stopped = await self.stop(session_id, reason="stopped")
            if stopped is not None:
                return stopped
            row: SessionRow = await self.store.read(sessions.get, session_id)
            if row.status not in ("stopped", "failed", "completed"):
                row = await self.store.write(
                    sessions.transition, session_id, "stopped", action="stop", reason="stopped"
                )
            return row

    async def resume(self, row: SessionRow, configs: SessionConfigs) -> SessionRow:
        """Start the session's agent if it is not running, and return the session
        once the agent is ready.

        Cancellation: the agent goes on starting (see :meth:`ensure_running`)."""
        row = await self.store.read(sessions.get, row.id)
        if await self.check_budget(row, configs) and self.get(row.id) is not None:
            # The agent is still up: the session takes prompts again. (Without
            # one, it is started below.)
            await self.journal.flush()
            await self.store.write(
                sessions.transition_if,
                row.id,
                "idle",
                only_from=frozenset({"budget_exceeded"}),
                reason="budget_raised",
                events=(),
            )
        host = self.get(row.id)
        if host is None:
            host = await self.ensure_running(row, configs, allowed=RESUMABLE)
        await host.wait_ready()
        found: SessionRow = await self.store.read(sessions.get, row.id)
        return found

    async def stderr_tail(
        self, session_id: str, lines: int, secrets: set[str]
    ) -> tuple[Path, list[str]]:
        """The agent's stderr log and its last ``lines`` lines, secrets masked.

        Cancellation: nothing happened (the read in its thread finishes unseen)."""
        path = self.log_path(session_id)
        tail = await trio.to_thread.run_sync(_tail, path, lines)
        return path, [scrub(line, secrets) for line in tail]

    def pending_permissions(self, session_id: str | None = None) -> list[Permission]:
        """Permission requests still waiting for an answer, by id."""
        return self.permissions.unanswered(session_id)

    def respond(
        self, permission_id: str, option_id: str | None, kind: str | None, by: str
    ) -> tuple[Permission, str]:
        """Answer a pending permission request; returns it and the option chosen."""
        permission = self.permissions.find(permission_id)
        if self.get(permission.session_id) is None:
            raise InvalidState(
                f"the agent that asked permission {permission.id} is gone",
                field="permission",
                id=permission.id,
            )
        return permission, permissions_.respond(permission, option_id, kind, by)


def _tail(path: Path, lines: int) -> list[str]:
    if not path.exists() and not path.with_name(path.name + ".1").exists():
        return []
    return BoundedLog(path).tail(lines)


__all__ = ["AgentManager"]
