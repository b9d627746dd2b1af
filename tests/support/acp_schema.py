"""Check ACP messages against the official ACP v1 JSON Schema (tests only).

The schema is ``schema/v1/schema.json`` of the agentclientprotocol/agent-client-protocol
repository, schema release 1.21.0 (2026-08-20; stable v1 only: ``session/resume``,
``session/close`` and ``$/cancel_request`` included, unstable methods and updates not),
vendored beside this file in ``acp_schema_v1/`` with its Apache-2.0 licence. It is
checked with ``jsonschema`` (the test extra).

The schema's top level accepts any request params under any method (its union ends
with the extension request, which is anything), so a message is checked against the
type its method names (``x-method`` in the schema): ``session/prompt`` params against
``PromptRequest``, the answer to ``initialize`` against ``InitializeResponse``. An
answer is checked against the type of the request it answers: give ``request_method``,
or use a :class:`Transcript`, which pairs answers with the requests it has seen.

- :func:`validate_agent_message`: what an agent sends a client (answers to
  ``initialize``, ``session/new``, ...; ``session/update``; ``session/request_permission``,
  ``fs/*``, ``terminal/*`` requests);
- :func:`validate_client_message`: what a client sends an agent (``initialize``,
  ``session/new``/``load``/``prompt``/``cancel``, ...; answers to permission, fs and
  terminal requests).

Both raise :class:`AcpSchemaError` saying what is wrong and where. Methods whose name
starts with ``_`` are extensions (any params). ``session/set_model`` was removed from
the schema (2026-06-01) but agents still use it (opencode, Gemini CLI): with
``legacy=True`` (the default) it is checked against its pre-removal shape. So are the
members outside stable v1 that Mimir passes on on purpose (:data:`_EXTRA_MEMBERS`): the
legacy ``models`` of session/new and session/load answers (opencode and Gemini CLI still
switch models only that way) and the unstable ``usage`` of a prompt's answer.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal

import jsonschema

SCHEMA_PATH: Final = Path(__file__).parent / "acp_schema_v1" / "schema.json"
#: The schema release vendored (schema/v1/Cargo.toml of the repository).
SCHEMA_VERSION: Final = "1.21.0"

Side = Literal["agent", "client"]

#: Methods removed from the schema that agents still use: their params and result,
#: as the schema had them before the removal (ACP commit 822ef53's parent).
_LEGACY: Final[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "session/set_model": (
        {
            "type": "object",
            "properties": {"sessionId": {"type": "string"}, "modelId": {"type": "string"}},
            "required": ["sessionId", "modelId"],
        },
        {"type": ["object", "null"]},
    ),
}


_MODELS: Final = {
    "type": "object",
    "properties": {
        "currentModelId": {"type": "string"},
        "availableModels": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "modelId": {"type": "string"},
                    "name": {"type": "string"},
                    "description": {"type": ["string", "null"]},
                },
                "required": ["modelId", "name"],
            },
        },
    },
    "required": ["currentModelId", "availableModels"],
}
_COUNT: Final = {"type": "integer", "minimum": 0}
#: The unstable ``Usage`` of schema.unstable.json (schema 1.21.0).
_USAGE: Final = {
    "type": "object",
    "properties": {
        key: _COUNT
        for key in (
            "totalTokens",
            "inputTokens",
            "outputTokens",
            "thoughtTokens",
            "cachedReadTokens",
            "cachedWriteTokens",
        )
    },
    "required": ["totalTokens", "inputTokens", "outputTokens"],
}
#: Members of v1 types outside stable v1 that are allowed with ``legacy``, by type:
#: their shape.
_EXTRA_MEMBERS: Final[dict[str, dict[str, dict[str, Any]]]] = {
    "NewSessionResponse": {"models": _MODELS},
    "LoadSessionResponse": {"models": _MODELS},
    "ResumeSessionResponse": {"models": _MODELS},
    "PromptResponse": {"usage": _USAGE},
}


class AcpSchemaError(AssertionError):
    """A message that does not follow the ACP v1 schema."""


@functools.cache
def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _methods() -> dict[tuple[str, str, str], str]:
    """``(handler side, method, "Request"|"Response"|"Notification")`` → the ``$defs`` name."""
    found: dict[tuple[str, str, str], str] = {}
    for name, definition in _schema()["$defs"].items():
        method, side = definition.get("x-method"), definition.get("x-side")
        if method is None:
            continue
        for form in ("Request", "Response", "Notification"):
            if name.endswith(form):
                found[(side, method, form)] = name
    return found


@functools.cache
def _validator(ref: str) -> jsonschema.protocols.Validator:
    root = copy.copy(_schema())
    root.pop("anyOf", None)
    root.pop("title", None)
    root["$ref"] = f"#/$defs/{ref}"
    cls = jsonschema.validators.validator_for(root)
    validator: jsonschema.protocols.Validator = cls(root)
    return validator


def _check(schema_or_ref: str | dict[str, Any], value: Any, what: str) -> None:
    if isinstance(schema_or_ref, str):
        validator = _validator(schema_or_ref)
        label = schema_or_ref
    else:
        validator = jsonschema.Draft202012Validator(schema_or_ref)
        label = "legacy shape"
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        best = _explain(jsonschema.exceptions.best_match(errors))
        where = "/".join(str(p) for p in best.absolute_path) or "(top)"
        raise AcpSchemaError(
            f"{what} does not match {label} at {where}: {best.message}\n"
            f"message: {json.dumps(value)[:2000]}"
        )


def _explain(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The error inside a union that says what is wrong: the one in the branch whose
    tag (``type``, ``sessionUpdate``, ``outcome``, ...) matched, when one did."""
    while error.context:
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for inner in error.context:
            branches.setdefault(inner.relative_schema_path[0], []).append(inner)
        tagged = [
            found
            for found in branches.values()
            if not any(e.validator in ("const", "enum") for e in found)
        ]
        if len(tagged) != 1:
            break
        error = jsonschema.exceptions.best_match(tagged[0])
    return error


