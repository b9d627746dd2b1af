"""Agent hosts: one supervised ACP agent process per session.

An :class:`AgentHost` starts the session's agent in its workspace, in a process
group of its own, with the allowlisted environment plus the layered env, speaks
ACP to it (:mod:`~mimird.agents.handshake`), and keeps it running. What the agent
does meanwhile is handled by the host's parts, each given the host's
:class:`~mimird.agents.recorder.Recorder`: :mod:`~mimird.agents.turns` (prompts
and cancels), :mod:`~mimird.agents.permissions`, :mod:`~mimird.agents.client_methods`
(``fs/*`` and ``terminal/*``) and :mod:`~mimird.agents.updates`.

Supervision follows supervisor's model: the process moves through the states of
:class:`ProcessState`, every change by :meth:`AgentHost.change_state` and journaled
(``process_state_changed``). An agent that exits unexpectedly (while starting or
later) is restarted after the delay :class:`~mimird.agents.restart.RestartPolicy`
gives; past ``max_restarts`` failures in a row the session is failed with the
reason (exit code or signal, last stderr lines). Every start, exit and restart is
journaled. Stopping always ends the whole process group (``processes.stop_group``).
"""

from __future__ import annotations

import contextlib
import enum
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import structlog
import trio

from mimird import __version__, policy
from mimird.agents import handoff, terminals
from mimird.agents.acp import AcpConnection, AcpConnectionClosed, AcpError
from mimird.agents.client_methods import ClientMethods
from mimird.agents.delegation import Delegates
from mimird.agents.handshake import handshake
from mimird.agents.model_mode import ModelMode
from mimird.agents.permissions import PermissionRegistry, park, policy_view
from mimird.agents.presets import AgentCommand
from mimird.agents.recorder import Recorder
from mimird.agents.restart import RestartPolicy
from mimird.agents.stderr_log import BoundedLog, pump
from mimird.agents.turn_files import TurnFiles
from mimird.agents.turns import Turn, TurnResult, Turns
from mimird.agents.updates import Updates
from mimird.config import SupervisionSection
from mimird.errors import AgentUnavailable, FileAccessFailed
from mimird.ids import IdGenerator
from mimird.processes import exit_status, stop_group
from mimird.sessions import records as sessions
from mimird.sessions.setup import FAILURE_TAIL_LINES
from mimird.sessions.states import AGENT_READY, AGENT_UP
from mimird.wire import events
from mimird.workspaces import files

log = structlog.get_logger("mimird.agents.host")

#: How long a state change's event may wait for room in the journal once cancelled.
JOURNAL_GRACE_S: Final = 5.0
#: How long the rest of a dead agent's stderr is read before its exit is journaled.
STDERR_DRAIN_S: Final = 1.0
#: Written to the stderr log before each start of the agent.
START_MARKER: Final = "--- mimird"
#: How long the journaling of the last state change may take when the host ends.
FINAL_STATE_TIMEOUT_S: Final = 5.0


class ProcessState(enum.Enum):
    """Where the agent's process is in its life (supervisor's ``ProcessStates``)."""

    #: Not running: not started yet, or stopped on request.
    STOPPED = "stopped"
    #: Started, doing the ACP handshake.
    STARTING = "starting"
    #: Up: the handshake succeeded, the agent takes prompts.
    RUNNING = "running"
    #: Exited unexpectedly, waiting for its restart.
    BACKOFF = "backoff"
    #: Asked to stop: its turn is cancelled and its group stopped.
    STOPPING = "stopping"
    #: Given up after too many failures in a row: the session failed.
    FATAL = "fatal"


