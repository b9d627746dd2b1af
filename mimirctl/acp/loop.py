"""The editor-side loop of ``mimirctl acp``: ACP on stdin/stdout, mimird on its socket.

One thread waits (``selectors``) on stdin and on the connection of each attached
session (its events); the editor's requests are handled one at a time with calls on
a connection of their own (:mod:`mimirctl.acp.handlers`). A ``session/prompt`` is
answered later, when its turn's ``turn_ended`` comes (:mod:`mimirctl.acp.relay`).

EOF on stdin ends the bridge and nothing else: the turn was handed to mimird with
``session.submit`` and goes on; pending permission requests stay answerable from
any client. A mimird that cannot be reached is an ACP error on the request that
needed it (and on a prompt waiting for its turn's end when the connection breaks).

Hook for [editorfs]: when the editor's ``initialize`` advertised
``clientCapabilities.fs`` or ``terminal`` and :mod:`mimirctl.acp.delegate` exists,
``delegate.Delegate(bridge)`` is made; ``attached(session_id)`` is called for each
session attached, ``response(event)`` for each answer of the editor that is not a
permission's, ``takes(follower, message)`` for each message read on a session's
connection (True: it was the delegate's), and ``close()`` at the end.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import selectors
from typing import Any, Final

from mimirctl import render
from mimirctl.acp import errors
from mimirctl.acp.errors import AcpError
from mimirctl.acp.permissions import Permissions
from mimirctl.acp.relay import STOP_REASONS, Follower, acp_usage
from mimirctl.client import (
    DEFAULT_TIMEOUT_S,
    Client,
    ClientError,
    ConnectionLost,
    DaemonNotRunning,
    RpcError,
    check_protocol,
)
from mimirctl.stream import history
from mimird.wire import jsonrpc
from mimird.wire.lines import END, NEED_DATA, LineSplitter, TooLong

#: The longest line read from the editor (a prompt with images can be large).
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
READ_SIZE: Final = 1 << 16
#: How long a call that starts an agent or makes a workspace may take.
LONG_CALL_TIMEOUT_S: Final = 600.0


class Bridge:
    def __init__(
        self, socket_path: str, options: Any, handlers: Any, stdin: int = 0, stdout: int = 1
    ) -> None:
        """``handlers``: :mod:`mimirctl.acp.handlers` (given, so that it may import this)."""
        self.socket_path = socket_path
        self.handlers = handlers
        self.options = options
        self._in = stdin
        self._out = stdout
        self.peer = jsonrpc.JsonRpcPeer(cancel_method="$/cancel_request")
        self._lines = LineSplitter(MAX_LINE_BYTES)
        self._control: Client | None = None
        self.followers: dict[str, Follower] = {}
        self.permissions = Permissions(self.peer)
        self.initialized = False
        self.client_capabilities: dict[str, Any] = {}
        self.delegate: Any = None
        #: Lines to send once the request being handled is answered.
        self.after_answer: list[bytes] = []
        #: Sessions whose connection broke (mimird went away): the last seq handed
        #: on, to follow them again from there at their next request.
        self.lost: dict[str, int] = {}
        # poll, not epoll (DefaultSelector): epoll refuses a regular file or /dev/null
        # (EPERM), and stdin may be one (mimirctl acp < requests.jsonl); poll finds it
        # readable. A bridge waits on a few descriptors, where the two cost the same.
        self._selector: selectors.BaseSelector = selectors.PollSelector()

    # -- the editor --------------------------------------------------------------------

    def send(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            written = os.write(self._out, view)
            view = view[written:]

    def notify(self, method: str, params: Any) -> None:
        self.send(self.peer.notify(method, params))

    def update(self, session_id: str, update: dict[str, Any]) -> None:
        self.notify("session/update", {"sessionId": session_id, "update": update})

    def say(self, text: str) -> None:
        """A line on stderr (the editor's log of this agent), made visible."""
        render.say(f"mimirctl acp: {text}", err=True)

    # -- mimird --------------------------------------------------------------------------

    def connect(self) -> Client:
        """A new connection to mimird, its protocol checked; raises :class:`AcpError`."""
        try:
            client = Client(self.socket_path)
        except DaemonNotRunning as exc:
            raise AcpError(errors.INTERNAL_ERROR, str(exc)) from None
        except ClientError as exc:
            raise AcpError(errors.INTERNAL_ERROR, f"cannot reach mimird: {exc}") from None
        try:
            skew = check_protocol(client)
        except ClientError as exc:
            client.close()
            raise AcpError(errors.INTERNAL_ERROR, f"mimird did not answer: {exc}") from None
        if skew is not None:
            client.close()
            raise AcpError(errors.INTERNAL_ERROR, skew)
        return client

    def call(self, method: str, params: dict[str, Any], *, long: bool = False) -> Any:
        """A call to mimird; its errors as :class:`AcpError`. A broken connection is
        made again at the next call."""
        if self._control is not None and _finished(self._control):
            self._control.close()  # mimird closed it (it restarted?): a new one
            self._control = None
        if self._control is None:
            self._control = self.connect()
        client = self._control
        client.set_timeout(LONG_CALL_TIMEOUT_S if long else DEFAULT_TIMEOUT_S)
        try:
            return client.call(method, params)
        except RpcError as exc:
            raise errors.from_rpc(exc) from None
        except ClientError as exc:
            client.close()
            self._control = None
            raise AcpError(errors.INTERNAL_ERROR, f"mimird: {exc}") from None

    def history(self, session_id: str, last: int) -> list[dict[str, Any]]:
        """The session's events up to seq ``last`` (seqs have no gaps: the first ``last``)."""
        if self._control is None:
            self._control = self.connect()
        try:
            return list(history(self._control, session_id, 0, limit=last)) if last else []
        except RpcError as exc:
            raise errors.from_rpc(exc) from None
        except ClientError as exc:
            self._control.close()
            self._control = None
            raise AcpError(errors.INTERNAL_ERROR, f"mimird: {exc}") from None

    def follow(self, session_id: str, after_seq: int) -> Follower:
        """Follow a session's events after ``after_seq`` on a new connection."""
        old = self.followers.pop(session_id, None)
        if old is not None:
            self._drop(old)
        client = self.connect()
        try:
            sub = client.call("subscribe", {"session": session_id, "after_seq": after_seq})
        except RpcError as exc:
            client.close()
            raise errors.from_rpc(exc) from None
        except ClientError as exc:
            client.close()
            raise AcpError(errors.INTERNAL_ERROR, f"mimird: {exc}") from None
        client.set_timeout(None)
        follower = Follower(session_id, client, sub["subscription"], seen=after_seq)
        self.followers[session_id] = follower
        self.lost.pop(session_id, None)
        follower.fd = client.fileno()
        self._selector.register(follower.fd, selectors.EVENT_READ, follower)
        if self.delegate is not None:
            self.delegate.attached(session_id)
        return follower

    def _drop(self, follower: Follower) -> None:
        """Stop waiting on the follower's connection, and close it (once)."""
        if follower.fd < 0:
            return
        self._selector.unregister(follower.fd)
        follower.fd = -1
        follower.client.close()

    def pump(self, follower: Follower) -> None:
        """Handle what the session's connection has brought (it is readable)."""
        if follower.fd < 0:
            # Dropped since the wait saw it readable (the editor's line before it in
            # the same wake-up followed the session anew).
            return
        try:
            for message in follower.messages():
                if self.delegate is not None and self.delegate.takes(follower, message):
                    continue  # a client_request of the agent, or its answer's receipt
                event = follower.event_of(message)
                if event is not None:
                    self.on_event(follower, event)
                if follower.fd < 0:
                    return  # what it handled dropped it
        except ClientError as exc:
            if follower.fd < 0:
                return
            if self.followers.get(follower.session_id) is follower:
                del self.followers[follower.session_id]
            self.lost[follower.session_id] = follower.seen
            self._drop(follower)
            self.say(f"lost the events of session {follower.session_id}: {exc}")
            if follower.prompt is not None:
                self.send(
                    self.peer.answer_error(
                        follower.prompt.request_id,
                        errors.INTERNAL_ERROR,
                        f"connection to mimird lost during the turn: {exc}; the turn goes on "
                        f"in mimird ('mimirctl attach {follower.session_id}')",
                    )
                )

    def on_event(self, follower: Follower, event: dict[str, Any]) -> None:
        session_id = follower.session_id
        for update in follower.updates(event):
            self.update(session_id, update)
        kind = event.get("kind")
        if kind == "permission_requested":
            if (line := self.permissions.ask(session_id, event.get("data"))) is not None:
                self.send(line)
        elif kind == "permission_answered":
            if (line := self.permissions.answered(event.get("data"))) is not None:
                self.send(line)
        elif (ended := follower.turn_end(event)) is not None:
            pending, data = ended
            self.send(self.prompt_answer(pending.request_id, data))

    def prompt_answer(self, request_id: Any, data: dict[str, Any]) -> bytes:
        """The answer to a ``session/prompt`` from its ``turn_ended`` event's data."""
        stop = data.get("stop_reason")
        if stop in STOP_REASONS:
            result: dict[str, Any] = {"stopReason": stop}
            if (usage := acp_usage(data.get("usage"))) is not None:
                result["usage"] = usage
            return self.peer.answer(request_id, result)
        reason = data.get("error") if isinstance(data.get("error"), str) else stop
        return self.peer.answer_error(
            request_id, errors.INTERNAL_ERROR, f"the turn ended with an error: {reason}"
        )

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        self._selector.register(self._in, selectors.EVENT_READ, None)
        try:
            while True:
                for key, _ in self._selector.select():
                    if key.data is None:
                        if not self._read_editor():
                            return 0
                    else:
                        self.pump(key.data)
        except BrokenPipeError:  # the editor closed our stdout
            return 0
        finally:
            self.close()

    def close(self) -> None:
        if self.delegate is not None:
            self.delegate.close()
        for follower in self.followers.values():
            follower.client.close()
        self.followers.clear()
        if self._control is not None:
            self._control.close()
        self._selector.close()

    def _read_editor(self) -> bool:
        data = os.read(self._in, READ_SIZE)
        self._lines.feed(data)
        while (line := self._lines.next_event()) is not NEED_DATA:
            if line is END:
                return False
            if isinstance(line, TooLong):
                head = line.head
                events = self.peer.receive_too_long(head, MAX_LINE_BYTES)
            else:
                assert isinstance(line, bytes)
                head = line
                events = self.peer.receive(line)
            if _unanswerable(events) and jsonrpc.envelope(head)[0] is None:
                # Nothing to answer by id: JSON-RPC's error with id null.
                code = errors.INVALID_REQUEST if _is_json(head) else jsonrpc.PARSE_ERROR
                reason = next(e.reason for e in events if isinstance(e, jsonrpc.ProtocolError))
                self.send(self.peer.answer_error(None, code, reason))
            for event in events:
                self.on_editor(event)
        return True

    def on_editor(self, event: jsonrpc.Event) -> None:
        if isinstance(event, jsonrpc.Request):
            self.send(self.handle(event))
            while self.after_answer:
                self.send(self.after_answer.pop(0))
        elif isinstance(event, jsonrpc.Notification):
            try:
                self.handlers.notification(self, event.method, event.params)
            except AcpError as exc:
                self.say(f"{event.method}: {exc.message}")
        elif isinstance(event, jsonrpc.CancelRequested):
            self.handlers.cancel_request(self, event.id)
        elif isinstance(event, jsonrpc.Response | jsonrpc.ErrorResponse):
            self.on_answer(event)
        elif isinstance(event, jsonrpc.Outgoing):
            self.send(event.data)
        elif isinstance(event, jsonrpc.ProtocolError):
            self.say(f"skipped a message from the editor ({event.reason}): {event.preview!r}")

    def handle(self, request: jsonrpc.Request) -> bytes:
        """The answer to one of the editor's requests (empty when deferred)."""
        try:
            result = self.handlers.request(self, request)
        except AcpError as exc:
            return self.peer.answer_error(request.id, exc.code, exc.message, exc.data)
        except Exception as exc:  # a bug of ours must not end the editor's agent
            self.say(f"internal error in {request.method}: {exc!r}")
            return self.peer.answer_error(
                request.id, errors.INTERNAL_ERROR, f"internal error in mimirctl acp: {exc!r}"
            )
        if result is errors.DEFERRED:
            return b""
        return self.peer.answer(request.id, result)

    def on_answer(self, event: jsonrpc.Response | jsonrpc.ErrorResponse) -> None:
        if self.permissions.owns(event.id):
            if isinstance(event, jsonrpc.ErrorResponse):
                self.permissions.editor_failed(event.id)
                return
            self.handlers.permission_answer(self, event.id, event.result)
        elif self.delegate is not None:
            self.delegate.response(event)

    def start_delegate(self) -> None:
        """The [editorfs] hook: the editor serves files or terminals (see the module's doc)."""
        fs = self.client_capabilities.get("fs")
        wants = (isinstance(fs, dict) and any(fs.values())) or bool(
            self.client_capabilities.get("terminal")
        )
        if not wants or self.delegate is not None:
            return
        try:
            module = importlib.import_module("mimirctl.acp.delegate")
        except ImportError:
            return
        self.delegate = module.Delegate(self)


def _finished(client: Client) -> bool:
    """Whether mimird closed (or wrote on) the call connection between our calls:
    nothing comes on it unasked but the end, or an error about the connection."""
    ready, _, _ = select.select([client.fileno()], [], [], 0)
    return bool(ready) or client.buffered()


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _unanswerable(events: list[jsonrpc.Event]) -> bool:
    """A line was skipped and the peer answers nothing for it."""
    return any(isinstance(e, jsonrpc.ProtocolError) for e in events) and not any(
        isinstance(e, jsonrpc.Outgoing) for e in events
    )


__all__ = ["Bridge", "ConnectionLost"]
