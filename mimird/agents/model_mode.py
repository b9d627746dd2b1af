"""The agent's model and mode: what it offers, setting them through ACP, and
journaling every change, whoever made it.

An agent offers a choice in one of two ways (reference/acp.md §2.9): a config
option of category ``model`` or ``mode`` (``configOptions``, set with
``session/set_config_option``), preferred when present; or the older ``models``
(``session/set_model``) and ``modes`` (``session/set_mode``) of its
``session/new``/``session/load`` answer. What it offered when it last started is
kept in the session's ``agent_state``; a value is checked against that.

The configured ``model``/``mode`` (the layered config, the session's layer set by
``session.set_model``/``set_mode``) are applied right after the ACP session
starts, before the session is ready for prompts. A value the agent does not offer,
or that it refuses, does not stop the agent: ``setting_failed`` is journaled and
the agent keeps its own choice. Changes the agent makes itself
(``current_mode_update``, ``config_option_update``) are journaled too.

Everything the agent sent is untrusted: ids that are not short strings are
ignored, and lists are cut to :data:`MAX_OFFERED`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import structlog
import trio

from mimird.agents.acp import AcpConnection, AcpConnectionClosed, AcpError
from mimird.agents.recorder import Recorder
from mimird.errors import InvalidParams, InvalidState
from mimird.sessions import records as sessions
from mimird.wire import events

log = structlog.get_logger("mimird.agents.model_mode")

Key = Literal["model", "mode"]
KEYS: Final[tuple[Key, ...]] = ("model", "mode")
#: The most ids of one offer that are kept (and shown in an error).
MAX_OFFERED: Final = 500
#: The longest id kept (``model``/``mode`` values are at most this long too).
MAX_ID_CHARS: Final = 200
#: Ids an error message lists before "and N more".
SHOWN_IN_ERRORS: Final = 30


@dataclass(frozen=True, slots=True)
class Offer:
    """How an agent lets a client choose a model or a mode, and what it offers."""

    #: The ACP method that sets it.
    method: str
    #: The config option's id, for ``session/set_config_option``.
    config_id: str | None
    offered: list[str]
    current: str | None

    def params(self, acp_session_id: str | None, key: Key, value: str) -> dict[str, Any]:
        if self.config_id is not None:
            return {"sessionId": acp_session_id, "configId": self.config_id, "value": value}
        field = "modelId" if key == "model" else "modeId"
        return {"sessionId": acp_session_id, field: value}


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS else None


def _ids(items: Any, field: str) -> list[str]:
    """The ids of a list of objects (``[{field: id, ...}, ...]``), the odd ones left out."""
    if not isinstance(items, list):
        return []
    found = (_id(item.get(field)) for item in items[: MAX_OFFERED * 2] if isinstance(item, dict))
    return list(dict.fromkeys(i for i in found if i is not None))[:MAX_OFFERED]


def _option_values(options: Any) -> list[str]:
    """A select option's values: a flat list, or groups of lists."""
    if not isinstance(options, list):
        return []
    flat: list[Any] = []
    for item in options[: MAX_OFFERED * 2]:
        if isinstance(item, dict) and isinstance(item.get("options"), list):
            flat += item["options"][:MAX_OFFERED]
        else:
            flat.append(item)
    return _ids(flat, "value")


def _config_option(agent_state: Mapping[str, Any], key: Key) -> dict[str, Any] | None:
    options = agent_state.get("config_options")
    if not isinstance(options, list):
        return None
    for option in options[:MAX_OFFERED]:
        if (
            isinstance(option, dict)
            and option.get("category") == key
            and option.get("type", "select") == "select"
            and _id(option.get("id")) is not None
        ):
            return option
    return None


