"""Client delegation: an attached client (the ``mimirctl acp`` bridge for an
editor, or any plugin) serves a session's agent's file and terminal requests.

A client declares itself the *provider* of ``fs`` (read and/or write) and/or
``terminal`` for a session on its connection (``session.attach_client``); at most
one connection holds a session at a time (a second process's attach is refused, so
that one editor window cannot take another's session unnoticed; the same process
attaching on a new connection replaces its old one, which it may have closed
before mimird saw it close). While it is attached, the
agent's requests it provides are first checked by Mimir as when Mimir serves them
(:mod:`mimird.agents.client_methods`: the path confined to the workspace, sizes
bounded), then sent to it as a ``client_request`` notification; its answer
(``client_request.respond``) is checked here (:func:`check_answer`: it comes from
outside) and given to the agent.

What happens when the client does not answer:

- it detaches, its connection closes, or it does not answer within
  ``client_request_timeout_s`` (it is then detached: a client that does not answer
  is taken for gone), or its answer is malformed: a file request is served by Mimir
  itself (:class:`ClientFailed`, which the caller catches), a terminal request is
  answered with an error (a terminal the client ran cannot be reached any more);
- ``terminal/wait_for_exit`` has no time bound (a command may run for long), only
  the detach or the connection's end ends it.

Terminal ids the client makes are never shown to the agent: it gets ids of
Mimir's (``editor-...``), mapped to the client's, so that a client's id cannot
collide with, or pose as, a terminal Mimir runs.

The attachment is journaled on the session (``client_attached``,
``client_detached``), and each request it served carries ``served_by: "client"``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import structlog
import trio

from mimird import journal
from mimird.agents.acp import INTERNAL_ERROR, AcpError
from mimird.errors import InvalidParams, InvalidState, NotFound
from mimird.ids import IdGenerator
from mimird.wire import events

log = structlog.get_logger("mimird.agents.delegation")

#: The notification a forwarded request arrives as, on the attached connection.
NOTIFICATION: Final = "client_request"
#: Terminal ids Mimir gives the agent for terminals a client runs start with this.
TERMINAL_PREFIX: Final = "editor-"
#: The longest error message from a client passed on to the agent (characters).
MAX_ERROR_MESSAGE: Final = 4096
#: The longest terminal id a client may give, and signal name.
MAX_CLIENT_ID: Final = 256
#: JSON-RPC error codes a client's error may carry (ACP's and JSON-RPC's range,
#: and the server-defined one); any other is refused.
_ERROR_CODES: Final = range(-32768, -31999)
RESOURCE_NOT_FOUND: Final = -32002

Send = Callable[[list[bytes]], Awaitable[None]]


class ClientFailed(Exception):
    """The client did not serve the request (detached, timed out, malformed answer)."""


@dataclass(frozen=True, slots=True)
class Provides:
    read: bool = False
    write: bool = False
    terminal: bool = False

    def offers(self, method: str) -> bool:
        if method == "fs/read_text_file":
            return self.read
        if method == "fs/write_text_file":
            return self.write
        return method.startswith("terminal/") and self.terminal


@dataclass(eq=False)
class _Pending:
    method: str
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    #: The client's error, ``(code, message)``.
    error: tuple[int, str] | None = None
    #: Why the client did not serve it, when it did not.
    failed: str | None = None


@dataclass(eq=False)
class Attachment:
    """One connection's offer to serve one session's agent."""

    session_id: str
    conn_id: int
    pid: int
    provides: Provides
    send: Send
    #: Sends are started here (the connection's nursery): a request that gives up
    #: waiting never cancels a write half-way through the connection's line.
    nursery: trio.Nursery
    released: bool = False


class Delegates:
    """Which connection serves which session's agent, and the requests in flight."""

    def __init__(
        self,
        journal_: journal.Journal,
        ids: IdGenerator,
        nursery: trio.Nursery,
        *,
        timeout_s: float,
        max_read_bytes: int,
        max_output_bytes: int,
    ) -> None:
        self._journal = journal_
        self._ids = ids
        #: Where detaches are journaled (the agent manager's: it outlives connections).
        self._nursery = nursery
        self.timeout_s = timeout_s
        self.max_read_bytes = max_read_bytes
        self.max_output_bytes = max_output_bytes
        self._attached: dict[str, Attachment] = {}
        self._requests = itertools.count(1)
        #: Every request in flight, by id, whatever its connection.
        self._pending: dict[int, tuple[Attachment, _Pending]] = {}
        #: Terminals clients run: session id -> agent's id -> (attachment, client's id).
        self._terminals: dict[str, dict[str, tuple[Attachment, str]]] = {}

    def provider(self, session_id: str, method: str) -> Attachment | None:
        """The attachment serving ``method`` for the session's agent, if any."""
        attachment = self._attached.get(session_id)
        if attachment is None or not attachment.provides.offers(method):
            return None
        return attachment

    # ---- attach and detach ----------------------------------------------------------

    async def attach(
        self,
        session_id: str,
        conn_id: int,
        pid: int,
        provides: Provides,
        send: Send,
        nursery: trio.Nursery,
    ) -> Attachment:
        """Make the connection the session's provider; an attach by the same connection
        replaces its offer, one by another connection of the same process (``pid``)
        replaces that connection. Raises :class:`InvalidState` if another process's
        connection holds it.

        Cancellation: attached or not; the event is journaled or not."""
        held = self._attached.get(session_id)
        if held is not None and held.conn_id != conn_id and held.pid == pid:
            # The same process on a new connection (a bridge following the session
            # again): its old connection may not be seen closed yet.
            self.detach(held, "replaced by another connection of the same client")
            held = None
        if held is not None and held.conn_id != conn_id:
            raise InvalidState(
                f"session {session_id} is attached to another client (pid {held.pid}); it "
                "serves the agent's file and terminal requests until it detaches or closes "
                "its connection",
                field="session",
                id=session_id,
                detail={"pid": held.pid},
            )
        if held is not None:
            held.provides = provides  # the same connection again: its offer changes
            attachment = held
        else:
            attachment = Attachment(session_id, conn_id, pid, provides, send, nursery)
        self._attached[session_id] = attachment
        await self._journal.submit(
            session_id,
            events.ClientAttached(
                pid=pid, fs_read=provides.read, fs_write=provides.write, terminal=provides.terminal
            ),
        )
        return attachment

    def detach(self, attachment: Attachment, reason: str) -> bool:
        """Release ``attachment`` (if it still holds its session): its requests in
        flight fail at once (their agents' requests fall back, or error), its
        terminals become unreachable. False if it was released already.

        No await: nothing a cancel can cut in two. The event is journaled by a
        task of the agent manager's nursery."""
        if attachment.released:
            return False
        attachment.released = True
        if self._attached.get(attachment.session_id) is attachment:
            del self._attached[attachment.session_id]
        for request_id, (owner, pending) in list(self._pending.items()):
            if owner is attachment:
                del self._pending[request_id]
                pending.failed = f"the client {reason}"
                pending.done.set()
        held = self._terminals.get(attachment.session_id, {})
        for agent_id, (owner, _) in list(held.items()):
            if owner is attachment:
                del held[agent_id]
        log.info(
            "client_detached", session_id=attachment.session_id, pid=attachment.pid, reason=reason
        )
        # RuntimeError: the agent manager has closed (mimird is stopping).
        with contextlib.suppress(RuntimeError):
            self._nursery.start_soon(self._journal_detach, attachment, reason)
        return True

    async def _journal_detach(self, attachment: Attachment, reason: str) -> None:
        with trio.CancelScope(shield=True):
            await self._journal.submit(
                attachment.session_id, events.ClientDetached(pid=attachment.pid, reason=reason)
            )

    # ---- requests -------------------------------------------------------------------

    async def forward(
        self, attachment: Attachment, method: str, params: dict[str, Any], *, bounded: bool = True
    ) -> Any:
        """Send the (checked) request to the client and wait for its answer: its
        result, or :class:`AcpError` with its error. :class:`ClientFailed` if it
        does not serve it (detached, disconnected, malformed answer, or no answer
        within the timeout when ``bounded``: it is then detached).

        Cancellation: (the agent withdrew its request, or stopped) the request is
        forgotten; a late answer is refused as unknown."""
        if attachment.released:
            raise ClientFailed("the client detached")
        request_id = next(self._requests)
        pending = _Pending(method)
        self._pending[request_id] = (attachment, pending)
        message = msgspec.json.encode(
            {
                "jsonrpc": "2.0",
                "method": NOTIFICATION,
                "params": {
                    "id": request_id,
                    "session_id": attachment.session_id,
                    "method": method,
                    "params": params,
                },
            }
        )
        try:
            attachment.nursery.start_soon(self._send, attachment, message)
        except RuntimeError:  # the connection's nursery is closing
            self._pending.pop(request_id, None)
            raise ClientFailed("the client's connection closed") from None
        try:
            with trio.move_on_after(self.timeout_s if bounded else float("inf")):
                await pending.done.wait()
            if not pending.done.is_set():
                self.detach(attachment, f"did not answer within {self.timeout_s:g} s")
                raise ClientFailed(
                    f"the client did not answer within {self.timeout_s:g} s "
                    "([supervision] client_request_timeout_s); it was detached"
                )
        finally:
            self._pending.pop(request_id, None)
        if pending.failed is not None:
            raise ClientFailed(pending.failed)
        if pending.error is not None:
            raise AcpError(*pending.error)
        return pending.result

    async def _send(self, attachment: Attachment, message: bytes) -> None:
        try:
            await attachment.send([message])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.detach(attachment, "closed its connection")

    def respond(self, conn_id: int, request_id: int, result: Any, error: Any) -> str:
        """The client's answer to request ``request_id``; returns its method.

        Raises :class:`NotFound` for a request this connection was not sent or
        that is no longer waiting, :class:`InvalidParams` for an answer that is not
        what the method answers (the agent's request then falls back: the client
        is not asked twice)."""
        entry = self._pending.get(request_id)
        if entry is None or entry[0].conn_id != conn_id:
            raise NotFound(
                f"no client request {request_id} is waiting for this connection's answer "
                "(it was answered, given up after the timeout, withdrawn by the agent, or "
                "sent to another connection)",
                field="id",
                id=str(request_id),
            )
        pending = entry[1]
        del self._pending[request_id]
        try:
            if error is not None:
                pending.error = check_error(error)
            else:
                pending.result = check_answer(
                    pending.method, result, self.max_read_bytes, self.max_output_bytes
                )
        except InvalidParams as exc:
            pending.failed = f"its answer was refused: {exc.message}"
            raise
        finally:
            pending.done.set()
        return pending.method

    # ---- terminals the client runs --------------------------------------------------

    def check_room(self, session_id: str, limit: int) -> None:
        """:class:`AcpError` if the session's agent holds ``limit`` client terminals."""
        held = self._terminals.get(session_id, {})
        if len(held) >= limit:
            raise AcpError(
                INTERNAL_ERROR,
                f"this session already holds {len(held)} terminals, the most Mimir allows "
                "([supervision] max_terminals); release finished ones with terminal/release",
            )

    def terminal_created(self, attachment: Attachment, client_id: str, limit: int) -> str:
        """The id the agent gets for the client's terminal ``client_id`` (made while
        :meth:`check_room` said there was room: a race may exceed ``limit`` by the
        requests in flight, which are bounded by ``max_agent_requests``)."""
        held = self._terminals.setdefault(attachment.session_id, {})
        agent_id = TERMINAL_PREFIX + self._ids.new()
        held[agent_id] = (attachment, client_id)
        return agent_id

    def terminal(self, session_id: str, agent_id: str) -> tuple[Attachment, str] | None:
        """The attachment and client's id of one of the client's terminals."""
        return self._terminals.get(session_id, {}).get(agent_id)

    def terminal_released(self, session_id: str, agent_id: str) -> None:
        self._terminals.get(session_id, {}).pop(agent_id, None)