def _declared(definition: Mapping[str, Any]) -> set[str] | None:
    """The properties an object type declares (through ``allOf``/``$ref``), or ``None``
    when it is a union (``anyOf``/``oneOf``: its branches differ)."""
    if "anyOf" in definition or "oneOf" in definition:
        return None
    names = set(definition.get("properties", {}))
    for part in definition.get("allOf", []):
        ref = part.get("$ref", "")
        inner = _schema()["$defs"][ref.rsplit("/", 1)[-1]] if ref else part
        found = _declared(inner)
        if found is None:
            return None
        names |= found
    return names


def _known_fields(name: str, value: Any, what: str, legacy: bool) -> None:
    """The schema lets unknown members through, but ACP says implementations MUST NOT
    add root-level fields to its types (custom data goes in ``_meta``): check the
    params' (or result's) own members."""
    declared = _declared(_schema()["$defs"][name])
    if declared is None or not isinstance(value, Mapping):
        return
    unknown = sorted(set(value) - declared)
    extra = _EXTRA_MEMBERS.get(name, {}) if legacy else {}
    for member in [m for m in unknown if m in extra]:
        _check(extra[member], value[member], f"{what}: {member}")
        unknown.remove(member)
    if unknown:
        raise AcpSchemaError(f"{what} has members {name} does not declare: {unknown}")


