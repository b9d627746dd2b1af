"""Terminals: commands an agent runs through Mimir (ACP ``terminal/*``).

An agent asks for a command (``terminal/create``) and gets an id at once; it
then reads the output so far (``terminal/output``), waits for the exit
(``terminal/wait_for_exit``), kills it (``terminal/kill``, the id stays valid)
and finally releases it (``terminal/release``, which kills it if it still runs
and forgets the id). Each command runs in the session's workspace (a
:class:`WorkingDirectory` the caller opened from the pinned workspace, so that
the command starts in that very directory, whatever its path names by then), with
the agent's environment, stdin from /dev/null and stdout and stderr merged into one
bounded buffer, in a process group of its own.

A :class:`Terminals` set belongs to one life of one agent: its ``running()``
block owns a nursery that runs a watcher per command, and leaving it stops
every group it started (``processes.stop_group``: SIGTERM, SIGKILL, a final
sweep). So terminals die with their agent: when it stops, restarts or crashes,
when the session is stopped, archived or deleted, and when the daemon shuts
down. While a group may be alive its id is stored (table ``terminals``), so
that the next start after a crash of mimird reaps what is left of it.

The database functions at the end are plain sync functions taking a connection.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
import structlog
import trio

from mimird import journal
from mimird.agents.acp import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, AcpError
from mimird.processes import exit_status, group_alive, stop_group
from mimird.secrets import scrub
from mimird.store import Store
from mimird.store.schema import sessions, terminals
from mimird.timeutil import utc_now
from mimird.wire import events

log = structlog.get_logger("mimird.agents.terminals")

READ_SIZE: Final = 64 * 1024
#: After the command exited, how long its last output may take to arrive. A
#: process it left running in the background may hold the pipe open for ever,
#: so the end of the output cannot be what says the command is done.
DRAIN_AFTER_EXIT_S: Final = 0.25
METHODS: Final = frozenset(
    {
        "terminal/create",
        "terminal/output",
        "terminal/wait_for_exit",
        "terminal/kill",
        "terminal/release",
    }
)


class OutputBuffer:
    """The newest ``limit`` bytes (at most) of a command's output.

    Over the limit the oldest bytes go, cut at a UTF-8 character boundary: the
    cut moves past up to three continuation bytes (more would mean the output
    is not UTF-8, and then any boundary is as good as another)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self.truncated = False
        #: Every byte the command wrote, kept or not.
        self.total = 0
        self._data = bytearray()

    def append(self, chunk: bytes | bytearray) -> None:
        self.total += len(chunk)
        self._data += chunk
        excess = len(self._data) - self.limit
        if excess <= 0:
            return
        self.truncated = True
        cut = excess
        while cut < min(len(self._data), excess + 3) and self._data[cut] & 0xC0 == 0x80:
            cut += 1
        del self._data[:cut]

    @property
    def data(self) -> bytes:
        return bytes(self._data)

    def text(self, *, final: bool) -> str:
        """The kept output as text (bad UTF-8 replaced). While the command runs, a
        character whose last bytes have not arrived yet is left for the next read."""
        data = self._data
        end = len(data) if final else _complete_length(data)
        return data[:end].decode("utf-8", errors="replace")