#: The legal changes of :class:`ProcessState` (any live state may also go straight
#: to STOPPED when the host itself ends: its owner cancelled it, or it crashed).
_NEXT: Final[dict[ProcessState, frozenset[ProcessState]]] = {
    ProcessState.STOPPED: frozenset({ProcessState.STARTING}),
    ProcessState.STARTING: frozenset(
        {ProcessState.RUNNING, ProcessState.BACKOFF, ProcessState.STOPPING, ProcessState.FATAL}
    ),
    ProcessState.RUNNING: frozenset(
        {ProcessState.BACKOFF, ProcessState.STOPPING, ProcessState.FATAL}
    ),
    ProcessState.BACKOFF: frozenset(
        {ProcessState.STARTING, ProcessState.STOPPING, ProcessState.FATAL}
    ),
    ProcessState.STOPPING: frozenset({ProcessState.STOPPED}),
    ProcessState.FATAL: frozenset(),
}


def _exit_reason(returncode: int | None) -> tuple[int | None, str | None, str]:
    """(exit code, signal name, description) of a finished process."""
    if returncode is None:
        return None, None, "did not exit"
    code, name = exit_status(returncode)
    if name is not None:
        return None, name, f"was killed by {name}"
    return code, None, f"exited with code {returncode}"


async def supervise(
    life: Callable[[int], Awaitable[str]],
    policy: RestartPolicy,
    *,
    stopping: Callable[[], bool],
    restart: Callable[[int, float, str], Awaitable[None]],
) -> tuple[int, str] | None:
    """Run ``life(attempt)`` (one life of the agent, returning why it ended) again
    and again, as ``policy`` says, until ``stopping()``. ``restart(attempt, delay,
    reason)`` is awaited before each restart and does the wait. Returns None when
    stopped, or (failures in a row, last reason) when the agent is given up.

    Cancellation: whatever ``life`` or ``restart`` do on cancellation; nothing more."""
    attempt = 0
    while not stopping():
        began = trio.current_time()
        reason = await life(attempt)
        if stopping():
            break
        ran_for = trio.current_time() - began
        delay = policy.next_delay(attempt, ran_for)
        failures = policy.failures(attempt, ran_for)
        if delay is None:
            return failures, reason
        await restart(failures, delay, reason)
        attempt = failures
    return None