def _envelope(msg: Any) -> str:
    """The message's form: request, notification or response (checks the envelope)."""
    if not isinstance(msg, Mapping):
        raise AcpSchemaError(f"not a JSON-RPC object: {msg!r:.200}")
    if msg.get("jsonrpc") != "2.0":
        raise AcpSchemaError(f'no "jsonrpc": "2.0": {msg!r:.200}')
    if "id" in msg:
        _check("RequestId", msg["id"], "the id")
    if "method" in msg:
        if not isinstance(msg["method"], str):
            raise AcpSchemaError(f"method is not a string: {msg!r:.200}")
        if "result" in msg or "error" in msg:
            raise AcpSchemaError(f"a request with result/error: {msg!r:.200}")
        return "Request" if "id" in msg else "Notification"
    if "id" not in msg or ("result" in msg) == ("error" in msg):
        raise AcpSchemaError(f"a response needs an id and one of result/error: {msg!r:.200}")
    return "Response"


def _validate(msg: Any, sender: Side, request_method: str | None, legacy: bool) -> None:
    form = _envelope(msg)
    handler: Side = "client" if sender == "agent" else "agent"
    if form == "Response":
        if "error" in msg:
            _check("Error", msg["error"], f"error answer from the {sender}")
            return
        if request_method is None:
            raise AcpSchemaError(f"an answer of the {sender}, but to which request? {msg!r:.200}")
        method, value, form_key, side = request_method, msg["result"], "Response", sender
    else:
        method, value, form_key, side = msg["method"], msg.get("params"), form, handler
    what = f"{form.lower()} {method!r} from the {sender}"
    if method.startswith("_"):
        return  # an extension: anything goes
    if method == "$/cancel_request" and form == "Notification":
        _check("CancelRequestNotification", value, what)
        return
    name = _methods().get((side, method, form_key))
    if name is not None:
        _check(name, value, what)
        _known_fields(name, value, what, legacy)
        return
    if legacy and method in _LEGACY and form != "Notification":
        params, result = _LEGACY[method]
        _check(params if form == "Request" else result, value, what)
        return
    raise AcpSchemaError(f"{what}: not a message the {sender} sends in ACP v1 stable")


def validate_agent_message(
    msg: Any, *, request_method: str | None = None, legacy: bool = True
) -> None:
    """Check one message an agent sends a client; ``request_method``: for an answer,
    the method of the client's request it answers."""
    _validate(msg, "agent", request_method, legacy)


def validate_client_message(
    msg: Any, *, request_method: str | None = None, legacy: bool = True
) -> None:
    """Check one message a client sends an agent; ``request_method``: for an answer,
    the method of the agent's request it answers."""
    _validate(msg, "client", request_method, legacy)


def validate_update(update: Any) -> None:
    """Check one ``session/update`` update object (the ``update`` of its params)."""
    _check("SessionUpdate", update, "session update")


class Transcript:
    """Both sides of one ACP connection, checked message by message, answers paired
    with the requests they answer (by direction and id)."""

    def __init__(self, *, legacy: bool = True) -> None:
        self.legacy = legacy
        #: Requests awaiting an answer, by (sender, id): their method.
        self._pending: dict[tuple[Side, str], str] = {}
        self.checked: list[tuple[Side, str]] = []

    def feed(self, sender: Side, msg: Any) -> None:
        """Check ``msg`` sent by ``sender``."""
        request_method = None
        if isinstance(msg, Mapping) and "method" not in msg and "id" in msg:
            asker: Side = "client" if sender == "agent" else "agent"
            request_method = self._pending.pop((asker, json.dumps(msg["id"])), None)
        _validate(msg, sender, request_method, self.legacy)
        if isinstance(msg, Mapping) and "method" in msg and "id" in msg:
            self._pending[(sender, json.dumps(msg["id"]))] = msg["method"]
        self.checked.append((sender, str(msg.get("method") or request_method)))

    def feed_lines(self, sender: Side, lines: Iterable[str]) -> None:
        """Check each non-empty line (one JSON-RPC message or a batch array)."""
        for line in lines:
            if not line.strip():
                continue
            decoded = json.loads(line)
            for msg in decoded if isinstance(decoded, list) else [decoded]:
                self.feed(sender, msg)