def _complete_length(data: bytes | bytearray) -> int:
    """The length of ``data`` without a trailing UTF-8 sequence that is incomplete."""
    size = len(data)
    for back in range(1, min(size, 4) + 1):
        byte = data[size - back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: its lead byte is further back
        if 0xF0 <= byte < 0xF8:
            needed = 4
        elif byte >= 0xE0:
            needed = 3 if byte < 0xF0 else 1  # 0xF8 and up lead nothing
        elif byte >= 0xC0:
            needed = 2
        else:
            needed = 1
        return size - back if back < needed else size
    return size


@dataclass(frozen=True, slots=True)
class WorkingDirectory:
    """Where a command starts: a directory descriptor (the caller closes it once
    :meth:`Terminals.handle` returned) and its path relative to the workspace."""

    fd: int
    relative: str

    @property
    def path(self) -> str:
        """The directory by its descriptor: the child changes into the very directory
        that was opened (the kernel resolves the link to it), not into whatever a path
        names by the time it starts. The child's copy of the descriptor is closed
        before it runs the command (``close_fds``)."""
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        os.close(self.fd)


@dataclass(eq=False)
class Terminal:
    """One command started for the agent."""

    id: str
    process: trio.Process
    output: OutputBuffer
    command: str
    args: list[str]
    cwd: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: Set once the reader reached the end of the output.
    drained: trio.Event = field(default_factory=trio.Event)
    #: Set once the exit is recorded (``exit_code``/``signal``).
    exited: trio.Event = field(default_factory=trio.Event)
    exit_code: int | None = None
    signal: str | None = None

    def exit_status(self) -> dict[str, Any]:
        return {"exitCode": self.exit_code, "signal": self.signal}


def _invalid(message: str) -> AcpError:
    return AcpError(INVALID_PARAMS, message)


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v for v in value):
        raise _invalid(f"{name} must be a list of strings")
    return value


def _request_env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise _invalid("env must be a list of {name, value} objects")
    env = {}
    for item in value:
        name = item.get("name") if isinstance(item, dict) else None
        text = item.get("value") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise _invalid(f"env: {item!r} has no valid name")
        if not isinstance(text, str) or "\0" in text:
            raise _invalid(f"env: {name} needs a string value")
        env[name] = text
    return env


def checked_args(value: Any) -> list[str]:
    """A request's ``args``, checked (for a command an attached client runs, too)."""
    return _strings(value, "args")


def checked_env(value: Any) -> dict[str, str]:
    """A request's ``env``, checked, by name."""
    return _request_env(value)


