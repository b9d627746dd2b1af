"""Agent hosts: one supervised ACP agent process per session.

An :class:`AgentHost` starts the session's agent in its workspace, in a process
group of its own, with the allowlisted environment plus the layered env; it
speaks ACP to it (``initialize``, then ``session/new`` or ``session/load``),
journals everything the agent sends, and answers its requests: permission
requests are parked until a client answers them, file reads and writes are
served inside the workspace only, and commands the agent asks for (ACP
terminals, see :mod:`mimird.agents.terminals`) run in the workspace and end with the
agent.

Supervision follows supervisor's model: an agent that exits unexpectedly (while
starting or later) is restarted after an exponential backoff; an agent that ran
``stable_after_s`` before exiting starts again with a clean count; past
``max_restarts`` the session is failed with the reason (exit code or signal,
last stderr lines). Every start, exit and restart is journaled. Stopping always
ends the whole process group (``processes.stop_group``).

The :class:`AgentManager` owns the hosts (an async context manager with a
nursery); leaving it stops every agent, cancelling running turns first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog
import trio

from mimird import __version__
from mimird.agents import terminals
from mimird.agents.acp import AcpConnection, AcpConnectionClosed, AcpError, MethodNotFound
from mimird.agents.presets import PRESETS
from mimird.agents.stderr_log import BoundedLog, pump
from mimird.config import AgentSection, Settings, SupervisionSection
from mimird.errors import AgentUnavailable, Busy, InvalidParams, InvalidState, NotFound
from mimird.journal import writer as journal
from mimird.processes import child_environment, exit_status, stop_group
from mimird.secrets import ChunkMasker, scrub, scrub_value
from mimird.sessions import records as sessions
from mimird.sessions.setup import FAILURE_TAIL_LINES
from mimird.store import Store
from mimird.timeutil import utc_now

log = structlog.get_logger("mimird.agents.presets")

ACP_PROTOCOL_VERSION: Final = 1
#: ACP "resource not found", for a file read of a missing file.
RESOURCE_NOT_FOUND: Final = -32002
#: Files larger than this are not served to agents (they would be one huge line).
MAX_FILE_BYTES: Final = 32 * 1024 * 1024
#: Written to the stderr log before each start of the agent.
START_MARKER: Final = "--- mimird"
#: A message's chunks are joined by this many at a time while it streams.
MESSAGE_PARTS_JOINED: Final = 1024
PERMISSION_KINDS: Final = ("allow_once", "allow_always", "reject_once", "reject_always")


@dataclass(frozen=True, slots=True)
class AgentCommand:
    kind: str
    argv: list[str]
    env: dict[str, str]


def resolve_command(
    kind: str, configured: Mapping[str, AgentSection], layered_env: Mapping[str, str]
) -> AgentCommand:
    """The command line and environment for an agent kind, found on the PATH the
    agent will get. Raises :class:`AgentUnavailable` when it cannot be found."""
    kind_env: dict[str, str] = {}
    if kind in configured:
        section = configured[kind]
        candidates: tuple[str, ...] = (section.command,)
        args = list(section.args)
        kind_env = dict(section.env)
    elif kind in PRESETS:
        preset = PRESETS[kind]
        candidates, args, kind_env = preset.commands, list(preset.args), dict(preset.env)
    else:
        known = ", ".join(sorted({*PRESETS, *configured}))
        raise AgentUnavailable(
            f"unknown agent kind {kind!r}; known kinds: {known} (add one as [agents.{kind}] "
            "in the config file)",
            field="agent",
            id=kind,
        )
    env = child_environment({**kind_env, **layered_env})
    search_path = env.get("PATH", os.defpath)
    for candidate in candidates:
        found = shutil.which(candidate, path=search_path)
        if found is not None:
            return AgentCommand(kind, [found, *args], env)
    raise AgentUnavailable(
        f"agent {kind!r}: command {' or '.join(repr(c) for c in candidates)} not found on "
        f"PATH ({search_path}); install it, or set [agents.{kind}] command in the config file",
        field="agent",
        id=kind,
    )


def _exit_reason(returncode: int | None) -> tuple[int | None, str | None, str]:
    """(exit code, signal name, description) of a finished process."""
    if returncode is None:
        return None, None, "did not exit"
    code, name = exit_status(returncode)
    if name is not None:
        return None, name, f"was killed by {name}"
    return code, None, f"exited with code {returncode}"


def confine(
    workspace: Path,
    path: Any,
    field_name: str = "path",
    refusal: str = "Mimir only serves files inside it",
) -> Path:
    """``path`` resolved (symlinks and ``..``) and checked to lie inside the
    workspace. Relative paths are taken relative to the workspace."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise AcpError(-32602, f"{field_name} must be a non-empty path")
    root = Path(os.path.realpath(workspace))
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = Path(os.path.realpath(candidate))
    if resolved != root and root not in resolved.parents:
        raise AcpError(
            -32602,
            f"{path} is outside the session's workspace {root}; {refusal}",
        )
    return resolved


