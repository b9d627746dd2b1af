"""Asking, on the terminal, how to answer an agent's permission request.

``prompt`` and ``attach`` stream a session's events on one connection. When a
``permission_requested`` event arrives and stdin and stdout are both a terminal,
the question is put inline: the agent's options numbered, a digit and Enter
answers it with ``permission.respond`` on that same connection; Enter alone (or
``q``) leaves it for later. While the user thinks, the socket is still read
(``select`` on both), so that mimird never waits on us: what arrives meanwhile is
put aside in ``client.notifications``, in order, for the streaming loop to render
once the question is over. The question ends by itself when the request is
answered elsewhere: by another client, or with its turn (cancelled or ended).

The terminal stays in its normal line mode; Ctrl-C reaches the command's own
SIGINT handling (cancel the turn in ``prompt``, exit in ``attach``) as it does
while streaming.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import termios
from typing import TYPE_CHECKING, Any, Final, Literal

from mimirctl import render
from mimirctl.client import Client, RpcError

if TYPE_CHECKING:
    from mimirctl.render import Renderer

#: Bytes read from the terminal at a time (a line of input, in line mode).
READ_SIZE: Final = 1024
#: Errors of permission.respond that mean "someone else was first".
_ANSWERED_ALREADY: Final = frozenset({"not_found", "invalid_state"})

Waited = (
    tuple[Literal["response"], dict[str, Any]]
    | tuple[Literal["answered"], dict[str, Any]]
    | tuple[Literal["typed"], str]
    | tuple[Literal["eof"], None]
)


class PermissionAsker:
    """Puts each permission request of one subscription to the user (see the module)."""

    def __init__(
        self, client: Client, renderer: Renderer, subscription: int, stdin_fd: int
    ) -> None:
        self.client = client
        self.renderer = renderer
        self.subscription = subscription
        self.stdin_fd = stdin_fd
        #: False once stdin has ended: later requests are only printed.
        self.enabled = True
        self._typed = b""

    def ask(self, event: dict[str, Any]) -> None:
        """Handle a ``permission_requested`` event: ask if it still waits for an
        answer, print it as ``Renderer`` does otherwise."""
        data = render.as_dict(event.get("data"))
        permission = str(data.get("permission"))
        if not self.enabled:
            self.renderer.permission_request(data, hint=True)
            return
        if not self._still_pending(event["session_id"], permission):
            # attach replaying an old turn: its answer is further down the stream.
            self.renderer.permission_request(data, hint=False)
            return
        options = [o for o in render.as_list(data.get("options")) if isinstance(o, dict)]
        if not options:  # nothing to choose from: someone must answer it by kind
            self.renderer.permission_request(data, hint=True)
            return
        title = render.visible(render.permission_title(data))
        self.renderer.question_line(f"? permission {render.visible(permission)} for {title}")
        by_number = {str(n): option for n, option in enumerate(options, 1)}
        names = {
            n: str(o.get("name") or o.get("kind") or o.get("optionId"))
            for n, o in by_number.items()
        }
        numbered = (f"[{n}] {render.visible(name)}" for n, name in names.items())
        self.renderer.note("  " + "  ".join(numbered), style=None)
        choices = f"1-{len(options)}" if len(options) > 1 else "1"
        self._discard_typeahead()
        while True:
            self.renderer.question(f"  answer {choices}, or Enter to leave it for later: ")
            kind, value = self._wait(permission=permission, keyboard=True)
            if kind == "answered":
                self.renderer.note(f"  permission {permission} was answered meanwhile")
                return
            if kind == "eof":  # stdin is gone (Ctrl-D): no more questions
                self.enabled = False
                self._leave(permission)
                return
            assert isinstance(value, str)  # "typed": a line of input
            self.renderer.typed_line()
            if value in ("", "q"):
                self._leave(permission)
                return
            if (chosen := by_number.get(value)) is not None:
                self._respond(permission, str(chosen.get("optionId")))
                return

    def _respond(self, permission: str, option_id: str) -> None:
        request_id = self._send(
            "permission.respond", {"permission": permission, "option_id": option_id}
        )
        _, response = self._wait(response_id=request_id)
        assert isinstance(response, dict)
        try:
            Client.result(response)
        except RpcError as exc:
            if exc.kind in _ANSWERED_ALREADY:
                self.renderer.note(f"  permission {permission} was answered already")
            else:
                self.renderer.note(f"  mimirctl: {exc.message}", style="31")
                self._leave(permission)
        # On success the permission_answered event, put aside meanwhile, says so.

    def _leave(self, permission: str) -> None:
        self.renderer.note(
            f"  left unanswered: mimirctl permission allow {permission}   (or deny)", style=None
        )

    def _still_pending(self, session_id: str, permission: str) -> bool:
        # The daemon lists a request before it journals it and drops it before it
        # journals the answer: the list is right about the event just received.
        request_id = self._send("permission.list", {"session": session_id})
        _, response = self._wait(response_id=request_id)
        assert isinstance(response, dict)
        try:
            pending = Client.result(response)["permissions"]
        except RpcError:
            return False
        return any(p.get("id") == permission for p in pending)

    def _send(self, method: str, params: dict[str, Any]) -> int:
        # The SIGINT handler of 'prompt' sends session.cancel on this connection: it
        # must not run in the middle of our request's bytes.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return self.client.send(method, params)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _discard_typeahead(self) -> None:
        """Forget what was typed before the question: a stray Enter or digit must
        not answer a request the user has not seen."""
        self._typed = b""
        with contextlib.suppress(termios.error):
            termios.tcflush(self.stdin_fd, termios.TCIFLUSH)

    def _answers(self, message: dict[str, Any], permission: str) -> dict[str, Any] | None:
        """The data of the ``permission_answered`` event ``message`` carries for
        ``permission``, if it is one."""
        if message.get("method") != "event":
            return None
        params = message.get("params") or {}
        event = params.get("event") or {}
        data = event.get("data") or {}
        if (
            params.get("subscription") == self.subscription
            and event.get("kind") == "permission_answered"
            and data.get("permission") == permission
        ):
            return dict(data)
        return None

    def _wait(
        self,
        *,
        response_id: int | None = None,
        permission: str | None = None,
        keyboard: bool = False,
    ) -> Waited:
        """Read the socket (and the keyboard, if asked) until the response to
        ``response_id`` arrives, an event says ``permission`` was answered, or a
        line (or the end) of input is typed. Every other message is put aside."""
        if permission is not None:
            for message in self.client.notifications:
                if (data := self._answers(message, permission)) is not None:
                    return ("answered", data)
        sock = self.client.fileno()
        while True:
            if not self.client.buffered():
                watched = [sock, self.stdin_fd] if keyboard else [sock]
                readable, _, _ = select.select(watched, [], [])
                if self.stdin_fd in readable:
                    typed = os.read(self.stdin_fd, READ_SIZE)
                    if not typed:
                        return ("eof", None)
                    self._typed += typed
                    line, newline, _ = self._typed.partition(b"\n")
                    if newline:
                        self._typed = b""
                        return ("typed", line.decode(errors="replace").strip())
                if sock not in readable:
                    continue
            message = self.client.read()
            is_response = "method" not in message and response_id is not None
            if is_response and message.get("id") == response_id:
                return ("response", message)
            self.client.notifications.append(message)
            if permission is not None and (data := self._answers(message, permission)):
                return ("answered", data)
