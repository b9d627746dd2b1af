"""The ACP client methods Mimir serves to an agent: its requests, by an explicit
method table (never by attribute name: supervisor's CVE-2017-11610 came from
dispatching on names a peer chose).

- ``session/request_permission``: parked until a client answers
  (:mod:`mimird.agents.permissions`);
- ``fs/read_text_file``, ``fs/write_text_file``: inside the workspace only
  (:mod:`mimird.workspaces.files`, from the directory the host pinned when the
  agent started), each journaled, every refusal too (``file_refused``);
- ``terminal/*``: commands run in the workspace (:mod:`mimird.agents.terminals`);
  a ``cwd`` is resolved from the pinned directory as file paths are, and a
  refusal journaled (``terminal_refused``).

File work runs in worker threads of this agent's own limiter (:data:`FILE_THREADS`),
never in trio's default one, which the store's writer uses: an agent can neither
take the daemon's threads nor another agent's. Each operation is bounded in time
(``[supervision] file_timeout_s``) and size (``file_max_bytes``); a thread still
inside a system call when its time is up, or when the agent stops, is abandoned
(nothing waits for it) and gives up at its next check.

Domain errors raised below become ACP errors in one place, :func:`map_exceptions`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import PurePosixPath
from typing import Any, Final, Generic, Protocol, TypeVar

import trio

from mimird.agents import terminals
from mimird.agents.acp import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    AcpError,
    MethodNotFound,
    map_exceptions,
)
from mimird.agents.recorder import Recorder
from mimird.config import SupervisionSection
from mimird.errors import FileAccessFailed, FileMissing, MimirError
from mimird.wire import events
from mimird.workspaces import files

Handler = Callable[[Any], Awaitable[Any]]
T = TypeVar("T")

#: Worker threads one agent's file work may hold at once, abandoned ones included.
FILE_THREADS: Final = 4


class AgentLife(Protocol):
    """What the client methods need to know of the agent's current life."""

    @property
    def acp_session_id(self) -> str | None: ...

    @property
    def terminals(self) -> terminals.Terminals | None: ...

    @property
    def pinned(self) -> files.Workspace | None: ...

    async def ask_permission(self, params: Any) -> Any: ...


class _Abandoned(Exception):
    """The task that started the thread is gone: the thread has nothing to do."""


class _Handoff(Generic[T]):
    """What a worker thread and the task that started it share: the borrowed
    workspace (whoever comes last closes it) and, for a result that holds a
    descriptor, who closes that when the task has stopped waiting."""

    def __init__(self, workspace: files.Workspace, discard: Callable[[T], None] | None) -> None:
        self._lock = threading.Lock()
        self._workspace: files.Workspace | None = workspace
        self._discard = discard
        self._abandoned = False

    def take(self) -> files.Workspace:
        """In the thread: the workspace it now owns."""
        with self._lock:
            workspace, self._workspace = self._workspace, None
        if workspace is None:
            raise _Abandoned
        return workspace

    def deliver(self, result: T) -> T:
        """In the thread: hand ``result`` over, or discard it if nobody waits."""
        with self._lock:
            if self._abandoned and self._discard is not None:
                self._discard(result)
            return result

    def abandon(self) -> None:
        """In the task, once done waiting (whatever the outcome)."""
        with self._lock:
            self._abandoned = True
            workspace, self._workspace = self._workspace, None
        if workspace is not None:
            workspace.close()


