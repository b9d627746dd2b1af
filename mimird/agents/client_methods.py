"""The ACP client methods Mimir serves to an agent: its requests, by an explicit
method table (never by attribute name: supervisor's CVE-2017-11610 came from
dispatching on names a peer chose).

- ``session/request_permission``: parked until a client answers
  (:mod:`mimird.agents.permissions`);
- ``fs/read_text_file``, ``fs/write_text_file``: inside the workspace only
  (:mod:`mimird.workspaces.files`), each journaled, refusals too;
- ``terminal/*``: commands run in the workspace (:mod:`mimird.agents.terminals`).

Domain errors raised below become ACP errors in one place, :func:`map_exceptions`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

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
from mimird.errors import InvalidParams, OutsideWorkspace
from mimird.wire import events
from mimird.workspaces import files

Handler = Callable[[Any], Awaitable[Any]]


class AgentLife(Protocol):
    """What the client methods need to know of the agent's current life."""

    @property
    def acp_session_id(self) -> str | None: ...

    @property
    def terminals(self) -> terminals.Terminals | None: ...

    async def ask_permission(self, params: Any) -> Any: ...


class ClientMethods:
    """Answers one agent's requests, inside its workspace ``root``."""

    def __init__(self, root: Path, recorder: Recorder, life: AgentLife) -> None:
        self._root = root
        self._recorder = recorder
        self._life = life
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
        permission request is withdrawn (see :func:`permissions.park`)."""
        handler = self.methods.get(method)
        if handler is None:
            raise MethodNotFound(method)
        with map_exceptions():
            return await handler(params)

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
        cwd = self._root
        if method == "terminal/create" and params.get("cwd") is not None:
            try:
                cwd = await trio.to_thread.run_sync(
                    files.directory_inside,
                    self._root,
                    params.get("cwd"),
                    "cwd",
                    "terminals run only inside it",
                )
            except InvalidParams as exc:
                await self._recorder.event(
                    events.TerminalRefused(
                        command=self._recorder.scrub(str(params.get("command"))),
                        cwd=params.get("cwd"),
                        reason=exc.message,
                    )
                )
                raise
        return await held.handle(method, params, cwd)

    async def _confined(self, op: str, params: dict[str, Any]) -> Path:
        """The request's path inside the workspace; a refusal is journaled."""
        try:
            return await trio.to_thread.run_sync(files.confine, self._root, params.get("path"))
        except OutsideWorkspace as exc:
            await self._recorder.event(
                events.FileRefused(op=op, path=params.get("path"), reason=exc.message)
            )
            raise

    async def _read_file(self, params: Any) -> Any:
        if not isinstance(params, dict):
            raise AcpError(INVALID_PARAMS, "params must be an object")
        path = await self._confined("read", params)
        line, limit = params.get("line"), params.get("limit")
        text = await trio.to_thread.run_sync(
            files.read_text,
            self._root,
            path,
            line if isinstance(line, int) else None,
            limit if isinstance(limit, int) else None,
            str(params.get("path")),
        )
        await self._recorder.event(
            events.FileRead(path=str(path.relative_to(self._root)), chars=len(text))
        )
        return {"content": text}

    async def _write_file(self, params: Any) -> Any:
        if not isinstance(params, dict) or not isinstance(params.get("content"), str):
            raise AcpError(INVALID_PARAMS, "fs/write_text_file needs path and content")
        path = await self._confined("write", params)
        size = await trio.to_thread.run_sync(
            files.write_text, self._root, path, params["content"], str(params.get("path"))
        )
        await self._recorder.event(
            events.FileWritten(path=str(path.relative_to(self._root)), bytes=size)
        )
        return None


def _bind(handler: Callable[[str, Any], Awaitable[Any]], method: str) -> Handler:
    async def bound(params: Any) -> Any:
        return await handler(method, params)

    return bound