_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


#: A path whose directories are not plain ones when opened: not a directory, or a
#: symlink swapped in after :func:`confine` checked the path.
_SWAPPED: Final = (
    "{}: a part of the path is not a directory (or became a symlink after it was checked); refused"
)


def _open_dir(workspace: Path, directory: Path, *, create: bool = False) -> int:
    """A file descriptor of ``directory``, a path :func:`confine` resolved inside
    ``workspace``, opened one component at a time without following symlinks
    (``create``: making the missing ones). A component swapped for a symlink after
    :func:`confine` resolved the path fails the open (``ELOOP``) instead of leading
    out of the workspace."""
    root = os.path.realpath(workspace)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in directory.relative_to(root).parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_text(workspace: Path, path: Path, line: int | None, limit: int | None) -> str:
    parent = _open_dir(workspace, path.parent)
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    finally:
        os.close(parent)
    with open(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if info.st_size > MAX_FILE_BYTES:
            raise AcpError(
                -32602, f"{path} is {info.st_size} bytes; at most {MAX_FILE_BYTES} are served"
            )
        text = file.read(MAX_FILE_BYTES + 1).decode("utf-8", errors="replace")
    if line is None and limit is None:
        return text
    lines = text.splitlines(keepends=True)
    start = max((line or 1) - 1, 0)
    end = len(lines) if limit is None else start + max(limit, 0)
    return "".join(lines[start:end])


def _write_text(workspace: Path, path: Path, content: str) -> int:
    """Write atomically (temp file + rename, both inside the directory opened by
    :func:`_open_dir`), keeping an existing file's mode; a new file gets 0o666 less
    the umask, applied by the kernel (reading the umask would mean setting it, for
    every thread of the daemon)."""
    data = content.encode()
    parent = _open_dir(workspace, path.parent, create=True)
    try:
        try:
            info = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            mode: int | None = None
        else:
            if stat.S_ISLNK(info.st_mode):  # swapped in since it was resolved
                raise OSError(errno.ELOOP, "is a symlink")
            mode = info.st_mode & 0o7777
        tmp = f".{path.name}.mimir-{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=parent)  # left over from a write that failed half way
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(tmp, flags, 0o666 if mode is None else mode, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if mode is not None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=parent, dst_dir_fd=parent)
    finally:
        os.close(parent)
    return len(data)


@dataclass(eq=False)
class Permission:
    """A permission request from an agent, parked until a client answers it."""

    id: str
    session_id: str
    tool_call: Any
    options: list[dict[str, Any]]
    requested_at: str
    answered: trio.Event = field(default_factory=trio.Event)
    #: The ACP outcome sent to the agent once answered.
    outcome: dict[str, Any] | None = None
    answered_by: str | None = None


@dataclass(eq=False)
class Turn:
    started_at: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    #: Whether session/prompt went out (a cancel before it ends the turn at once).
    sent: bool = False
    done: trio.Event = field(default_factory=trio.Event)


def _cancelled(turn: Turn) -> bool:
    return turn.cancel_requested


@dataclass(frozen=True, slots=True)
class TurnResult:
    stop_reason: str
    usage: Any
    prompt_seq: int
    end_seq: int


class AgentHost:
    """One session's agent: process, ACP connection, restarts, turns, permissions."""

    def __init__(
        self,
        manager: AgentManager,
        row: sessions.SessionRow,
        command: AgentCommand,
        secrets: set[str],
        *,
        resume: bool,
    ) -> None:
        self.manager = manager
        self.session_id = row.id
        self.workspace = Path(row.workspace_path)
        #: The workspace with symlinks resolved: what file paths are checked against.
        self.root = Path(os.path.realpath(self.workspace))
        self.command = command
        self.secrets = secrets
        self.options: SupervisionSection = manager.settings.supervision
        self.log = BoundedLog(manager.log_path(row.id))
        #: The agent's ACP session id from the last start (resume loads it).
        self.acp_session_id: str | None = (row.agent_state or {}).get("acp_session_id")
        self.agent_state: dict[str, Any] = dict(row.agent_state or {})
        self._resume = resume
        self.conn: AcpConnection | None = None
        self.process: trio.Process | None = None
        self.ready = False
        #: Set when the host has ended (stopped, or failed past its restarts).
        self.finished = False
        self.failure: str | None = None
        #: Why the last attempt's ACP start failed, for the exit reason.
        self._start_error: str | None = None
        self._changed = trio.Event()
        self._stop_requested = False
        self._stop_scope: trio.CancelScope | None = None
        self.turn: Turn | None = None
        self.permissions: dict[str, Permission] = {}
        #: The commands the agent runs through Mimir, in the current life of the agent.
        self.terminals: terminals.Terminals | None = None
        #: Updates that ``session/load`` replays are history already journaled.
        self._loading = False
        self._message: dict[str, Any] | None = None
        #: Holds back a message chunk while it may end with part of a secret.
        self._masker: ChunkMasker[Any] = ChunkMasker(secrets)
        self.stopped = trio.Event()

    # ---- state ----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_ready(self) -> AcpConnection:
        """The live connection once the agent is up; raises if the host gave up."""
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

    async def _write(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with trio.CancelScope(shield=True):
            return await self.manager.store.write(fn, *args, **kwargs)

    async def _event(self, kind: str, data: dict[str, Any], text: str | None = None) -> None:
        # Secrets never reach the journal (DESIGN.md invariant 9), whatever the agent
        # echoes back: masked in every string of the event and in its indexed text.
        if self.secrets:
            data = scrub_value(data, self.secrets)
            text = None if text is None else scrub(text, self.secrets)
        await self.manager.journal.submit(self.session_id, kind, data, text=text)

    async def _move(
        self,
        target: str,
        *,
        only_from: frozenset[str],
        reason: str = "",
        values: dict[str, Any] | None = None,
        events: tuple[tuple[str, dict[str, Any]], ...] = (),
    ) -> None:
        """Journal ``events`` and move the session to ``target`` if it is in ``only_from``
        (after the batched events submitted so far, so the journal reads in order)."""
        await self.manager.journal.flush()
        await self._write(
            sessions.transition_if,
            self.session_id,
            target,
            only_from=only_from,
            reason=reason,
            values=values or {},
            events=tuple((kind, scrub_value(data, self.secrets)) for kind, data in events),
        )

    # ---- supervision ---------------------------------------------------------------

    async def run(self) -> None:
        """Start the agent and keep it running until stopped or failed for good."""
        attempt = 0
        try:
            while not self._stop_requested:
                began = time.monotonic()
                reason = await self._run_once(attempt)
                if self.stopping:
                    break
                if time.monotonic() - began >= self.options.stable_after_s:
                    attempt = 0
                attempt += 1
                if attempt > self.options.max_restarts:
                    self.failure = (
                        f"the agent failed {attempt} times in a row; last: {reason}"
                        if attempt > 1
                        else reason
                    )
                    log.warning("agent_failed", session_id=self.session_id, reason=reason)
                    await self._move(
                        "failed",
                        only_from=sessions.AGENT_UP,
                        reason="agent_failed",
                        values={"failure": self.failure, "process_group": None},
                    )
                    return
                delay = min(
                    self.options.backoff_initial_s * 2 ** (attempt - 1), self.options.backoff_max_s
                )
                await self._event(
                    "agent_restarting", {"attempt": attempt, "delay_s": delay, "reason": reason}
                )
                await self._move(
                    "starting",
                    only_from=frozenset({"idle", "running", "awaiting_permission"}),
                    reason="agent_restarting",
                )
                with trio.CancelScope() as self._stop_scope:
                    await trio.sleep(delay)
        finally:
            self.finished = True
            self.ready = False
            self._signal()
            self.stopped.set()

    async def _run_once(self, attempt: int) -> str:
        """One life of the agent process; returns why it ended (if not asked to)."""
        argv = self.command.argv
        await self._event(
            "agent_starting", {"attempt": attempt, "command": argv[0], "args": argv[1:]}
        )
        self.log.write(f"{START_MARKER} {__version__}: starting {' '.join(argv)} ---\n".encode())
        try:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=str(self.workspace),
                env=self.command.env,
                start_new_session=True,
            )
        except OSError as exc:
            reason = f"cannot start {argv[0]}: {exc.strerror or exc}"
            await self._event("agent_start_failed", {"reason": reason})
            return reason
        self.process = process
        await self._write(sessions.update, self.session_id, {"process_group": process.pid})
        log.info("agent_started", session_id=self.session_id, pid=process.pid, command=argv[0])
        expected = False
        try:
            async with trio.open_nursery() as nursery:
                assert process.stderr is not None
                assert process.stdout is not None
                assert process.stdin is not None
                nursery.start_soon(pump, process.stderr, self.log)
                # Left after the connection: the agent's terminals stop after the agent.
                async with (
                    self._terminals() as self.terminals,
                    AcpConnection.open(process.stdout, process.stdin, self) as conn,
                ):
                    with trio.CancelScope() as self._stop_scope:
                        if self._stop_requested:
                            self._stop_scope.cancel()
                        started = await self._start_acp(conn, attempt)
                        if started is not None:
                            await process.wait()
                        else:
                            await conn.wait_closed()
                    expected = self._stop_requested
                    self.ready = False
                    self.conn = None
                    self._signal()
                    await self._flush_message()
                    with trio.CancelScope(shield=True):
                        await stop_group(
                            process,
                            eof_grace=self.options.stop_grace_s,
                            term_grace=self.options.stop_grace_s,
                        )
                nursery.cancel_scope.cancel()
        finally:
            self.conn = None
            self.ready = False
            self.terminals = None
            with trio.CancelScope(shield=True):
                await stop_group(process, eof_grace=0.01, term_grace=0.5)
        code, sig, described = _exit_reason(process.returncode)
        tail = self.log.tail(FAILURE_TAIL_LINES)
        # Only what this attempt wrote: the lines after the last start marker.
        markers = [i for i, line in enumerate(tail) if line.startswith(START_MARKER)]
        if markers:
            tail = tail[markers[-1] + 1 :]
        tail = [scrub(line, self.secrets) for line in tail]
        reason = f"agent {self.command.kind} {described}"
        start_error, self._start_error = self._start_error, None
        if not expected and start_error:
            reason += f" ({start_error})"
        if tail and not expected:
            reason += ":\n" + "\n".join(tail)
        await self._event(
            "agent_exited",
            {
                "exit_code": code,
                "signal": sig,
                "expected": expected,
                "stderr_tail": [] if expected else tail,
            },
        )
        await self._write(sessions.update, self.session_id, {"process_group": None})
        log.info(
            "agent_exited",
            session_id=self.session_id,
            exit_code=code,
            signal=sig,
            expected=expected,
        )
        return reason

    def _terminals(self) -> contextlib.AbstractAsyncContextManager[terminals.Terminals]:
        return terminals.Terminals(
            self.session_id,
            self.root,
            self.command.env,
            self.manager.store,
            self.manager.journal,
            self.secrets,
            max_terminals=self.options.max_terminals,
            max_output_bytes=self.options.terminal_output_bytes,
            stop_grace_s=self.options.stop_grace_s,
        ).running()

    async def _start_acp(self, conn: AcpConnection, attempt: int) -> dict[str, Any] | None:
        began = time.monotonic()
        try:
            with trio.fail_after(self.options.start_timeout_s):
                init = await conn.request(
                    "initialize",
                    {
                        "protocolVersion": ACP_PROTOCOL_VERSION,
                        "clientCapabilities": {
                            "fs": {"readTextFile": True, "writeTextFile": True},
                            "terminal": True,
                        },
                        "clientInfo": {"name": "mimir", "title": "Mimir", "version": __version__},
                    },
                )
                init = init if isinstance(init, dict) else {}
                capabilities = init.get("agentCapabilities") or {}
                can_load = bool(isinstance(capabilities, dict) and capabilities.get("loadSession"))
                loaded = False
                result: Any
                if (self._resume or attempt > 0) and self.acp_session_id and can_load:
                    self._loading = True
                    try:
                        result = await conn.request(
                            "session/load",
                            {
                                "sessionId": self.acp_session_id,
                                "cwd": str(self.workspace),
                                "mcpServers": [],
                            },
                        )
                        loaded = True
                    except AcpError as exc:
                        log.warning("agent_session_load_failed", error=str(exc))
                        result = None
                    finally:
                        self._loading = False
                if not loaded:
                    result = await conn.request(
                        "session/new", {"cwd": str(self.workspace), "mcpServers": []}
                    )
                    if not isinstance(result, dict) or not isinstance(result.get("sessionId"), str):
                        raise AcpError(
                            -32603, f"session/new answered without a sessionId: {result!r}"
                        )
                    self.acp_session_id = result["sessionId"]
        except (AcpError, TypeError) as exc:
            await self._start_failed(f"ACP start failed: {exc}", str(exc))
            return None
        except trio.TooSlowError:
            reason = f"no answer to initialize/session/new within {self.options.start_timeout_s} s"
            await self._start_failed(reason, reason)
            return None
        except AcpConnectionClosed:
            return None
        result = result if isinstance(result, dict) else {}
        self.agent_state = {
            "protocol_version": init.get("protocolVersion"),
            "agent_info": init.get("agentInfo"),
            "capabilities": capabilities,
            "auth_methods": init.get("authMethods"),
            "acp_session_id": self.acp_session_id,
            "modes": result.get("modes", self.agent_state.get("modes")),
            "models": result.get("models", self.agent_state.get("models")),
            "config_options": result.get("configOptions", self.agent_state.get("config_options")),
            "pid": self.process.pid if self.process else None,
        }
        self.conn = conn
        self.ready = True
        startup_ms = round((time.monotonic() - began) * 1000)
        await self._move(
            "idle",
            only_from=frozenset({"starting"}),
            reason="agent_ready",
            values={"agent_state": self.agent_state, "failure": None},
            events=(
                (
                    "agent_started",
                    {
                        "pid": self.process.pid if self.process else None,
                        "acp_session_id": self.acp_session_id,
                        "loaded": loaded,
                        "agent_info": init.get("agentInfo"),
                        "protocol_version": init.get("protocolVersion"),
                        "startup_ms": startup_ms,
                    },
                ),
            ),
        )
        self._signal()
        return self.agent_state

    async def _start_failed(self, reason: str, journaled: str) -> None:
        """The agent runs but did not start its ACP session: stop it for a restart."""
        self._start_error = reason
        await self._event("agent_start_failed", {"reason": journaled})
        if self.process is not None:
            await stop_group(self.process, eof_grace=0.5, term_grace=self.options.stop_grace_s)

    async def stop(self, *, reason: str) -> None:
        """Cancel the turn if one runs, then stop the agent's whole process group."""
        self._stop_requested = True
        if self.turn is not None and self.conn is not None:
            with contextlib.suppress(Exception):
                await self.cancel(grace=min(self.options.cancel_grace_s, 2.0))
                with trio.move_on_after(min(self.options.cancel_grace_s, 2.0)):
                    await self.turn.done.wait() if self.turn is not None else None
        if self._stop_scope is not None:
            self._stop_scope.cancel()
        self._signal()
        with trio.CancelScope(shield=True):
            await self.stopped.wait()
        del reason

    # ---- prompt turns ---------------------------------------------------------------

    async def prompt(self, content: list[Any], text: str) -> TurnResult:
        if self.turn is not None:
            raise Busy(
                f"session {self.session_id} is running a turn; wait for it to end or cancel it "
                "('mimirctl cancel')",
                field="session",
                id=self.session_id,
            )
        turn = self.turn = Turn()
        try:
            conn = await self.wait_ready()
            await self.manager.journal.flush()
            prompt_seq = await self._write(
                sessions.prompt_started,
                self.session_id,
                {"content": scrub_value(content, self.secrets)},
                text=scrub(text, self.secrets),
            )
            if _cancelled(turn):  # while it waited for the agent or the journal
                return await self._end_turn(prompt_seq, "cancelled", None, None)
            try:
                # Queued synchronously: a session/cancel sent after this line follows it.
                turn.sent = True
                result = await conn.request(
                    "session/prompt", {"sessionId": self.acp_session_id, "prompt": content}
                )
            except AcpConnectionClosed:
                if turn.cancel_requested:
                    return await self._end_turn(prompt_seq, "cancelled", None, None)
                await self._end_turn(prompt_seq, "error", None, "the agent exited during the turn")
                raise AgentUnavailable(
                    f"the agent of session {self.session_id} exited during the turn; "
                    "it is being restarted (see 'mimirctl logs')",
                    field="session",
                    id=self.session_id,
                ) from None
            except AcpError as exc:
                await self._end_turn(prompt_seq, "error", None, f"{exc.message} (code {exc.code})")
                raise AgentUnavailable(
                    f"the agent answered the prompt with an error: {exc.message} (code {exc.code})",
                    field="session",
                    id=self.session_id,
                    detail={"code": exc.code, "data": exc.data},
                ) from None
            result = result if isinstance(result, dict) else {}
            stop_reason = result.get("stopReason")
            if not isinstance(stop_reason, str):
                stop_reason = "cancelled" if turn.cancel_requested else "end_turn"
            return await self._end_turn(prompt_seq, stop_reason, result.get("usage"), None)
        finally:
            turn.done.set()
            if self.turn is turn:
                self.turn = None

    async def _end_turn(
        self, prompt_seq: int, stop_reason: str, usage: Any, error: str | None
    ) -> TurnResult:
        await self._flush_message()
        for permission in list(self.permissions.values()):
            self._answer(permission, {"outcome": "cancelled"}, "turn_ended")
        data: dict[str, Any] = {"stop_reason": stop_reason}
        if usage is not None:
            data["usage"] = usage
        if error is not None:
            data["error"] = error
        await self.manager.journal.flush()
        seq = await self._write(sessions.turn_ended, self.session_id, data)
        return TurnResult(stop_reason, usage, prompt_seq, seq)

    async def cancel(self, *, grace: float | None = None) -> None:
        turn = self.turn
        if turn is None:
            raise InvalidState(
                f"session {self.session_id} has no turn running",
                field="session",
                id=self.session_id,
            )
        if turn.cancel_requested:
            return
        turn.cancel_requested = True
        await self._event("cancel_requested", {})
        for permission in list(self.permissions.values()):
            self._answer(permission, {"outcome": "cancelled"}, "cancelled")
        conn = self.conn
        if conn is not None and turn.sent:
            with contextlib.suppress(AcpConnectionClosed):
                await conn.notify("session/cancel", {"sessionId": self.acp_session_id})
        self.manager.nursery.start_soon(
            self._cancel_watchdog, turn, self.options.cancel_grace_s if grace is None else grace
        )

    async def _cancel_watchdog(self, turn: Turn, grace: float) -> None:
        with trio.move_on_after(grace):
            await turn.done.wait()
            return
        if self.turn is turn and self.process is not None and not self._stop_requested:
            log.warning("agent_cancel_timed_out", session_id=self.session_id, grace_s=grace)
            await self._event("cancel_timed_out", {"grace_s": grace})
            # The supervisor restarts it; the turn ends "cancelled".
            await stop_group(self.process, eof_grace=0.1, term_grace=self.options.stop_grace_s)

    # ---- permissions ----------------------------------------------------------------

    def _answer(self, permission: Permission, outcome: dict[str, Any], by: str) -> bool:
        if permission.answered.is_set():
            return False
        permission.outcome = outcome
        permission.answered_by = by
        permission.answered.set()
        return True

    def respond(
        self, permission: Permission, option_id: str | None, kind: str | None, by: str
    ) -> str:
        options = permission.options
        chosen: dict[str, Any] | None = None
        if option_id is not None:
            chosen = next((o for o in options if o.get("optionId") == option_id), None)
            if chosen is None:
                ids = ", ".join(str(o.get("optionId")) for o in options)
                raise InvalidParams(
                    f"permission {permission.id} has no option {option_id!r}; options: {ids}",
                    field="option_id",
                )
        elif kind is not None:
            chosen = next((o for o in options if o.get("kind") == kind), None)
            if chosen is None and kind.endswith("_always"):
                chosen = next(
                    (o for o in options if o.get("kind") == kind.replace("always", "once")), None
                )
            if chosen is None:
                kinds = ", ".join(sorted({str(o.get("kind")) for o in options}))
                raise InvalidParams(
                    f"permission {permission.id} offers no {kind} option; kinds offered: {kinds}",
                    field="kind",
                )
        if chosen is None:
            raise InvalidParams("give option_id or kind", field="kind")
        if not self._answer(
            permission, {"outcome": "selected", "optionId": chosen.get("optionId")}, by
        ):
            raise InvalidState(
                f"permission {permission.id} was already answered ({permission.answered_by})",
                field="permission",
                id=permission.id,
            )
        return str(chosen.get("optionId"))

    async def _request_permission(self, params: Any) -> Any:
        if not isinstance(params, dict) or not isinstance(params.get("options"), list):
            raise AcpError(-32602, "session/request_permission needs options")
        options = [o for o in params["options"] if isinstance(o, dict)]
        permission = Permission(
            id=self.manager.store.ids.new(),
            session_id=self.session_id,
            # What clients are shown (permission.list): secrets masked.
            tool_call=scrub_value(params.get("toolCall"), self.secrets),
            options=options,
            requested_at=utc_now(),
        )
        self.permissions[permission.id] = permission
        self.manager.permissions[permission.id] = permission
        try:
            title = (
                permission.tool_call.get("title")
                if isinstance(permission.tool_call, dict)
                else None
            )
            await self._move(
                "awaiting_permission",
                only_from=frozenset({"running"}),
                reason="permission_requested",
                events=(
                    (
                        "permission_requested",
                        {
                            "permission": permission.id,
                            "tool_call": permission.tool_call,
                            "options": options,
                            "title": title,
                        },
                    ),
                ),
            )
            if self.turn is not None and self.turn.cancel_requested:
                self._answer(permission, {"outcome": "cancelled"}, "cancelled")
            await permission.answered.wait()
            return {"outcome": permission.outcome}
        finally:
            del self.permissions[permission.id]
            self.manager.permissions.pop(permission.id, None)
            with trio.CancelScope(shield=True):
                outcome = permission.outcome or {"outcome": "withdrawn"}
                await self._move(
                    "running",
                    only_from=frozenset({"awaiting_permission"})
                    if not self.permissions
                    else frozenset(),
                    reason="permission_answered",
                    events=(
                        (
                            "permission_answered",
                            {
                                "permission": permission.id,
                                "outcome": outcome.get("outcome"),
                                "option_id": outcome.get("optionId"),
                                "by": permission.answered_by or "agent_withdrew",
                            },
                        ),
                    ),
                )

    # ---- the ACP handler: what the agent sends ----------------------------------------

    async def on_request(self, method: str, params: Any) -> Any:
        if method == "session/request_permission":
            return await self._request_permission(params)
        if method == "fs/read_text_file":
            return await self._read_file(params)
        if method == "fs/write_text_file":
            return await self._write_file(params)
        if method in terminals.METHODS:
            return await self._terminal(method, params)
        raise MethodNotFound(method)

    async def _terminal(self, method: str, params: Any) -> Any:
        if not isinstance(params, dict):
            raise AcpError(-32602, "params must be an object")
        session = params.get("sessionId")
        if session is not None and session != self.acp_session_id:
            raise AcpError(
                -32602, f"sessionId {session!r} is not this agent's session {self.acp_session_id!r}"
            )
        held = self.terminals
        if held is None:
            raise AcpError(-32603, "the session's agent is stopping; no terminals")
        cwd = self.root
        if method == "terminal/create" and params.get("cwd") is not None:
            try:
                cwd = await trio.to_thread.run_sync(self._terminal_cwd, params.get("cwd"))
            except AcpError as exc:
                await self._event(
                    "terminal_refused",
                    {
                        "command": scrub(str(params.get("command")), self.secrets),
                        "cwd": params.get("cwd"),
                        "reason": exc.message,
                    },
                )
                raise
        return await held.handle(method, params, cwd)

    def _terminal_cwd(self, cwd: Any) -> Path:
        """A terminal's working directory: inside the workspace, and a directory."""
        resolved = confine(self.root, cwd, "cwd", "terminals run only inside it")
        if not resolved.is_dir():
            raise AcpError(-32602, f"cwd {cwd} is not a directory")
        return resolved

    async def _confined(self, op: str, params: dict[str, Any]) -> Path:
        """The request's path inside the workspace; a refusal is journaled."""
        try:
            return await trio.to_thread.run_sync(confine, self.root, params.get("path"))
        except AcpError as exc:
            await self._event(
                "file_refused", {"op": op, "path": params.get("path"), "reason": exc.message}
            )
            raise

    async def _read_file(self, params: Any) -> Any:
        if not isinstance(params, dict):
            raise AcpError(-32602, "params must be an object")
        path = await self._confined("read", params)
        line, limit = params.get("line"), params.get("limit")
        try:
            text = await trio.to_thread.run_sync(
                _read_text,
                self.root,
                path,
                line if isinstance(line, int) else None,
                limit if isinstance(limit, int) else None,
            )
        except FileNotFoundError:
            raise AcpError(RESOURCE_NOT_FOUND, f"{params.get('path')} does not exist") from None
        except IsADirectoryError:
            raise AcpError(-32602, f"{params.get('path')} is a directory") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise AcpError(-32602, _SWAPPED.format(params.get("path"))) from None
            raise AcpError(-32603, f"cannot read {params.get('path')}: {exc.strerror}") from None
        await self._event(
            "file_read",
            {
                "path": str(path.relative_to(self.root)),
                "chars": len(text),
            },
        )
        return {"content": text}

    async def _write_file(self, params: Any) -> Any:
        if not isinstance(params, dict) or not isinstance(params.get("content"), str):
            raise AcpError(-32602, "fs/write_text_file needs path and content")
        path = await self._confined("write", params)
        try:
            size = await trio.to_thread.run_sync(_write_text, self.root, path, params["content"])
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise AcpError(-32602, _SWAPPED.format(params.get("path"))) from None
            raise AcpError(-32603, f"cannot write {params.get('path')}: {exc.strerror}") from None
        await self._event(
            "file_written",
            {"path": str(path.relative_to(self.root)), "bytes": size},
        )
        return None

    async def on_notification(self, method: str, params: Any) -> None:
        if method != "session/update":
            await self._event("agent_notification", {"method": method, "params": params})
            return
        if self._loading:
            return  # session/load replays history that is in the journal already
        update = params.get("update") if isinstance(params, dict) else None
        kind = update.get("sessionUpdate") if isinstance(update, dict) else None
        text: str | None = None
        if kind in ("agent_message_chunk", "agent_thought_chunk"):
            content = update.get("content") if isinstance(update, dict) else None
            if isinstance(content, dict) and content.get("type") == "text":
                chunk = content.get("text")
                if isinstance(chunk, str):
                    role = "agent" if kind == "agent_message_chunk" else "thought"
                    message_id = update.get("messageId") if isinstance(update, dict) else None
                    current = self._message
                    if current is None or current["role"] != role or current["id"] != message_id:
                        await self._flush_message()
                        self._message = {
                            "role": role,
                            "id": message_id,
                            "parts": [],
                            "blocks": [],
                        }
                    assert self._message is not None
                    parts = self._message["parts"]
                    parts.append(chunk)
                    if len(parts) >= MESSAGE_PARTS_JOINED:
                        # Joined as they come: a long message is a few large blocks,
                        # freed whole, not a small string per chunk all over the heap.
                        self._message["blocks"].append("".join(parts))
                        parts.clear()
                    if self.secrets:
                        await self._journal_chunks(self._masker.feed(params, chunk))
                        return
        else:
            await self._flush_message()
            if kind in ("tool_call", "tool_call_update") and isinstance(update, dict):
                title = update.get("title")
                text = title if isinstance(title, str) else None
        await self._journal_chunks(self._masker.flush())  # chunks held back go first
        await self._event("update", params, text=text)

    async def _journal_chunks(self, released: list[tuple[Any, str]]) -> None:
        """Journal message chunks the masker released, each with its masked text."""
        for params, text in released:
            await self._event("update", _with_chunk_text(params, text))

    async def _flush_message(self) -> None:
        await self._journal_chunks(self._masker.flush())
        message, self._message = self._message, None
        if message is None:
            return
        text = "".join([*message["blocks"], *message["parts"]])
        data: dict[str, Any] = {"role": message["role"], "text": text}
        if message["id"] is not None:
            data["message_id"] = message["id"]
        await self._event("message", data, text=text)

    async def on_protocol_error(self, line_preview: str, reason: str) -> None:
        log.warning("agent_protocol_error", session_id=self.session_id, reason=reason)
        await self._event(
            "agent_protocol_error",
            {"reason": reason, "preview": scrub(line_preview, self.secrets)},
        )


def _with_chunk_text(params: Any, text: str) -> Any:
    """A message chunk's update with its text replaced (by its masked form)."""
    update = params["update"]
    if update["content"]["text"] == text:
        return params
    return {**params, "update": {**update, "content": {**update["content"], "text": text}}}


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
        self.permissions: dict[str, Permission] = {}
        self._starting: dict[str, trio.Lock] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, store: Store, journal_: journal.Journal, settings: Settings
    ) -> AsyncIterator[AgentManager]:
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
        """Start a host for a session that has none (the caller holds ``lock``)."""
        host = AgentHost(self, row, command, secrets, resume=resume)
        self.hosts[row.id] = host
        await self._write_starting(row, command)
        self.nursery.start_soon(self._run_host, host)
        return host

    async def _write_starting(self, row: sessions.SessionRow, command: AgentCommand) -> None:
        await self.store.write(
            sessions.transition,
            row.id,
            "starting",
            action="start the agent of",
            reason="agent_starting",
            values={"agent": command.kind, "failure": None},
        )

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
        """Stop the session's agent; the session as it is then, or None if it had none."""
        host = self.get(session_id)
        if host is None:
            return None
        await host.stop(reason=reason)
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
        permission = self.permissions.get(permission_id)
        if permission is None:
            raise NotFound(
                f"no pending permission request {permission_id!r} (it may have been answered "
                "or withdrawn already)",
                field="permission",
                id=permission_id,
            )
        return permission


__all__ = [
    "AgentCommand",
    "AgentHost",
    "AgentManager",
    "Permission",
    "TurnResult",
    "confine",
    "resolve_command",
]