class ClientMethods:
    """Answers one agent's requests, inside its pinned workspace."""

    def __init__(
        self,
        recorder: Recorder,
        life: AgentLife,
        options: SupervisionSection,
        *,
        missing_file: str = "error",
    ) -> None:
        self._recorder = recorder
        #: How a read of a missing file is answered: "error" (-32002) or "empty".
        self._missing_file = missing_file
        self._life = life
        self._timeout = options.file_timeout_s
        self._max_bytes = options.file_max_bytes
        self._limiter = trio.CapacityLimiter(FILE_THREADS)
        table: dict[str, Handler] = {
            "session/request_permission": life.ask_permission,
            "fs/read_text_file": self._read_file,
            "fs/write_text_file": self._write_file,
        }
        for method in terminals.METHODS:
            table[method] = _bind(self._terminal, method)
        self.methods: Final[Mapping[str, Handler]] = table

    async def on_request(self, method: str, params: Any) -> Any:
        """Answer one request of the agent (the ACP connection's ``on_request``).

        Cancellation: (``$/cancel_request`` from the agent, or the connection
        ending) what the method had done stays done and journaled; a parked
        permission request is withdrawn (see :func:`permissions.park`); file work
        still in its thread is abandoned (:meth:`_sandboxed`)."""
        handler = self.methods.get(method)
        if handler is None:
            raise MethodNotFound(method)
        with map_exceptions():
            return await handler(params)

    async def sandboxed(self, fn: Callable[[files.Workspace, files.Deadline], T], doing: str) -> T:
        """``fn`` on the pinned workspace, in a thread, bounded as file requests are
        (the tool policy resolves the paths of a permission request with it).

        Cancellation: as :meth:`_sandboxed` (the thread is abandoned at once)."""
        return await self._sandboxed(fn, doing)

    async def _sandboxed(
        self,
        fn: Callable[[files.Workspace, files.Deadline], T],
        doing: str,
        *,
        discard: Callable[[T], None] | None = None,
    ) -> T:
        """``fn(workspace, deadline)`` in a thread of this agent's limiter, on a
        borrowed copy of the pinned workspace, within ``file_timeout_s`` (waiting
        for a thread included). ``discard`` closes a result that arrives after
        nobody waits for it any more.

        Cancellation, and the time bound: the thread is abandoned at once; it gives
        up at its next deadline check, and closes what it holds."""
        pinned = self._life.pinned
        if pinned is None:
            raise AcpError(INTERNAL_ERROR, "the session's agent is stopping; no file access")
        try:
            borrowed = pinned.borrow()
        except OSError as exc:  # EMFILE: the daemon is out of descriptors
            raise FileAccessFailed(
                f"{doing}: cannot open the workspace ({exc.strerror})", field="path"
            ) from exc
        deadline = files.Deadline.after(self._timeout)
        handoff = _Handoff(borrowed, discard)

        def work() -> T:
            with handoff.take() as workspace:
                return handoff.deliver(fn(workspace, deadline))

        try:
            with trio.move_on_after(self._timeout):
                return await trio.to_thread.run_sync(
                    work, limiter=self._limiter, abandon_on_cancel=True
                )
            raise FileAccessFailed(
                f"{doing} took longer than {self._timeout:g} s ([supervision] "
                "file_timeout_s); given up",
                field="path",
            )
        finally:
            handoff.abandon()

    async def _journaled(
        self, op: str, params: dict[str, Any], fn: Callable[[files.Workspace, files.Deadline], T]
    ) -> T:
        """:meth:`_sandboxed`, with every refusal journaled (``file_refused``); a
        missing file is not a refusal."""
        path = params.get("path")
        try:
            return await self._sandboxed(fn, f"{'reading' if op == 'read' else 'writing'} {path}")
        except MimirError as exc:
            if not isinstance(exc, FileMissing):
                await self._recorder.event(events.FileRefused(op=op, path=path, reason=exc.message))
            raise

    async def _read_file(self, params: Any) -> Any:
        if not isinstance(params, dict):
            raise AcpError(INVALID_PARAMS, "params must be an object")
        path, line, limit = params.get("path"), params.get("line"), params.get("limit")
        max_bytes = self._max_bytes
        empty_if_missing = self._missing_file == "empty"

        def read(workspace: files.Workspace, deadline: files.Deadline) -> tuple[str, str | None]:
            relative = workspace.confine(path)
            try:
                text = workspace.read_text(
                    relative,
                    line if isinstance(line, int) else None,
                    limit if isinstance(limit, int) else None,
                    shown=str(path),
                    max_bytes=max_bytes,
                    deadline=deadline,
                )
            except FileMissing:
                # A kind that cannot take the error (gemini-cli) reads a missing file
                # as empty: only inside the workspace (confined above), never past it.
                if empty_if_missing:
                    return str(relative), None
                raise
            return str(relative), text

        relative, text = await self._journaled("read", params, read)
        if text is None:
            await self._recorder.event(events.FileRead(path=relative, chars=0, missing=True))
            return {"content": ""}
        await self._recorder.event(events.FileRead(path=relative, chars=len(text)))
        return {"content": text}

    async def _write_file(self, params: Any) -> Any:
        if not isinstance(params, dict) or not isinstance(params.get("content"), str):
            raise AcpError(INVALID_PARAMS, "fs/write_text_file needs path and content")
        path, content = params.get("path"), params["content"]
        max_bytes = self._max_bytes

        def write(workspace: files.Workspace, deadline: files.Deadline) -> tuple[str, int]:
            relative = workspace.confine(path)
            size = workspace.write_text(
                relative, content, shown=str(path), max_bytes=max_bytes, deadline=deadline
            )
            return str(relative), size

        relative, size = await self._journaled("write", params, write)
        await self._recorder.event(events.FileWritten(path=relative, bytes=size))
        return None

    async def _terminal(self, method: str, params: Any) -> Any:
        if not isinstance(params, dict):
            raise AcpError(INVALID_PARAMS, "params must be an object")
        session = params.get("sessionId")
        acp_session_id = self._life.acp_session_id
        if session is not None and session != acp_session_id:
            raise AcpError(
                INVALID_PARAMS,
                f"sessionId {session!r} is not this agent's session {acp_session_id!r}",
            )
        held = self._life.terminals
        if held is None:
            raise AcpError(INTERNAL_ERROR, "the session's agent is stopping; no terminals")
        if method != "terminal/create":
            return await held.handle(method, params, None)
        cwd = await self._working_directory(params)
        try:
            return await held.handle(method, params, cwd)
        finally:
            cwd.close()

    async def _working_directory(self, params: dict[str, Any]) -> terminals.WorkingDirectory:
        """The ``cwd`` of a ``terminal/create`` (the workspace if none), opened from
        the pinned workspace; a refusal is journaled (``terminal_refused``)."""
        given = params.get("cwd")

        def open_cwd(
            workspace: files.Workspace, deadline: files.Deadline
        ) -> tuple[int, PurePosixPath]:
            return workspace.open_directory(
                "." if given is None else given, "cwd", "terminals run only inside it"
            )

        try:
            fd, relative = await self._sandboxed(
                open_cwd, f"opening cwd {given}", discard=lambda opened: os.close(opened[0])
            )
        except MimirError as exc:
            await self._recorder.event(
                events.TerminalRefused(
                    command=self._recorder.scrub(str(params.get("command"))),
                    cwd=given,
                    reason=exc.message,
                )
            )
            raise
        return terminals.WorkingDirectory(fd, str(relative))


def _bind(handler: Callable[[str, Any], Awaitable[Any]], method: str) -> Handler:
    async def bound(params: Any) -> Any:
        return await handler(method, params)

    return bound
