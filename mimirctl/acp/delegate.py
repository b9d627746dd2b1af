"""The agent's file and terminal requests, answered through the editor.

When the editor's ``initialize`` advertised ``clientCapabilities.fs``
(``readTextFile``, ``writeTextFile``) or ``terminal``, the bridge attaches each of
its sessions to mimird as their provider (``session.attach_client``, on the
session's own connection, the one its events come on). mimird checks each of the
agent's requests first (the path confined to the workspace, sizes bounded), then
sends it as a ``client_request`` notification; this module turns it into the ACP
request to the editor (``fs/read_text_file``, ``fs/write_text_file``,
``terminal/*``, through the bridge's :class:`~mimird.wire.jsonrpc.JsonRpcPeer`),
and the editor's answer into ``client_request.respond``.

Nothing here blocks on mimird: requests to it are sent, and their answers come
back on the session's connection like its events (:meth:`Delegate.takes`),
so that no event is put aside unread. An editor that does not answer in time is
mimird's to handle (``[supervision] client_request_timeout_s``): it serves the
file request itself and detaches the bridge; a late answer of the editor is then
refused by mimird, which is said on stderr.

Blocking, standard library and :mod:`mimird.wire` only (no trio).
"""

from __future__ import annotations

from typing import Any, Final

from mimirctl.client import ClientError
from mimird.wire import jsonrpc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mimirctl.acp.loop import Bridge
    from mimirctl.acp.relay import Follower

#: What mimird may ask the editor, and the capability each needs.
FS_METHODS: Final = {"fs/read_text_file": "read", "fs/write_text_file": "write"}
TERMINAL_METHODS: Final = frozenset(
    {
        "terminal/create",
        "terminal/output",
        "terminal/wait_for_exit",
        "terminal/kill",
        "terminal/release",
    }
)
#: The editor's error messages are passed on at most this long (mimird's bound).
MAX_ERROR_MESSAGE: Final = 4096
INTERNAL_ERROR: Final = -32603
METHOD_NOT_FOUND: Final = -32601
#: Calls to mimird whose answer has not come yet, at most (then forgotten: their
#: answers are only logged).
MAX_OUTSTANDING: Final = 10_000


def offer_of(capabilities: Any) -> dict[str, Any]:
    """What the editor serves, from its ``clientCapabilities``, as
    ``session.attach_client``'s params."""
    caps = capabilities if isinstance(capabilities, dict) else {}
    fs = caps.get("fs")
    if not isinstance(fs, dict):
        fs = {}
    return {
        "fs": {"read": fs.get("readTextFile") is True, "write": fs.get("writeTextFile") is True},
        "terminal": caps.get("terminal") is True,
    }


def _error_code(code: Any) -> int:
    """The editor's error code if mimird accepts it, else internal error."""
    if isinstance(code, int) and not isinstance(code, bool) and -32768 <= code <= -32000:
        return code
    return INTERNAL_ERROR


class Delegate:
    """Made by the bridge (``delegate.Delegate(bridge)``) when the editor serves
    files or terminals; see :mod:`mimirctl.acp.loop` for the calls it gets."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self.offer = offer_of(bridge.client_capabilities)
        #: Our requests to the editor: its request id -> (session, mimird's request id).
        self._editor: dict[int, tuple[str, int]] = {}
        #: Our calls to mimird waiting for their answer: (session, call id) -> method.
        self._outstanding: dict[tuple[str, Any], str] = {}

    def offers(self, method: str) -> bool:
        if method in FS_METHODS:
            return bool(self.offer["fs"][FS_METHODS[method]])
        return method in TERMINAL_METHODS and bool(self.offer["terminal"])

    # -- mimird --------------------------------------------------------------------------

    def attached(self, session_id: str) -> None:
        """The bridge follows ``session_id``: serve its agent's requests."""
        self._call(session_id, "session.attach_client", {"session": session_id, **self.offer})

    def _call(self, session_id: str, method: str, params: dict[str, Any]) -> None:
        """Send a call on the session's connection; its answer comes to :meth:`takes`."""
        follower = self._bridge.followers.get(session_id)
        if follower is None:
            return  # the session's connection is gone: so is the attachment
        try:
            call_id = follower.client.send(method, params)
        except ClientError as exc:
            self._bridge.say(f"{method} for session {session_id} failed: {exc}")
            return
        if len(self._outstanding) >= MAX_OUTSTANDING:
            self._outstanding.clear()
        self._outstanding[(session_id, call_id)] = method

    def takes(self, follower: Follower, message: dict[str, Any]) -> bool:
        """Whether a message read on the session's connection is the delegate's: a
        ``client_request`` (the editor is asked), or the answer to one of our calls
        (an error is said). Anything else is the bridge's."""
        if message.get("method") == "client_request":
            self._request(follower.session_id, message.get("params"))
            return True
        if "method" in message:
            return False
        method = self._outstanding.pop((follower.session_id, message.get("id")), None)
        if method is None:
            return False
        error = message.get("error")
        if isinstance(error, dict):
            self._bridge.say(f"{method} for session {follower.session_id}: {error.get('message')}")
        return True

    def _request(self, session_id: str, params: Any) -> None:
        """A request of the agent, checked by mimird: ask the editor."""
        if not isinstance(params, dict) or not isinstance(params.get("id"), int):
            self._bridge.say(f"skipped a malformed client_request from mimird: {params!r:.200}")
            return
        request_id, method, args = params["id"], params.get("method"), params.get("params")
        if not isinstance(method, str) or not self.offers(method) or not isinstance(args, dict):
            self._respond(
                session_id,
                request_id,
                {
                    "error": {
                        "code": METHOD_NOT_FOUND,
                        "message": f"the editor does not serve {method}",
                    }
                },
            )
            return
        editor_id, line = self._bridge.peer.request(method, args)
        self._editor[editor_id] = (session_id, request_id)
        self._bridge.send(line)

    def _respond(self, session_id: str, request_id: int, answer: dict[str, Any]) -> None:
        self._call(session_id, "client_request.respond", {"id": request_id, **answer})

    # -- the editor ----------------------------------------------------------------------

    def response(self, event: jsonrpc.Response | jsonrpc.ErrorResponse) -> None:
        """The editor answered one of our requests (or someone else's: ignored)."""
        entry = self._editor.pop(event.id, None)
        if entry is None:
            return
        session_id, request_id = entry
        if isinstance(event, jsonrpc.ErrorResponse):
            message = event.message if isinstance(event.message, str) else "error"
            answer: dict[str, Any] = {
                "error": {"code": _error_code(event.code), "message": message[:MAX_ERROR_MESSAGE]}
            }
        else:
            answer = {"result": event.result}
        self._respond(session_id, request_id, answer)

    def close(self) -> None:
        """The bridge ends: its connections close, and mimird serves the requests."""
        for editor_id in self._editor:
            self._bridge.peer.forget(editor_id)
        self._editor.clear()
        self._outstanding.clear()