def offer_of(agent_state: Mapping[str, Any] | None, key: Key) -> Offer | None:
    """What the agent offered for ``key`` when it last started; None if nothing."""
    if not agent_state:
        return None
    option = _config_option(agent_state, key)
    if option is not None:
        return Offer(
            "session/set_config_option",
            option["id"],
            _option_values(option.get("options")),
            _id(option.get("currentValue")),
        )
    if key == "model" and isinstance(models := agent_state.get("models"), dict):
        offered = _ids(models.get("availableModels"), "modelId")
        return Offer("session/set_model", None, offered, _id(models.get("currentModelId")))
    if key == "mode" and isinstance(modes := agent_state.get("modes"), dict):
        offered = _ids(modes.get("availableModes"), "id")
        return Offer("session/set_mode", None, offered, _id(modes.get("currentModeId")))
    return None


def _listed(offered: list[str]) -> str:
    shown = ", ".join(offered[:SHOWN_IN_ERRORS])
    more = len(offered) - SHOWN_IN_ERRORS
    return shown + (f" and {more} more" if more > 0 else "") if offered else "none"


def check(
    agent_state: Mapping[str, Any] | None, key: Key, value: str, *, session_id: str
) -> Offer | None:
    """The agent's offer for ``key`` if ``value`` is in it; None when the agent has
    not started yet (nothing to check against: the value is checked at its start).

    Raises :class:`InvalidState` when the agent offers no choice of ``key``, and
    :class:`InvalidParams` (listing the offered ids) when ``value`` is not offered."""
    if not agent_state:
        return None
    offer = offer_of(agent_state, key)
    if offer is None:
        raise InvalidState(
            f"the agent of session {session_id} offers no choice of {key}: it advertised "
            f"neither '{key}s' nor a config option of category '{key}'",
            field=key,
            id=session_id,
            detail={"offered": []},
        )
    if value not in offer.offered:
        raise InvalidParams(
            f"the agent of session {session_id} does not offer the {key} {value!r}; "
            f"it offers: {_listed(offer.offered)}",
            field=key,
            id=session_id,
            detail={"offered": offer.offered},
        )
    return offer


def _reported(answer: Mapping[str, Any], key: Key) -> bool:
    """Whether a session/new or session/load answer says the agent's current ``key``."""
    return "configOptions" in answer or f"{key}s" in answer


def _changed(key: Key, value: str, by: str, previous: str | None, via: str | None) -> Any:
    if key == "model":
        return events.ModelChanged(model=value, by=by, previous=previous, via=via)
    return events.ModeChanged(mode=value, by=by, previous=previous, via=via)


def _set_current(agent_state: dict[str, Any], offer: Offer, key: Key, value: str) -> None:
    """Record in ``agent_state`` that ``value`` is now the agent's ``key``."""
    if offer.config_id is not None:
        for option in agent_state.get("config_options") or []:
            if isinstance(option, dict) and option.get("id") == offer.config_id:
                option["currentValue"] = value
    else:
        field, current = (
            ("models", "currentModelId") if key == "model" else ("modes", "currentModeId")
        )
        if isinstance(agent_state.get(field), dict):
            agent_state[field][current] = value


class AgentSession(Protocol):
    """What setting a model or mode needs of the agent's host."""

    @property
    def acp_session_id(self) -> str | None: ...

    @property
    def agent_state(self) -> dict[str, Any]: ...


