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

When a client is attached to the session as the provider of ``fs`` or
``terminal`` (:mod:`mimird.agents.delegation`), the same checks are made here
first, and the checked request is then served by that client; a file request it
does not serve is served here after all, a terminal request is answered with an
error.

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
from mimird.agents.delegation import (
    RESOURCE_NOT_FOUND,
    TERMINAL_PREFIX,
    Attachment,
    ClientFailed,
    Delegates,
)
from mimird.agents.recorder import Recorder
from mimird.config import SupervisionSection
from mimird.errors import FileAccessFailed, FileMissing, FileRefused, MimirError
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
        delegates: Delegates | None = None,
        *,
        missing_file: str = "error",
    ) -> None:
        self._recorder = recorder
        #: How a read of a missing file is answered: "error" (-32002) or "empty".
        self._missing_file = missing_file
        self._life = life
        self._delegates = delegates
        self._max_terminals = options.max_terminals
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
        provider = self._provider("fs/read_text_file")
        if provider is not None:
            served, answer = await self._file_by_client("read", provider, params)
            if served:
                return answer

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
        provider = self._provider("fs/write_text_file")
        if provider is not None:
            served, answer = await self._file_by_client("write", provider, params)
            if served:
                return answer

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
        terminal_id = params.get("terminalId")
        if isinstance(terminal_id, str) and terminal_id.startswith(TERMINAL_PREFIX):
            return await self._client_terminal(method, params, terminal_id)
        provider = self._provider(method) if method == "terminal/create" else None
        if provider is not None:
            return await self._client_create(provider, params)
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

    # ---- served by an attached client (mimird.agents.delegation) ------------------------

    def _provider(self, method: str) -> Attachment | None:
        if self._delegates is None:
            return None
        return self._delegates.provider(self._recorder.session_id, method)

    async def _file_by_client(
        self, op: str, attachment: Attachment, params: dict[str, Any]
    ) -> tuple[bool, Any]:
        """The file request checked as if Mimir served it (the path confined, the
        content's size bounded, a refusal journaled), then served by the client.
        ``(False, None)`` when the client did not serve it: Mimir serves it then.

        Cancellation: the client's answer, if it comes, is refused as unknown."""
        assert self._delegates is not None
        path, content = params.get("path"), params.get("content")
        max_bytes = self._max_bytes

        def check(workspace: files.Workspace, deadline: files.Deadline) -> tuple[str, str, int]:
            relative = workspace.confine(path)
            size = len(content.encode("utf-8", "surrogatepass")) if isinstance(content, str) else 0
            if size > max_bytes:
                raise FileRefused(
                    f"{path}: the content is larger than {max_bytes} bytes ([supervision] "
                    "file_max_bytes)",
                    field="content",
                )
            return str(relative), str(workspace.names[0] / relative), size

        relative, absolute, size = await self._journaled(op, params, check)
        method = "fs/read_text_file" if op == "read" else "fs/write_text_file"
        forwarded: dict[str, Any] = {"sessionId": self._recorder.session_id, "path": absolute}
        if op == "write":
            forwarded["content"] = content
        for name in ("line", "limit") if op == "read" else ():
            value = params.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                forwarded[name] = value
        try:
            answer = await self._delegates.forward(attachment, method, forwarded)
        except ClientFailed as exc:
            await self._recorder.event(
                events.ClientRequestFailed(method=method, reason=str(exc), fallback="mimird")
            )
            return False, None
        except AcpError as exc:
            if exc.code == RESOURCE_NOT_FOUND and op == "read" and self._missing_file == "empty":
                # The kind's quirk holds for the editor's answer too (gemini-cli).
                await self._recorder.event(
                    events.FileRead(path=relative, chars=0, missing=True, served_by="client")
                )
                return True, {"content": ""}
            if exc.code != RESOURCE_NOT_FOUND:
                await self._recorder.event(
                    events.FileRefused(op=op, path=path, reason=exc.message, served_by="client")
                )
            raise
        if op == "read":
            chars = len(answer["content"])
            await self._recorder.event(
                events.FileRead(path=relative, chars=chars, served_by="client")
            )
        else:
            await self._recorder.event(
                events.FileWritten(path=relative, bytes=size, served_by="client")
            )
        return True, answer

    async def _client_create(self, attachment: Attachment, params: dict[str, Any]) -> Any:
        """``terminal/create`` checked as Mimir checks its own (the ``cwd`` confined,
        a refusal journaled), then run by the client; an error if it does not.

        Cancellation: a command the client started meanwhile is the client's."""
        assert self._delegates is not None
        command = params.get("command")
        if not isinstance(command, str) or not command or "\0" in command:
            raise AcpError(INVALID_PARAMS, "command must be a non-empty string")
        args = terminals.checked_args(params.get("args"))
        env = terminals.checked_env(params.get("env"))
        limit = params.get("outputByteLimit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise AcpError(INVALID_PARAMS, "outputByteLimit must be an integer")
        if limit is not None and limit < 0:
            raise AcpError(INVALID_PARAMS, "outputByteLimit must not be negative")
        cap = self._delegates.max_output_bytes
        pinned = self._life.pinned
        if pinned is None:
            raise AcpError(INTERNAL_ERROR, "the session's agent is stopping; no terminals")
        cwd = await self._working_directory(params)
        cwd.close()
        forwarded = {
            "sessionId": self._recorder.session_id,
            "command": command,
            "args": args,
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "cwd": str(pinned.names[0] / cwd.relative),
            "outputByteLimit": cap if limit is None else min(limit, cap),
        }
        self._delegates.check_room(self._recorder.session_id, self._max_terminals)
        answer = await self._by_client(attachment, "terminal/create", forwarded, None)
        terminal_id = self._delegates.terminal_created(
            attachment, answer["terminalId"], self._max_terminals
        )
        shown = [self._recorder.scrub(part) for part in (command, *args)]
        await self._recorder.event(
            events.TerminalStarted(
                terminal=terminal_id,
                command=shown[0],
                args=shown[1:],
                cwd=cwd.relative,
                pid=0,
                served_by="client",
            ),
            text=" ".join(shown),
        )
        return {"terminalId": terminal_id}

    async def _client_terminal(self, method: str, params: dict[str, Any], terminal_id: str) -> Any:
        """A ``terminal/*`` request about a terminal the client runs."""
        session_id = self._recorder.session_id
        found = (
            None if self._delegates is None else self._delegates.terminal(session_id, terminal_id)
        )
        if found is None:
            raise AcpError(
                INVALID_PARAMS,
                f"no terminal {terminal_id!r} in this session: the client that ran it "
                "detached, or it was released, or never existed",
            )
        attachment, client_id = found
        forwarded = {"sessionId": session_id, "terminalId": client_id}
        answer = await self._by_client(attachment, method, forwarded, terminal_id)
        if method == "terminal/release":
            assert self._delegates is not None
            self._delegates.terminal_released(session_id, terminal_id)
        return answer

    async def _by_client(
        self, attachment: Attachment, method: str, forwarded: dict[str, Any], terminal: str | None
    ) -> Any:
        assert self._delegates is not None
        try:
            return await self._delegates.forward(
                attachment, method, forwarded, bounded=method != "terminal/wait_for_exit"
            )
        except ClientFailed as exc:
            await self._recorder.event(
                events.ClientRequestFailed(method=method, reason=str(exc), fallback="error")
            )
            about = f"terminal {terminal}" if terminal else "the terminal"
            raise AcpError(
                INTERNAL_ERROR, f"{about} is run by the attached client, which failed: {exc}"
            ) from None


def _bind(handler: Callable[[str, Any], Awaitable[Any]], method: str) -> Handler:
    async def bound(params: Any) -> Any:
        return await handler(method, params)

    return bound
