"""A session's journal as ACP ``session/update`` updates: what ``session/load`` replays.

:func:`updates_for` takes Mimir's stored events of one session, oldest first (the
event objects of ``session.events`` or of the ``event`` notification) and yields
the ``update`` objects of the ``session/update`` notifications that tell an editor
the same history, in the same order:

- a ``prompt`` event: one ``user_message_chunk`` per content block of the prompt;
- a ``message`` event (or a piece of a long one): one ``agent_message_chunk`` (or
  ``agent_thought_chunk``) with its whole text, instead of the many chunks the
  agent streamed. The chunks' own ``update`` events are skipped, except those no
  ``message`` event covers: the end of a message still streaming when the input
  ends (the live stream goes on from there), or one cut short by a crash;
- the agent's ``tool_call`` and ``tool_call_update``, ``plan``,
  ``available_commands_update``, ``current_mode_update``, ``session_info_update``
  and ``usage_update`` updates, each where it came, with only the fields the ACP v1
  schema knows (checked and bounded here);
- a ``mode_changed`` event of a client's ``session.set_mode`` (or the config): a
  ``current_mode_update`` (the agent does not announce a change it was asked for);
- at a ``turn_ended``, a ``tool_call_update`` with ``status: "failed"`` for each tool
  call of the turn that never reached ``completed`` or ``failed`` (the turn was
  cancelled or cut short): replayed history should not show a tool still running.

Tool calls are replayed as stored (the ``tool_call``, then each of its
``tool_call_update`` patches where it came), not collapsed into one ``tool_call``
with the final state. An editor renders both the same way (ACP's updates are
patches, the last status wins), but replaying keeps each update in its place among
the messages, needs no look-ahead (collapsing would hold a turn's history in
memory until its last update, without bound for an agent that never finishes a
call), and gives the editor exactly the sequence it renders live, so a replayed
session and a watched one look alike.

Everything else (Mimir's own events: status changes, permissions, files, terminals,
turn ends; ``config_option_update``, whose current state the answer to
``session/load`` carries; updates outside ACP v1 stable; ``user_message_chunk``
updates of the agent, since the prompts come from Mimir's own ``prompt`` events)
has no ACP form here and is skipped.

What an agent wrote is hostile data: an update that is not well formed is skipped
(a bad optional field is dropped), never raised on; text longer than
:data:`MAX_TEXT_CHARS` is split over several chunks; a tool call's ``rawInput`` or
``rawOutput`` larger than :data:`MAX_RAW_BYTES` is left out; an image, audio or
embedded resource larger than :data:`MAX_DATA_CHARS` is left out (an embedded
resource becomes a ``resource_link`` to its URI). The updates are data: rendering
them safely is the editor's business, as for a live session.

Give :func:`updates_for` a session's whole history in one iterable (a generator over
the pages of ``session.events`` is fine): the chunks no message covers are replayed
where the input ends, so separate calls per page could replay a message twice. After
the replay, :func:`live_updates` turns each live event into what to forward.

Standard library only, no I/O: the bridge and the tests call it on plain dicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, TypeGuard

#: Text longer than this (a prompt, a message) is replayed as several chunks.
MAX_TEXT_CHARS: Final = 256 * 1024
#: A tool call's ``rawInput``/``rawOutput`` larger than this (as JSON) is left out.
MAX_RAW_BYTES: Final = 64 * 1024
#: Base64 data of an image or audio block, or an embedded resource's text or blob,
#: larger than this is left out.
MAX_DATA_CHARS: Final = 4 * 1024 * 1024
#: Ids (tool call, message, mode) and short names longer than this: the update is skipped.
MAX_ID_CHARS: Final = 1024
#: Titles, names, descriptions, URIs are cut at this many characters.
MAX_LABEL_CHARS: Final = 4096
#: At most this many items in a list (content of a tool call, plan entries, commands,
#: locations); the rest are left out.
MAX_ITEMS: Final = 1000
#: Tool calls of one turn whose final status is awaited: past this many, the oldest
#: is not closed at the turn's end.
MAX_OPEN_TOOL_CALLS: Final = 10_000

_TOOL_KINDS: Final = frozenset(
    {
        "read",
        "edit",
        "delete",
        "move",
        "search",
        "execute",
        "think",
        "fetch",
        "switch_mode",
        "other",
    }
)
_TOOL_STATUSES: Final = frozenset({"pending", "in_progress", "completed", "failed"})
_FINAL_STATUSES: Final = frozenset({"completed", "failed"})
_PRIORITIES: Final = frozenset({"high", "medium", "low"})
_PLAN_STATUSES: Final = frozenset({"pending", "in_progress", "completed"})
_MESSAGE_KINDS: Final = {"agent": "agent_message_chunk", "thought": "agent_thought_chunk"}
_CHUNK_ROLES: Final = {v: k for k, v in _MESSAGE_KINDS.items()}


def updates_for(events: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The ``session/update`` updates that replay ``events`` (one session's, by ``seq``).

    Never raises on what an event holds: a malformed one is skipped."""
    replay = _Replay()
    for event in events:
        if isinstance(event, Mapping):
            yield from replay.event(event)
    yield from replay.flush_chunks()