# ---- the client's answers, checked ----------------------------------------------------


def check_error(error: Any) -> tuple[int, str]:
    if not isinstance(error, dict):
        raise InvalidParams("error must be an object {code, message}", field="error")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, int) or isinstance(code, bool) or code not in _ERROR_CODES:
        raise InvalidParams(
            "error.code must be a JSON-RPC error code (an integer from -32768 to -32000)",
            field="error",
        )
    if not isinstance(message, str):
        raise InvalidParams("error.message must be a string", field="error")
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[:MAX_ERROR_MESSAGE] + "…"
    return code, message


def _object(result: Any, method: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise InvalidParams(f"the result of {method} must be an object", field="result")
    return result


def _short_string(value: Any, what: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or len(value) > MAX_CLIENT_ID:
        raise InvalidParams(
            f"{what} must be a string of 1 to {MAX_CLIENT_ID} characters", field="result"
        )
    return value


def _exit_status(status: Any, what: str) -> dict[str, Any]:
    if not isinstance(status, dict):
        raise InvalidParams(f"{what} must be an object {{exitCode, signal}}", field="result")
    code, signal = status.get("exitCode"), status.get("signal")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        raise InvalidParams(f"{what}.exitCode must be an integer or null", field="result")
    if code is not None and not -(1 << 31) <= code < (1 << 32):
        raise InvalidParams(f"{what}.exitCode is out of range", field="result")
    if signal is not None:
        _short_string(signal, f"{what}.signal")
    return {"exitCode": code, "signal": signal}


def check_answer(method: str, result: Any, max_read_bytes: int, max_output_bytes: int) -> Any:
    """The client's ``result`` for ``method``, reduced to what ACP says it holds;
    :class:`InvalidParams` (``field`` ``result``) when it is not that."""
    if method == "fs/read_text_file":
        content = _object(result, method).get("content")
        if not isinstance(content, str):
            raise InvalidParams("the result of fs/read_text_file needs content", field="result")
        if len(content) > max_read_bytes or len(content.encode("utf-8", "replace")) > (
            max_read_bytes
        ):
            raise InvalidParams(
                f"content is larger than {max_read_bytes} bytes ([supervision] file_max_bytes)",
                field="result",
            )
        return {"content": content}
    if method in ("fs/write_text_file", "terminal/kill", "terminal/release"):
        if result is not None and result != {} and not isinstance(result, dict):
            raise InvalidParams(f"the result of {method} must be null or {{}}", field="result")
        return None if method == "fs/write_text_file" else {}
    if method == "terminal/create":
        client_id = _object(result, method).get("terminalId")
        return {"terminalId": _short_string(client_id, "terminalId")}
    if method == "terminal/output":
        answer = _object(result, method)
        output, truncated = answer.get("output"), answer.get("truncated")
        if not isinstance(output, str) or not isinstance(truncated, bool):
            raise InvalidParams(
                "the result of terminal/output needs output (string) and truncated (boolean)",
                field="result",
            )
        if len(output.encode("utf-8", "replace")) > max_output_bytes:
            raise InvalidParams(
                f"output is larger than {max_output_bytes} bytes ([supervision] "
                "terminal_output_bytes)",
                field="result",
            )
        checked: dict[str, Any] = {"output": output, "truncated": truncated}
        if answer.get("exitStatus") is not None:
            checked["exitStatus"] = _exit_status(answer["exitStatus"], "exitStatus")
        return checked
    if method == "terminal/wait_for_exit":
        return _exit_status(result, "the result of terminal/wait_for_exit")
    raise InvalidParams(f"{method} is not a method clients serve", field="result")