class ModelMode:
    """The model and mode of one agent: what is wanted, and telling the agent."""

    def __init__(self, recorder: Recorder, agent: AgentSession, wanted: Mapping[str, Any]) -> None:
        self._recorder = recorder
        self._agent = agent
        #: The configured values (None: the agent's own choice), applied at each start.
        self.wanted: dict[Key, str | None] = {key: wanted.get(key) for key in KEYS}
        #: Keys Mimir is setting: the agent's own notice of the change is not journaled twice.
        self._in_flight: set[Key] = set()

    async def apply_at_start(
        self, conn: AcpConnection, timeout_s: float, answer: Mapping[str, Any]
    ) -> None:
        """Tell the agent the wanted model and mode, where they differ from its own.
        A value it does not offer or refuses is journaled (``setting_failed``), never
        raised. ``agent_state`` is updated; the caller stores it. ``answer`` is the
        agent's answer to ``session/new`` or ``session/load``: a value equal to the
        current one is not sent only if that answer said what is current (after a
        load that did not, the current value known is from an earlier life).

        Cancellation: a request on its way is abandoned; what was journaled stays."""
        state = self._agent.agent_state
        for key in KEYS:
            value = self.wanted[key]
            if value is None:
                continue
            offer = offer_of(state, key)
            reason: str | None = None
            if offer is None:
                reason = f"the agent offers no choice of {key}"
            elif value not in offer.offered:
                reason = f"the agent does not offer the {key} {value!r}"
            elif offer.current == value and _reported(answer, key):
                continue
            else:
                with trio.move_on_after(timeout_s):
                    reason = await self._send(conn, offer, key, value, by="config")
                    if reason is None:
                        continue
                reason = reason or f"no answer to {offer.method} within {timeout_s} s"
            await self._recorder.event(
                events.SettingFailed(
                    key=key, value=value, reason=reason, offered=offer.offered if offer else []
                )
            )

    async def set(self, conn: AcpConnection, key: Key, value: str) -> Offer:
        """Check ``value`` against the agent's offer and tell the agent; the offer used.

        Raises :class:`InvalidParams` (not offered), :class:`InvalidState` (no
        choice offered, or the agent refused it). Cancellation: the request is
        abandoned; the agent may or may not have made the change."""
        offer = check(self._agent.agent_state, key, value, session_id=self._recorder.session_id)
        if offer is None:  # the host is up: agent_state is filled
            raise InvalidState(f"the agent of session {self._recorder.session_id} is not ready")
        refused = await self._send(conn, offer, key, value, by="client")
        if refused is not None:
            raise InvalidState(refused, field=key, id=self._recorder.session_id)
        self.wanted[key] = value
        await self._store()
        return offer

    async def _send(
        self, conn: AcpConnection, offer: Offer, key: Key, value: str, *, by: str
    ) -> str | None:
        """Send the change; journal it. Returns why it failed, or None."""
        self._in_flight.add(key)
        try:
            result = await conn.request(
                offer.method, offer.params(self._agent.acp_session_id, key, value)
            )
        except AcpError as exc:
            return f"the agent refused {offer.method}: {exc.message} (code {exc.code})"
        except AcpConnectionClosed:
            return f"the agent exited before it answered {offer.method}"
        finally:
            self._in_flight.discard(key)
        state = self._agent.agent_state
        if isinstance(result, dict) and isinstance(result.get("configOptions"), list):
            state["config_options"] = result["configOptions"]  # always the full list
        _set_current(state, offer, key, value)
        await self._recorder.event(_changed(key, value, by, offer.current, offer.method))
        log.info("agent_setting_changed", session_id=self._recorder.session_id, key=key, by=by)
        return None

    async def on_update(self, update: Any) -> None:
        """A ``session/update`` of the agent: journal a change of mode or model it made.

        Cancellation: the change may be recorded but not stored."""
        if not isinstance(update, dict):
            return
        kind = update.get("sessionUpdate")
        state = self._agent.agent_state
        if kind == "current_mode_update":
            new = _id(update.get("currentModeId"))
            modes = state.get("modes")
            if new is None or not isinstance(modes, dict) or modes.get("currentModeId") == new:
                return
            previous = _id(modes.get("currentModeId"))
            modes["currentModeId"] = new
            # An agent with a mode config option says the change there too (claude does):
            # journaled once, from the config option.
            if "mode" not in self._in_flight and _config_option(state, "mode") is None:
                await self._recorder.event(_changed("mode", new, "agent", previous, None))
        elif kind == "config_option_update" and isinstance(update.get("configOptions"), list):
            before = {key: offer_of(state, key) for key in KEYS}
            state["config_options"] = update["configOptions"]
            for key in KEYS:
                after = offer_of(state, key)
                old = before[key]
                if (
                    key not in self._in_flight
                    and after is not None
                    and after.current is not None
                    and (old is None or old.current != after.current)
                ):
                    previous = old.current if old else None
                    await self._recorder.event(
                        _changed(key, after.current, "agent", previous, None)
                    )
        else:
            return
        await self._store()

    async def _store(self) -> None:
        await self._recorder.write(
            sessions.update, self._recorder.session_id, {"agent_state": self._agent.agent_state}
        )