def live_updates(event: Mapping[str, Any], *, prompts: bool = False) -> list[dict[str, Any]]:
    """The updates that tell an editor one live event, after a replay: the agent's
    ``update`` as it streamed (message chunks included, each checked as the replay
    checks updates), the ``current_mode_update`` of a mode a client set, and with
    ``prompts`` the ``user_message_chunk`` blocks of a prompt (one another client sent);
    nothing for the other events (``message`` events repeat the chunks already
    forwarded). Never raises on what the event holds."""
    if not isinstance(event, Mapping) or not isinstance(event.get("data"), Mapping):
        return []
    kind, data = event.get("kind"), event["data"]
    if kind == "update":
        update = data.get("update")
        if not isinstance(update, Mapping):
            return []
        tag = update.get("sessionUpdate")
        if isinstance(tag, str) and tag in _CHUNK_ROLES:
            chunk = _chunk(tag, update)
            return [] if chunk is None else [chunk]
        checked = _checked(tag, update)
        return [] if checked is None else [checked]
    if kind == "prompt" and prompts:
        return list(_prompt(data))
    if kind == "mode_changed":
        return list(_Replay().event(event))
    return []


class _Replay:
    """The state of one replay: chunks no message covers yet, open tool calls."""

    def __init__(self) -> None:
        #: Text chunks (role, update) streamed since the last ``message`` event.
        self._chunks: list[tuple[str, dict[str, Any]]] = []
        #: Tool calls of the current turn by id: whether their status is final.
        self._tool_calls: dict[str, bool] = {}

    def event(self, event: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        kind, data = event.get("kind"), event.get("data")
        if not isinstance(data, Mapping):
            return
        if kind == "prompt":
            yield from self.flush_chunks()
            yield from _prompt(data)
        elif kind == "message":
            yield from self._message(data)
        elif kind == "update":
            yield from self._update(data.get("update"))
        elif kind == "mode_changed":
            mode = data.get("mode")
            if data.get("by") != "agent" and _is_id(mode):
                yield {"sessionUpdate": "current_mode_update", "currentModeId": mode}
        elif kind in ("turn_ended", "agent_exited"):
            yield from self.flush_chunks()
            if kind == "turn_ended":
                yield from self._close_tool_calls()

    def flush_chunks(self) -> Iterator[dict[str, Any]]:
        """The streamed chunks no ``message`` event covered."""
        chunks, self._chunks = self._chunks, []
        for _role, update in chunks:
            yield update

    def _message(self, data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        role, text = data.get("role"), data.get("text")
        kind = _MESSAGE_KINDS.get(role) if isinstance(role, str) else None
        if kind is None or not isinstance(role, str) or not isinstance(text, str):
            return
        self._covered(role, len(text), whole=data.get("continued") is not True)
        message_id = data.get("message_id")
        for part in _split(text):
            update: dict[str, Any] = {"sessionUpdate": kind, "content": _text_block(part)}
            if _is_id(message_id):
                update["messageId"] = message_id
            yield update

    def _covered(self, role: str, chars: int, *, whole: bool) -> None:
        """Drop the streamed chunks of ``role`` that a message (``whole``) or a piece
        of ``chars`` characters holds."""
        if whole:
            self._chunks = [c for c in self._chunks if c[0] != role]
            return
        kept: list[tuple[str, dict[str, Any]]] = []
        for chunk_role, update in self._chunks:
            if chunk_role != role or chars <= 0:
                kept.append((chunk_role, update))
                continue
            text = update["content"]["text"]
            if len(text) > chars:  # the piece ends inside this chunk: keep its rest
                kept.append((role, {**update, "content": _text_block(text[chars:])}))
            chars -= len(text)
        self._chunks = kept

    def _update(self, update: Any) -> Iterator[dict[str, Any]]:
        if not isinstance(update, Mapping):
            return
        kind = update.get("sessionUpdate")
        role = _CHUNK_ROLES.get(kind) if isinstance(kind, str) else None
        if role is not None and isinstance(kind, str):
            chunk = _chunk(kind, update)
            if chunk is None:
                return
            if chunk["content"]["type"] == "text":
                # Replayed from its ``message`` event, unless none comes.
                self._chunks.append((role, chunk))
            else:
                yield chunk
            return
        yield from self.flush_chunks()  # Mimir journals a message before another update
        checked = _checked(kind, update)
        if checked is not None:
            if kind in ("tool_call", "tool_call_update"):
                self._track(checked)
            yield checked

    def _track(self, call: dict[str, Any]) -> None:
        call_id: str = call["toolCallId"]
        status = call.get("status")
        if call["sessionUpdate"] == "tool_call":
            final = status in _FINAL_STATUSES
        elif call_id in self._tool_calls:
            final = self._tool_calls[call_id] or status in _FINAL_STATUSES
        else:
            return  # an update of a call this replay never saw start
        if call_id not in self._tool_calls and len(self._tool_calls) >= MAX_OPEN_TOOL_CALLS:
            return
        self._tool_calls[call_id] = final

    def _close_tool_calls(self) -> Iterator[dict[str, Any]]:
        calls, self._tool_calls = self._tool_calls, {}
        for call_id, final in calls.items():
            if not final:
                yield {
                    "sessionUpdate": "tool_call_update",
                    "toolCallId": call_id,
                    "status": "failed",
                }


# ---- one update, checked ------------------------------------------------------------------


def _is_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def _one_of(value: Any, allowed: frozenset[str]) -> bool:
    """Whether ``value`` is one of the strings ``allowed`` (a list is not hashable)."""
    return isinstance(value, str) and value in allowed


def _label(value: Any) -> str | None:
    return value[:MAX_LABEL_CHARS] if isinstance(value, str) else None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _split(text: str) -> list[str]:
    if len(text) <= MAX_TEXT_CHARS:
        return [text]
    return [text[i : i + MAX_TEXT_CHARS] for i in range(0, len(text), MAX_TEXT_CHARS)]


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _prompt(data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    content = data.get("content")
    if not isinstance(content, list):
        return
    for block in content[:MAX_ITEMS]:
        for checked in _content_blocks(block):
            yield {"sessionUpdate": "user_message_chunk", "content": checked}


def _content_blocks(block: Any) -> list[dict[str, Any]]:
    """``block`` as well-formed ACP content blocks: none when it is malformed, several
    when its text is long."""
    if not isinstance(block, Mapping):
        return []
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return [_text_block(part) for part in _split(text)] if isinstance(text, str) else []
    if kind in ("image", "audio"):
        data, mime = block.get("data"), block.get("mimeType")
        if not isinstance(data, str) or len(data) > MAX_DATA_CHARS or not _is_id(mime):
            return []
        media: dict[str, Any] = {"type": kind, "data": data, "mimeType": mime}
        uri = _label(block.get("uri"))
        if kind == "image" and uri is not None:
            media["uri"] = uri
        return [media]
    if kind == "resource_link":
        link = _resource_link(block)
        return [] if link is None else [link]
    if kind == "resource":
        return _embedded(block.get("resource"))
    return []


def _resource_link(block: Mapping[str, Any]) -> dict[str, Any] | None:
    uri, name = _label(block.get("uri")), _label(block.get("name"))
    if uri is None or name is None:
        return None
    link: dict[str, Any] = {"type": "resource_link", "uri": uri, "name": name}
    for key in ("mimeType", "title", "description"):
        value = _label(block.get(key))
        if value is not None:
            link[key] = value
    size = block.get("size")
    if _is_int(size) and size >= 0:
        link["size"] = size
    return link


def _embedded(resource: Any) -> list[dict[str, Any]]:
    if not isinstance(resource, Mapping):
        return []
    uri = resource.get("uri")
    if not isinstance(uri, str) or len(uri) > MAX_LABEL_CHARS:
        return []
    body = {k: resource[k] for k in ("text", "blob") if isinstance(resource.get(k), str)}
    if len(body) != 1:
        return []
    if len(next(iter(body.values()))) > MAX_DATA_CHARS:
        # Too large to replay: the editor still sees which resource it was.
        return [{"type": "resource_link", "uri": uri, "name": uri.rsplit("/", 1)[-1] or uri}]
    out: dict[str, Any] = {"uri": uri, **body}
    mime = resource.get("mimeType")
    if _is_id(mime):
        out["mimeType"] = mime
    return [{"type": "resource", "resource": out}]


def _chunk(kind: str, update: Mapping[str, Any]) -> dict[str, Any] | None:
    blocks = _content_blocks(update.get("content"))
    if len(blocks) != 1:
        return None  # a text over MAX_TEXT_CHARS comes from its message event anyway
    chunk: dict[str, Any] = {"sessionUpdate": kind, "content": blocks[0]}
    message_id = update.get("messageId")
    if _is_id(message_id):
        chunk["messageId"] = message_id
    return chunk


def _tool_call(kind: str, update: Mapping[str, Any]) -> dict[str, Any] | None:
    call_id, title = update.get("toolCallId"), _label(update.get("title"))
    if not _is_id(call_id) or (kind == "tool_call" and title is None):
        return None
    call: dict[str, Any] = {"sessionUpdate": kind, "toolCallId": call_id}
    if title is not None:
        call["title"] = title
    if _one_of(update.get("kind"), _TOOL_KINDS):
        call["kind"] = update["kind"]
    if _one_of(update.get("status"), _TOOL_STATUSES):
        call["status"] = update["status"]
    content = update.get("content")
    if isinstance(content, list):
        call["content"] = [c for c in map(_tool_content, content[:MAX_ITEMS]) if c is not None]
    locations = update.get("locations")
    if isinstance(locations, list):
        call["locations"] = [
            loc for loc in map(_location, locations[:MAX_ITEMS]) if loc is not None
        ]
    for key in ("rawInput", "rawOutput"):
        if key in update and update[key] is not None and _small(update[key]):
            call[key] = update[key]
    return call


def _small(value: Any) -> bool:
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return len(encoded.encode("utf-8", "surrogatepass")) <= MAX_RAW_BYTES


def _tool_content(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        return None
    kind = item.get("type")
    if kind == "content":
        blocks = _content_blocks(item.get("content"))
        return {"type": "content", "content": blocks[0]} if len(blocks) == 1 else None
    if kind == "diff":
        path, old, new = item.get("path"), item.get("oldText"), item.get("newText")
        if not isinstance(path, str) or not isinstance(new, str) or len(new) > MAX_DATA_CHARS:
            return None
        diff: dict[str, Any] = {"type": "diff", "path": path[:MAX_LABEL_CHARS], "newText": new}
        if isinstance(old, str) and len(old) <= MAX_DATA_CHARS:
            diff["oldText"] = old
        elif old is not None:
            return None  # leaving it out would claim a new file
        return diff
    if kind == "terminal" and _is_id(item.get("terminalId")):
        return {"type": "terminal", "terminalId": item["terminalId"]}
    return None


def _location(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
        return None
    location: dict[str, Any] = {"path": item["path"][:MAX_LABEL_CHARS]}
    line = item.get("line")
    if _is_int(line) and line >= 0:
        location["line"] = line
    return location


def _checked(kind: Any, update: Mapping[str, Any]) -> dict[str, Any] | None:
    """An update other than a message chunk, checked; ``None`` when it has no ACP form."""
    if kind in ("tool_call", "tool_call_update"):
        return _tool_call(kind, update)
    if kind == "plan":
        return _plan(update)
    return _other(kind, update)


def _plan(update: Mapping[str, Any]) -> dict[str, Any] | None:
    entries = update.get("entries")
    if not isinstance(entries, list):
        return None
    kept = []
    for entry in entries[:MAX_ITEMS]:
        if not isinstance(entry, Mapping):
            continue
        content = _label(entry.get("content"))
        priority, status = entry.get("priority"), entry.get("status")
        if (
            content is not None
            and _one_of(priority, _PRIORITIES)
            and _one_of(status, _PLAN_STATUSES)
        ):
            kept.append({"content": content, "priority": priority, "status": status})
    return {"sessionUpdate": "plan", "entries": kept}


def _other(kind: Any, update: Mapping[str, Any]) -> dict[str, Any] | None:
    """The other stable v1 updates this replay keeps, checked; ``None`` for the rest."""
    if kind == "current_mode_update":
        mode = update.get("currentModeId")
        return {"sessionUpdate": kind, "currentModeId": mode} if _is_id(mode) else None
    if kind == "available_commands_update":
        commands = update.get("availableCommands")
        if not isinstance(commands, list):
            return None
        kept = [c for c in map(_command, commands[:MAX_ITEMS]) if c is not None]
        return {"sessionUpdate": kind, "availableCommands": kept}
    if kind == "session_info_update":
        info: dict[str, Any] = {"sessionUpdate": kind}
        for key in ("title", "updatedAt"):
            if key in update and (update[key] is None or isinstance(update[key], str)):
                info[key] = _label(update[key])
        return info
    if kind == "usage_update":
        used, size = update.get("used"), update.get("size")
        if not (_is_int(used) and _is_int(size) and used >= 0 and size >= 0):
            return None
        usage: dict[str, Any] = {"sessionUpdate": kind, "used": used, "size": size}
        cost = update.get("cost")
        if isinstance(cost, Mapping):
            amount, currency = cost.get("amount"), cost.get("currency")
            number = isinstance(amount, int | float) and not isinstance(amount, bool)
            if number and isinstance(currency, str) and 0 < len(currency) <= 16:
                usage["cost"] = {"amount": amount, "currency": currency}
        return usage
    return None


def _command(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        return None
    name, description = item.get("name"), _label(item.get("description"))
    if not _is_id(name) or description is None:
        return None
    command: dict[str, Any] = {"name": name, "description": description}
    hint = item.get("input")
    if isinstance(hint, Mapping) and isinstance(hint.get("hint"), str):
        command["input"] = {"hint": hint["hint"][:MAX_LABEL_CHARS]}
    return command