class AgentHost:
    """One session's agent process: its supervision and lifecycle."""

    def __init__(
        self,
        *,
        row: sessions.SessionRow,
        command: AgentCommand,
        recorder: Recorder,
        permissions: PermissionRegistry,
        delegates: Delegates,
        ids: IdGenerator,
        options: SupervisionSection,
        log_path: Path,
        nursery: trio.Nursery,
        resume: bool,
        wanted: Mapping[str, Any] | None = None,
        git_limiter: trio.CapacityLimiter,
        turn_scratch: Path,
        config: Callable[[], Awaitable[policy.Effective]] | None = None,
    ) -> None:
        self.session_id = row.id
        #: The session's configuration as it is now (read for each permission request).
        self._config = config
        self.workspace = Path(row.workspace_path)
        #: The workspace's directory, held open from the first start of the agent
        #: until the host ends: the agent, its file requests and its terminals all
        #: work in that directory, even if its path is moved or swapped meanwhile
        #: (see :mod:`mimird.workspaces.files`).
        self.pinned: files.Workspace | None = None
        self.command = command
        self.recorder = recorder
        self.options = options
        self.policy = RestartPolicy.from_settings(options)
        self.log = BoundedLog(log_path, secrets=recorder.secrets)
        self.state = ProcessState.STOPPED
        #: The agent's ACP session id from the last start (resume loads it).
        self.acp_session_id: str | None = (row.agent_state or {}).get("acp_session_id")
        self.agent_state: dict[str, Any] = dict(row.agent_state or {})
        self._resume = resume
        self._ids = ids
        self._permissions = permissions
        self.conn: AcpConnection | None = None
        self.process: trio.Process | None = None
        #: Set when the host has ended (stopped, or failed past its restarts).
        self.finished = False
        self.failure: str | None = None
        #: Why the last attempt's ACP start failed, for the exit reason.
        self._start_error: str | None = None
        self._changed = trio.Event()
        self._stop_requested = False
        self._stop_scope: trio.CancelScope | None = None
        #: The commands the agent runs through Mimir, in the current life of the agent.
        self.terminals: terminals.Terminals | None = None
        self.updates = Updates(recorder, options.message_piece_bytes)
        self.client_methods = ClientMethods(
            recorder, self, options, delegates, missing_file=command.quirks.missing_file
        )
        #: Stopping sends SIGTERM at once, for agents that ignore EOF (``stop = "term"``).
        self._term_first = command.quirks.stop == "term"
        self.turn_files = TurnFiles(self.workspace, row.workspace_kind, git_limiter, turn_scratch)
        self.turns = Turns(
            recorder, permissions, self.updates, options, nursery, self, self.turn_files
        )
        #: The configured model and mode, set after each start and on session.set_*.
        self.model_mode = ModelMode(recorder, self, wanted or {})
        self.stopped = trio.Event()

    # ---- state ----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    @property
    def ready(self) -> bool:
        return self.state is ProcessState.RUNNING and self.conn is not None

    @property
    def turn(self) -> Turn | None:
        """The running turn, if any."""
        return self.turns.current

    async def change_state(self, new: ProcessState, reason: str = "") -> None:
        """Move the process to ``new`` (a legal change, checked) and journal it.
        Once stopping, only the change to STOPPED is made (a stop overrides).

        Cancellation: the state has changed and its event is still handed to the
        journal (shielded, for at most :data:`JOURNAL_GRACE_S`: only a journal that
        stays full that long can lose it)."""
        old = self.state
        if new is old or (old is ProcessState.STOPPING and new is not ProcessState.STOPPED):
            return  # a stop overrides what the life of the agent was doing
        if new not in _NEXT[old] and new is not ProcessState.STOPPED:
            raise AssertionError(f"agent process state {old.value} -> {new.value} is not legal")
        self.state = new
        self._signal()
        changed = events.ProcessStateChanged(from_=old.value, to=new.value, reason=reason or None)
        with trio.move_on_after(JOURNAL_GRACE_S, shield=True):
            await self.recorder.event(changed)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_ready(self) -> AcpConnection:
        """The live connection once the agent is up; raises :class:`AgentUnavailable`
        if the host gave up or it took too long.

        Cancellation: nothing happened; the agent goes on starting."""
        with trio.move_on_after(self.options.start_timeout_s * (self.options.max_restarts + 2)):
            while True:
                if self.finished:
                    raise AgentUnavailable(
                        f"the agent of session {self.session_id} is not running"
                        + (f": {self.failure}" if self.failure else ""),
                        field="session",
                        id=self.session_id,
                    )
                if self.ready and self.conn is not None:
                    return self.conn
                await self._changed.wait()
        raise AgentUnavailable(
            f"the agent of session {self.session_id} did not become ready",
            field="session",
            id=self.session_id,
        )

    # ---- supervision ---------------------------------------------------------------

    async def run(self) -> None:
        """Start the agent and keep it running until stopped or failed for good.

        Cancellation: (its owner's nursery cancelled) the process group is stopped
        (shielded), and the host ends ``stopped``; ``agent_exited`` may be missing,
        start-up reconciliation tells what became of the session."""
        try:
            given_up = await supervise(
                self._run_once,
                self.policy,
                stopping=lambda: self._stop_requested,
                restart=self._restart,
            )
            if given_up is not None:
                failures, reason = given_up
                self.failure = (
                    f"the agent failed {failures} times in a row; last: {reason}"
                    if failures > 1
                    else reason
                )
                log.warning("agent_failed", session_id=self.session_id, reason=reason)
                await self.change_state(ProcessState.FATAL, "too many failures")
                await self.recorder.move(
                    "failed",
                    only_from=AGENT_UP,
                    reason="agent_failed",
                    values={"failure": self.failure, "process_group": None},
                )
        finally:
            self.finished = True
            self._signal()
            self.turn_files.close()
            if self.pinned is not None:
                # Threads still at work hold descriptors of their own (borrowed).
                self.pinned.close()
                self.pinned = None
            if self.state is not ProcessState.FATAL:
                with trio.move_on_after(FINAL_STATE_TIMEOUT_S, shield=True):
                    await self.change_state(ProcessState.STOPPED)
            self.stopped.set()

    async def _restart(self, attempt: int, delay: float, reason: str) -> None:
        self.recorder.journal.metrics.agent_restarted(self.command.kind)
        await self.change_state(ProcessState.BACKOFF, "exited")
        await self.recorder.event(
            events.AgentRestarting(attempt=attempt, delay_s=delay, reason=reason)
        )
        await self.recorder.move(
            "starting",
            only_from=AGENT_READY,
            reason="agent_restarting",
        )
        with trio.CancelScope() as self._stop_scope:
            await trio.sleep(delay)

    async def _run_once(self, attempt: int) -> str:
        """One life of the agent process; returns why it ended (if not asked to)."""
        argv = self.command.argv
        await self.change_state(ProcessState.STARTING)
        await self.recorder.event(
            events.AgentStarting(attempt=attempt, command=argv[0], args=argv[1:])
        )
        self.log.write(f"{START_MARKER} {__version__}: starting {' '.join(argv)} ---\n".encode())
        try:
            if self.pinned is None:
                self.pinned = await trio.to_thread.run_sync(files.Workspace.pin, self.workspace)
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # The pinned directory itself, by its descriptor (as for terminals).
                cwd=f"/proc/self/fd/{self.pinned.fd}",
                env=self.command.env,
                start_new_session=True,
            )
        except FileAccessFailed as exc:
            await self.recorder.event(events.AgentStartFailed(reason=exc.message))
            return exc.message
        except OSError as exc:
            reason = f"cannot start {argv[0]}: {exc.strerror or exc}"
            await self.recorder.event(events.AgentStartFailed(reason=reason))
            return reason
        self.process = process
        await self.recorder.write(sessions.update, self.session_id, {"process_group": process.pid})
        log.info("agent_started", session_id=self.session_id, pid=process.pid, command=argv[0])
        expected = False
        try:
            async with trio.open_nursery() as nursery:
                assert process.stderr is not None
                assert process.stdout is not None
                assert process.stdin is not None
                stderr_done = trio.Event()

                async def drain_stderr(stream: trio.abc.ReceiveStream) -> None:
                    await pump(stream, self.log)
                    stderr_done.set()

                nursery.start_soon(drain_stderr, process.stderr)
                # Left after the connection: the agent's terminals stop after the agent.
                async with (
                    self._terminals() as self.terminals,
                    AcpConnection.open(
                        process.stdout,
                        process.stdin,
                        self,
                        max_requests=self.options.max_agent_requests,
                    ) as conn,
                ):
                    with trio.CancelScope() as self._stop_scope:
                        if self._stop_requested:
                            self._stop_scope.cancel()
                        started = await self._start_acp(conn, attempt)
                        if started:
                            await process.wait()
                        else:
                            await conn.wait_closed()
                    expected = self._stop_requested
                    self.conn = None
                    self._signal()
                    await self.updates.flush_message()
                    with trio.CancelScope(shield=True):
                        await self._stop_group(process, self.options.stop_grace_s)
                        # The agent is gone, but its last stderr lines may still be in
                        # the pipe: read them to its end before the failure quotes them
                        # (bounded: a leftover that holds the pipe open must not wait us).
                        with trio.move_on_after(STDERR_DRAIN_S):
                            await stderr_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.conn = None
            self.terminals = None
            with trio.CancelScope(shield=True):
                await self._stop_group(process, 0.01, term_grace=0.5)
        return await self._exited(process, expected)

    async def _exited(self, process: trio.Process, expected: bool) -> str:
        """Journal the end of a life of the agent; returns its reason."""
        code, sig, described = _exit_reason(process.returncode)
        tail = self.log.tail(FAILURE_TAIL_LINES)
        # Only what this attempt wrote: the lines after the last start marker.
        markers = [i for i, line in enumerate(tail) if line.startswith(START_MARKER)]
        if markers:
            tail = tail[markers[-1] + 1 :]
        tail = [self.recorder.scrub(line) for line in tail]
        reason = f"agent {self.command.kind} {described}"
        start_error, self._start_error = self._start_error, None
        if not expected and start_error:
            reason += f" ({start_error})"
        if tail and not expected:
            reason += ":\n" + "\n".join(tail)
        await self.recorder.event(
            events.AgentExited(
                exit_code=code, signal=sig, expected=expected, stderr_tail=[] if expected else tail
            )
        )
        await self.recorder.write(sessions.update, self.session_id, {"process_group": None})
        log.info(
            "agent_exited",
            session_id=self.session_id,
            exit_code=code,
            signal=sig,
            expected=expected,
        )
        return reason

    async def _stop_group(
        self, process: trio.Process, eof_grace: float, term_grace: float | None = None
    ) -> None:
        """Stop the agent's process group: SIGTERM first for a kind that ignores EOF.
        Cancellation: none (shielded, as :func:`stop_group`)."""
        term = self.options.stop_grace_s if term_grace is None else term_grace
        await stop_group(process, eof_grace=eof_grace, term_grace=term, term_first=self._term_first)

    def _terminals(self) -> contextlib.AbstractAsyncContextManager[terminals.Terminals]:
        return terminals.Terminals(
            self.session_id,
            self.command.env,
            self.recorder.store,
            self.recorder.journal,
            self.recorder.secrets,
            max_terminals=self.options.max_terminals,
            max_output_bytes=self.options.terminal_output_bytes,
            stop_grace_s=self.options.stop_grace_s,
        ).running()

    async def _start_acp(self, conn: AcpConnection, attempt: int) -> bool:
        """The handshake; True once the agent is up (RUNNING), False if it failed
        (the agent is then being stopped for a restart)."""
        began = trio.current_time()
        load = self.acp_session_id if (self._resume or attempt > 0) else None
        try:
            with trio.fail_after(self.options.start_timeout_s):
                done = await handshake(
                    conn,
                    self.workspace,
                    load=load,
                    replaying=self.updates.replaying,
                    config=self._config,
                )
        except (AcpError, TypeError) as exc:
            await self._start_failed(f"ACP start failed: {exc}", str(exc))
            return False
        except trio.TooSlowError:
            reason = f"no answer to initialize/session/new within {self.options.start_timeout_s} s"
            await self._start_failed(reason, reason)
            return False
        except AcpConnectionClosed:
            return False
        done = handoff.masked(done, self.recorder.scrub, self.session_id, load)
        self.turns.handoff = handoff.due(bool(self._resume or attempt), load, done)
        self.acp_session_id = done.acp_session_id
        await self.turns.guard.agent_started(done.loaded)
        init, result = done.init, done.session
        self.agent_state = {
            "protocol_version": init.get("protocolVersion"),
            "agent_info": init.get("agentInfo"),
            "capabilities": done.capabilities,
            "auth_methods": init.get("authMethods"),
            "acp_session_id": self.acp_session_id,
            "modes": result.get("modes", self.agent_state.get("modes")),
            "models": result.get("models", self.agent_state.get("models")),
            "config_options": result.get("configOptions", self.agent_state.get("config_options")),
            "pid": self.process.pid if self.process else None,
        }
        await self.model_mode.apply_at_start(conn, self.options.start_timeout_s, result)
        self.conn = conn
        startup_ms = round((trio.current_time() - began) * 1000)
        await self.recorder.move(
            "idle",
            only_from=frozenset({"starting"}),
            reason="agent_ready",
            values={"agent_state": self.agent_state, "failure": None},
            events=(
                events.AgentStarted(
                    pid=self.process.pid if self.process else None,
                    acp_session_id=self.acp_session_id,
                    loaded=done.loaded,
                    agent_info=init.get("agentInfo"),
                    protocol_version=init.get("protocolVersion"),
                    startup_ms=startup_ms,
                    load_error=done.load_error,
                    load_session_id=load,
                ),
            ),
        )
        # Ready only now: a caller of wait_ready reads the session's agent_state.
        await self.change_state(ProcessState.RUNNING)
        return True

    async def _start_failed(self, reason: str, journaled: str) -> None:
        """The agent runs but did not start its ACP session: stop it for a restart."""
        self._start_error = reason
        await self.recorder.event(events.AgentStartFailed(reason=journaled))
        if self.process is not None:
            await self._stop_group(self.process, 0.5)

    async def stop(self) -> None:
        """Cancel the turn if one runs, then stop the agent's whole process group,
        and return once the host has ended.

        Cancellation: the stop goes on (the host is told to stop before the first
        await); only the wait for the end is shielded, so this returns once it ended."""
        self._stop_requested = True
        if self.state in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.BACKOFF):
            await self.change_state(ProcessState.STOPPING)
        turn = self.turns.current
        if turn is not None and self.conn is not None:
            with contextlib.suppress(Exception):
                await self.turns.cancel(grace=min(self.options.cancel_grace_s, 2.0))
                with trio.move_on_after(min(self.options.cancel_grace_s, 2.0)):
                    await turn.done.wait()
        if self._stop_scope is not None:
            self._stop_scope.cancel()
        self._signal()
        with trio.CancelScope(shield=True):
            await self.stopped.wait()

    async def restart_unresponsive(self, grace: float) -> None:
        """The agent did not end a cancelled turn within ``grace``: stop its group,
        and the supervisor restarts it (the turn ends ``cancelled``).

        Cancellation: the group may be left running; the next stop ends it."""
        if self.process is None or self._stop_requested:
            return
        log.warning("agent_cancel_timed_out", session_id=self.session_id, grace_s=grace)
        await self.recorder.event(events.CancelTimedOut(grace_s=grace))
        await self._stop_group(self.process, 0.1)

    # ---- turns and permissions, for the API ------------------------------------------

    async def prompt(
        self,
        content: list[Any],
        text: str,
        *,
        template: str | None = None,
        journaled: Callable[[int], None] | None = None,
    ) -> TurnResult:
        """See :meth:`Turns.prompt`.

        Cancellation: as :meth:`Turns.prompt` (a journaled prompt always gets its
        ``turn_ended``)."""
        return await self.turns.prompt(content, text, template=template, journaled=journaled)

    async def cancel(self, *, grace: float | None = None) -> None:
        """See :meth:`Turns.cancel`.

        Cancellation: as :meth:`Turns.cancel`."""
        await self.turns.cancel(grace=grace)

    async def ask_permission(self, params: Any) -> Any:
        """``session/request_permission`` (see :func:`permissions.park`).

        Cancellation: the request is withdrawn, as :func:`permissions.park` says."""
        return await park(
            self._permissions,
            self.recorder,
            self._ids.new(),
            params,
            cancelled=lambda: (
                self.turns.current is not None and self.turns.current.cancel_requested
            ),
            policy=await policy_view(self._config, params, self.client_methods.sandboxed),
        )

    # ---- the ACP handler: what the agent sends ----------------------------------------

    async def on_request(self, method: str, params: Any) -> Any:
        """A request of the agent, answered by its :class:`ClientMethods`.

        Cancellation: as :meth:`ClientMethods.on_request`."""
        return await self.client_methods.on_request(method, params)

    async def on_notification(self, method: str, params: Any) -> None:
        """A notification of the agent, journaled by its :class:`Updates`.

        Cancellation: as :meth:`Updates.on_notification`; its usage may be uncounted."""
        await self.updates.on_notification(method, params)
        if method == "session/update" and self.ready and isinstance(params, dict):
            await self.model_mode.on_update(params.get("update"))
        if method == "session/update" and not self.updates.loading:
            await self.turns.on_update(params)

    async def on_protocol_error(self, line_preview: str, reason: str) -> None:
        """A line of the agent that was skipped, journaled.

        Cancellation: the event was submitted or not."""
        await self.updates.on_protocol_error(line_preview, reason)


__all__ = ["AgentHost", "ProcessState", "supervise"]
