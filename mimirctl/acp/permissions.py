"""Permission requests that policy left to a human, asked of the editor as ACP
``session/request_permission``; first answer wins.

A ``permission_requested`` event whose policy decision is ``ask`` is sent to the
editor (once per request, whether it came live or was pending at ``session/load``).
The editor's choice is relayed with ``permission.respond``; if another client
answered first, mimird refuses it and that is the end of it. When mimird journals
the answer (``permission_answered``) while the editor's request is still open, the
request is withdrawn with ACP's ``$/cancel_request`` and the editor's late answer
is dropped (:meth:`JsonRpcPeer.abandon`). An editor answering ``cancelled`` leaves
the request to the other clients (or to the turn's cancel, which answers it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mimird.wire.jsonrpc import JsonRpcPeer

#: The most requests remembered as asked (a long session asks many).
MAX_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class Asked:
    permission: str
    session_id: str
    request_id: int


@dataclass
class Permissions:
    peer: JsonRpcPeer
    #: Our open requests to the editor, by their id, and by mimird's permission id.
    by_request: dict[int, Asked] = field(default_factory=dict)
    by_permission: dict[str, Asked] = field(default_factory=dict)
    #: mimird's ids of the requests asked already (never asked twice).
    asked: set[str] = field(default_factory=set)

    def ask(self, session_id: str, data: Any) -> bytes | None:
        """The request to send the editor for a ``permission_requested`` event's
        data (or a pending request as ``permission.list`` gives it), if it is one
        for a human and was not asked yet."""
        if not isinstance(data, dict):
            return None
        permission = data.get("permission", data.get("id"))
        policy = data.get("policy")
        if isinstance(policy, dict) and policy.get("decision") in ("allow", "deny"):
            return None
        if not isinstance(permission, str) or permission in self.asked:
            return None
        if len(self.asked) >= MAX_REMEMBERED:
            self.asked.clear()
        self.asked.add(permission)
        tool_call = data.get("tool_call")
        if not isinstance(tool_call, dict) or "toolCallId" not in tool_call:
            title = data.get("title")
            tool_call = {
                **(tool_call if isinstance(tool_call, dict) else {}),
                "toolCallId": f"mimir-{permission}",
                **({"title": title} if isinstance(title, str) else {}),
            }
        options = data.get("options")
        request_id, line = self.peer.request(
            "session/request_permission",
            {
                "sessionId": session_id,
                "toolCall": tool_call,
                "options": options if isinstance(options, list) else [],
            },
        )
        asked = Asked(permission, session_id, request_id)
        self.by_request[request_id] = asked
        self.by_permission[permission] = asked
        return line

    def answered(self, data: Any) -> bytes | None:
        """A ``permission_answered`` event: withdraw the editor's request if it is
        still open (another client, a timeout or the turn's end answered first)."""
        permission = data.get("permission") if isinstance(data, dict) else None
        asked = self.by_permission.pop(permission, None) if isinstance(permission, str) else None
        if asked is None:
            return None
        self.by_request.pop(asked.request_id, None)
        return self.peer.abandon(asked.request_id)

    def editor_answered(self, request_id: int, result: Any) -> tuple[str, str] | None:
        """The editor's answer to our request ``request_id``: (mimird's permission
        id, the option chosen) to relay, or None (not ours, or not a choice)."""
        asked = self.by_request.pop(request_id, None)
        if asked is None:
            return None
        self.by_permission.pop(asked.permission, None)
        outcome = result.get("outcome") if isinstance(result, dict) else None
        if not isinstance(outcome, dict) or outcome.get("outcome") != "selected":
            return None
        option = outcome.get("optionId")
        if not isinstance(option, str) or not option:
            return None
        return asked.permission, option

    def editor_failed(self, request_id: int) -> None:
        """The editor answered our request with an error: it is no longer open."""
        asked = self.by_request.pop(request_id, None)
        if asked is not None:
            self.by_permission.pop(asked.permission, None)

    def owns(self, request_id: int) -> bool:
        return request_id in self.by_request