class Terminals:
    """The terminals of one life of one session's agent; run them with
    ``async with Terminals(...).running() as terminals``."""

    def __init__(
        self,
        session_id: str,
        env: Mapping[str, str],
        store: Store,
        journal_: journal.Journal,
        secrets: set[str],
        *,
        max_terminals: int,
        max_output_bytes: int,
        stop_grace_s: float,
    ) -> None:
        self.session_id = session_id
        self.env = dict(env)
        self.store = store
        self.journal = journal_
        self.secrets = secrets
        self.max_terminals = max_terminals
        self.max_output_bytes = max_output_bytes
        self.stop_grace_s = stop_grace_s
        self._nursery: trio.Nursery | None = None
        self._terminals: dict[str, Terminal] = {}
        self._closing = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Terminals]:
        """Leaving the block stops every command still held (shielded, bounded).

        Cancellation: as leaving the block; every group started is stopped."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                yield self
            finally:
                with trio.CancelScope(shield=True):
                    await self._close()
                nursery.cancel_scope.cancel()

    def __len__(self) -> int:
        return len(self._terminals)

    def closing(self) -> bool:
        """Whether the set is being closed: no new command starts then."""
        return self._closing

    async def handle(
        self, method: str, params: dict[str, Any], cwd: WorkingDirectory | None
    ) -> Any:
        """Answer one ``terminal/*`` request; ``cwd`` is the confined working
        directory for ``terminal/create`` (the caller checked and opened it).

        Cancellation: a command that was started is held (and journaled) whatever
        cancels the request, so that it is stopped with the agent; a wait for its
        exit or output just ends."""
        if method == "terminal/create":
            if cwd is None:
                raise AcpError(INTERNAL_ERROR, "terminal/create needs its working directory")
            return await self._create(params, cwd)
        terminal = self._find(params)
        if method == "terminal/output":
            result: dict[str, Any] = {
                "output": terminal.output.text(final=terminal.exited.is_set()),
                "truncated": terminal.output.truncated,
            }
            if terminal.exited.is_set():
                result["exitStatus"] = terminal.exit_status()
            return result
        if method == "terminal/wait_for_exit":
            await terminal.exited.wait()
            return terminal.exit_status()
        if method == "terminal/kill":
            await self._stop(terminal)
            await self._settle(terminal)
            return {}
        if method == "terminal/release":
            del self._terminals[terminal.id]
            await self._end(terminal)
            await self._forget([terminal.id])
            return {}
        raise AcpError(METHOD_NOT_FOUND, f"method not found: {method}")

    def _find(self, params: dict[str, Any]) -> Terminal:
        terminal_id = params.get("terminalId")
        if not isinstance(terminal_id, str):
            raise _invalid("terminalId must be a string")
        terminal = self._terminals.get(terminal_id)
        if terminal is None:
            raise _invalid(
                f"no terminal {terminal_id!r} in this session: it was released, or belongs "
                "to another session, or never existed"
            )
        return terminal

    # ---- create -------------------------------------------------------------------

    async def _create(self, params: dict[str, Any], cwd: WorkingDirectory) -> dict[str, Any]:
        command = params.get("command")
        if not isinstance(command, str) or not command or "\0" in command:
            raise _invalid("command must be a non-empty string")
        args = _strings(params.get("args"), "args")
        env = {**self.env, **_request_env(params.get("env"))}
        limit = params.get("outputByteLimit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise _invalid("outputByteLimit must be an integer")
        if limit is not None and limit < 0:
            raise _invalid("outputByteLimit must not be negative")
        limit = self.max_output_bytes if limit is None else min(limit, self.max_output_bytes)
        if self.closing():
            raise AcpError(INTERNAL_ERROR, "the session's agent is stopping; no new terminals")
        if len(self._terminals) >= self.max_terminals:
            raise AcpError(
                INTERNAL_ERROR,
                f"this session already holds {len(self._terminals)} terminals, the most Mimir "
                "allows ([supervision] max_terminals); release finished ones with "
                "terminal/release",
            )
        terminal_id = self.store.ids.new()
        # Shielded from here until the terminal is held: a command that was started
        # must be known to _close, whatever cancels this request.
        with trio.CancelScope(shield=True):
            try:
                process = await trio.lowlevel.open_process(
                    [command, *args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    cwd=cwd.path,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise _invalid(f"cannot start {command}: {exc.strerror or exc}") from None
            if self.closing():  # the agent stopped while the command was being started
                await stop_group(process, eof_grace=0, term_grace=self.stop_grace_s)
                raise AcpError(INTERNAL_ERROR, "the session's agent is stopping; no new terminals")
            relative = cwd.relative
            terminal = Terminal(
                terminal_id, process, OutputBuffer(limit), command, list(args), relative
            )
            self._terminals[terminal_id] = terminal
            try:
                await self.store.write(record, terminal_id, self.session_id, process.pid)
            except BaseException:
                del self._terminals[terminal_id]
                await stop_group(process, eof_grace=0, term_grace=self.stop_grace_s)
                raise
            shown = [scrub(part, self.secrets) for part in (command, *args)]
            await self.journal.submit(
                self.session_id,
                events.TerminalStarted(
                    terminal=terminal_id,
                    command=shown[0],
                    args=shown[1:],
                    cwd=relative,
                    pid=process.pid,
                ),
                text=" ".join(shown),
            )
            # After terminal_started went to the journal: the watcher journals the exit.
            assert self._nursery is not None, "use Terminals.running()"
            self._nursery.start_soon(self._watch, terminal)
        log.info(
            "terminal_started",
            session_id=self.session_id,
            terminal=terminal_id,
            pid=process.pid,
            command=shown[0],
        )
        return {"terminalId": terminal_id}

    # ---- a command's life -----------------------------------------------------------

    async def _watch(self, terminal: Terminal) -> None:
        """Read the output; once the command exited, record it; forget the group once
        it is empty (a process left in the background keeps it until release)."""
        with terminal.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, terminal)
                await terminal.process.wait()
                await self._settle(terminal)
                if not await trio.to_thread.run_sync(group_alive, terminal.process.pid):
                    await self._forget([terminal.id])

    async def _read(self, terminal: Terminal) -> None:
        stream = terminal.process.stdout
        assert stream is not None
        try:
            async with stream:
                while data := await stream.receive_some(READ_SIZE):
                    terminal.output.append(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            terminal.drained.set()

    async def _settle(self, terminal: Terminal) -> None:
        """After the command's exit: wait a moment for its last output, then record
        the exit (once, whoever calls first)."""
        with trio.move_on_after(DRAIN_AFTER_EXIT_S):
            await terminal.drained.wait()
        if terminal.exited.is_set() or terminal.process.returncode is None:
            return
        terminal.exit_code, terminal.signal = exit_status(terminal.process.returncode)
        terminal.exited.set()
        with trio.CancelScope(shield=True):
            await self.journal.submit(
                self.session_id,
                events.TerminalExited(
                    terminal=terminal.id, exit_code=terminal.exit_code, signal=terminal.signal
                ),
            )
        log.info(
            "terminal_exited",
            session_id=self.session_id,
            terminal=terminal.id,
            exit_code=terminal.exit_code,
            signal=terminal.signal,
            output_bytes=terminal.output.total,
        )

    async def _stop(self, terminal: Terminal) -> None:
        """SIGTERM, then SIGKILL, to the command's whole group, unless it is gone
        already (a signal to a number that is free again could reach a stranger)."""
        process = terminal.process
        if process.returncode is None or await trio.to_thread.run_sync(group_alive, process.pid):
            await stop_group(process, eof_grace=0, term_grace=self.stop_grace_s)

    async def _end(self, terminal: Terminal) -> None:
        """Stop the command's whole group, record its exit, end its watcher."""
        with trio.CancelScope(shield=True):
            await self._stop(terminal)
            await self._settle(terminal)
        terminal.scope.cancel()

    async def _forget(self, terminal_ids: list[str]) -> None:
        with trio.CancelScope(shield=True):
            await self.store.write(forget, terminal_ids)

    async def _close(self) -> None:
        self._closing = True
        held = list(self._terminals.values())
        self._terminals.clear()
        if not held:
            return
        log.info("terminals_stopping", session_id=self.session_id, count=len(held))
        async with trio.open_nursery() as nursery:
            for terminal in held:
                nursery.start_soon(self._end, terminal)
        await self._forget([t.id for t in held])


# ---- the database: groups that may be alive ------------------------------------------


def record(conn: sa.Connection, terminal_id: str, session_id: str, pgid: int) -> None:
    conn.execute(
        sa.insert(terminals).values(
            id=terminal_id, session_id=session_id, process_group=pgid, started_at=utc_now()
        )
    )


def forget(conn: sa.Connection, terminal_ids: list[str]) -> None:
    """Idempotent: forgetting a terminal twice is fine."""
    if terminal_ids:
        conn.execute(sa.delete(terminals).where(terminals.c.id.in_(terminal_ids)))


@dataclass(frozen=True, slots=True)
class Recorded:
    """A terminal whose group may have outlived the daemon that started it."""

    id: str
    session_id: str
    process_group: int
    workspace: Path


def recorded(conn: sa.Connection) -> list[Recorded]:
    rows = conn.execute(
        sa.select(
            terminals.c.id,
            terminals.c.session_id,
            terminals.c.process_group,
            sessions.c.workspace_path,
        ).join(sessions, sessions.c.id == terminals.c.session_id)
    )
    return [Recorded(row[0], row[1], row[2], Path(row[3])) for row in rows]


def forget_after_crash(conn: sa.Connection, found: list[Recorded]) -> None:
    """Forget the terminals of a daemon that died, journaling that each has ended."""
    for terminal in found:
        journal.append(
            conn,
            terminal.session_id,
            events.TerminalExited(
                terminal=terminal.id, exit_code=None, signal=None, after_crash=True
            ),
        )
    forget(conn, [t.id for t in found])


__all__ = [
    "METHODS",
    "OutputBuffer",
    "Recorded",
    "Terminal",
    "Terminals",
    "WorkingDirectory",
    "forget",
    "forget_after_crash",
    "record",
    "recorded",
]
