"""Permission requests: the tool policy decides first, and what it leaves to a
client is parked until one answers. One registry for every session
(``permission.list`` and ``permission.respond`` read it), and the flow of one
request (journaled; the session ``awaiting_permission`` while it is parked).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Final

import trio

from mimird.agents import tool_policy
from mimird.agents.acp import INVALID_PARAMS, AcpError
from mimird.agents.recorder import Recorder
from mimird.agents.tool_policy import Verdict, choose_option
from mimird.errors import InvalidParams, InvalidState, MimirError, NotFound
from mimird.policy import Effective
from mimird.timeutil import utc_now
from mimird.tool_rules import Decision
from mimird.wire import events
from mimird.wire.types import PermissionRequest
from mimird.workspaces import files

PERMISSION_KINDS: Final = ("allow_once", "allow_always", "reject_once", "reject_always")
#: The outcome an agent gets when its request is cancelled (by session.cancel or
#: because the turn ended).
CANCELLED: Final = {"outcome": "cancelled"}


@dataclass(eq=False)
class Permission:
    """A permission request from an agent, parked until a client answers it.

    ``options`` are the agent's, as it sent them: what its answer names.
    ``tool_call`` and ``shown_options`` are what anyone else sees (clients, the
    journal, error messages): the same with the session's secrets masked."""

    id: str
    session_id: str
    tool_call: Any
    options: list[dict[str, Any]]
    requested_at: str
    shown_options: list[dict[str, Any]]
    answered: trio.Event = field(default_factory=trio.Event)
    #: The ACP outcome sent to the agent once answered.
    outcome: dict[str, Any] | None = None
    answered_by: str | None = None
    #: The rule a client's answer wrote (``remember``), journaled with the answer.
    remembered: dict[str, Any] | None = None

    def to_wire(self) -> PermissionRequest:
        """The request as ``permission.list`` shows it: built from masked data only."""
        return PermissionRequest(
            id=self.id,
            session_id=self.session_id,
            tool_call=self.tool_call,
            options=self.shown_options,
            requested_at=self.requested_at,
        )


class PermissionRegistry:
    """Every pending permission request of every session, by id."""

    def __init__(self) -> None:
        self._pending: dict[str, Permission] = {}

    def add(self, permission: Permission) -> None:
        self._pending[permission.id] = permission

    def remove(self, permission: Permission) -> None:
        self._pending.pop(permission.id, None)

    def of_session(self, session_id: str) -> list[Permission]:
        return [p for p in self._pending.values() if p.session_id == session_id]

    def unanswered(self, session_id: str | None = None) -> list[Permission]:
        """Requests still waiting for an answer (of one session, or all), by id."""
        found = [
            p
            for p in self._pending.values()
            if (session_id is None or p.session_id == session_id) and not p.answered.is_set()
        ]
        return sorted(found, key=lambda p: p.id)

    def find(self, permission_id: str) -> Permission:
        permission = self._pending.get(permission_id)
        if permission is None:
            raise NotFound(
                f"no pending permission request {permission_id!r} (it may have been answered "
                "or withdrawn already)",
                field="permission",
                id=permission_id,
            )
        return permission

    def cancel_session(self, session_id: str, by: str) -> None:
        """Answer every request of a session ``cancelled``."""
        for permission in self.of_session(session_id):
            answer(permission, dict(CANCELLED), by)


def answer(permission: Permission, outcome: dict[str, Any], by: str) -> bool:
    """Give ``permission`` its outcome; False if it had one already (the first wins)."""
    if permission.answered.is_set():
        return False
    permission.outcome = outcome
    permission.answered_by = by
    permission.answered.set()
    return True


def respond(permission: Permission, option_id: str | None, kind: str | None, by: str) -> str:
    """A client's answer, by option id or by kind (``*_always`` falls back to
    ``*_once``); returns the option id chosen, as the client was shown it. An id is
    looked up as the agent sent it, then as shown (a masked id names the option it
    stands for when only one option has it)."""
    chosen = pick(permission, option_id, kind)
    if not answer(permission, {"outcome": "selected", "optionId": chosen.get("optionId")}, by):
        raise InvalidState(
            f"permission {permission.id} was already answered ({permission.answered_by})",
            field="permission",
            id=permission.id,
        )
    return str(_shown_id(permission, chosen))


def pick(permission: Permission, option_id: str | None, kind: str | None) -> dict[str, Any]:
    """The agent's option a client's answer names (see :func:`respond`)."""
    options = permission.options
    chosen: dict[str, Any] | None = None
    if option_id is not None:
        chosen = next((o for o in options if o.get("optionId") == option_id), None)
        if chosen is None:
            masked = [
                o
                for o, s in zip(options, permission.shown_options, strict=True)
                if s.get("optionId") == option_id
            ]
            chosen = masked[0] if len(masked) == 1 else None
        if chosen is None:
            ids = ", ".join(str(o.get("optionId")) for o in permission.shown_options)
            raise InvalidParams(
                f"permission {permission.id} has no option {option_id!r}; options: {ids}",
                field="option_id",
            )
    elif kind is not None:
        chosen = next((o for o in options if o.get("kind") == kind), None)
        if chosen is None and kind.endswith("_always"):
            chosen = next(
                (o for o in options if o.get("kind") == kind.replace("always", "once")), None
            )
        if chosen is None:
            kinds = ", ".join(sorted({str(o.get("kind")) for o in permission.shown_options}))
            raise InvalidParams(
                f"permission {permission.id} offers no {kind} option; kinds offered: {kinds}",
                field="kind",
            )
    if chosen is None:
        raise InvalidParams("give option_id or kind", field="kind")
    return chosen


@dataclass(frozen=True, slots=True)
class PolicyView:
    """What the session's tool policy says about one request, and how long a parked
    request may wait (``timeout_s``, None: for ever) before ``timeout_default``."""

    verdict: Verdict | None
    timeout_s: float | None = None
    timeout_default: str = "deny"
    #: Why there is no verdict (the config could not be read), for the journal.
    reason: str | None = None


#: Runs a function on the pinned workspace, bounded (``ClientMethods.sandboxed``).
Sandboxed = Callable[[Callable[[files.Workspace, files.Deadline], Any], str], Awaitable[Any]]


async def policy_view(
    config: Callable[[], Awaitable[Effective]] | None, params: Any, sandboxed: Sandboxed
) -> PolicyView | None:
    """What the session's tool policy says about a permission request, read from
    the config as it is now (its paths resolved in the pinned workspace); None when
    there is no config to read.

    Cancellation: nothing happened (a thread resolving paths finishes unseen)."""
    if config is None:
        return None
    tool_call = params.get("toolCall") if isinstance(params, dict) else None
    try:
        effective = await config()
        values, sources = effective.values, effective.sources

        def decide(workspace: files.Workspace, _deadline: files.Deadline) -> Any:
            def resolve(path: str) -> PurePosixPath | None:
                try:
                    return workspace.confine(path)
                except MimirError:
                    return None

            return tool_policy.decide(values["tool_policy"], sources, tool_call, resolve)

        verdict = await sandboxed(decide, "checking the tool policy")
    except (MimirError, AcpError) as exc:
        reason = exc.message if isinstance(exc, MimirError) else str(exc)
        return PolicyView(None, reason=f"the tool policy could not decide: {reason}")
    return PolicyView(
        verdict,
        timeout_s=values["permission_timeout_s"],
        timeout_default=values["permission_timeout_default"],
    )


def _selected(option: dict[str, Any] | None) -> dict[str, Any]:
    if option is None:
        return dict(CANCELLED)
    return {"outcome": "selected", "optionId": option.get("optionId")}


async def park(
    registry: PermissionRegistry,
    recorder: Recorder,
    permission_id: str,
    params: Any,
    *,
    cancelled: Callable[[], bool],
    policy: PolicyView | None = None,
) -> dict[str, Any]:
    """Serve ``session/request_permission``. The tool policy's ``allow``/``deny`` is
    answered at once with the agent's option of that kind (``permission_requested``
    and ``permission_decided`` journaled, the session stays ``running``); a deny to
    an agent that offers no reject option is answered ``cancelled``. Otherwise
    (``ask``, or an allow with no allow option): journal the request, move the
    session to ``awaiting_permission``, wait for the answer, at most
    ``policy.timeout_s`` (then answer ``policy.timeout_default``, by ``timeout``),
    and return it (ACP's result). ``cancelled()`` says whether the turn is being
    cancelled: then the request is answered ``cancelled`` at once.

    Cancellation: (the agent withdrew it with ``$/cancel_request``, or the agent's
    connection ended) the request leaves the registry, ``permission_answered`` is
    journaled with outcome ``withdrawn`` (shielded), and the session goes back to
    ``running`` unless other requests of it still wait."""
    if not isinstance(params, dict) or not isinstance(params.get("options"), list):
        raise AcpError(INVALID_PARAMS, "session/request_permission needs options")
    options = [o for o in params["options"] if isinstance(o, dict)]
    session_id = recorder.session_id
    permission = Permission(
        id=permission_id,
        session_id=session_id,
        # What clients are shown (permission.list) and the journal keeps: secrets masked.
        tool_call=recorder.scrub_value(params.get("toolCall")),
        options=options,
        requested_at=utc_now(),
        shown_options=[recorder.scrub_value(option) for option in options],
    )
    title = permission.tool_call.get("title") if isinstance(permission.tool_call, dict) else None
    # A request of a turn being cancelled is answered cancelled (below), never allowed.
    verdict = policy.verdict if policy is not None and not cancelled() else None
    asked: dict[str, Any] | None = None
    if policy is not None and policy.verdict is None:
        asked = {"decision": "ask", "rule": None, "reason": policy.reason}
    elif verdict is not None:
        option = choose_option(options, verdict.decision, verdict.always)
        reason = verdict.reason
        if verdict.decision == "allow" and option is None:
            reason = "the policy allows it, but the agent offered no allow_once/allow_always option"
        elif verdict.decision != "ask":
            return await _answer_at_once(recorder, permission, verdict, option, title)
        asked = {"decision": "ask", "rule": verdict.rule.to_wire(), "reason": reason}
    # Listed before it is journaled, so that a client that sees the event can answer it
    # at once; an answer in between is journaled after the request all the same (below).
    registry.add(permission)
    try:
        await recorder.move(
            "awaiting_permission",
            only_from=frozenset({"running"}),
            reason="permission_requested",
            events=(
                events.PermissionRequested(
                    permission=permission.id,
                    tool_call=permission.tool_call,
                    options=permission.shown_options,
                    title=title,
                    policy=asked,
                ),
            ),
        )
        if cancelled():
            answer(permission, dict(CANCELLED), "cancelled")
        timeout_s = policy.timeout_s if policy is not None else None
        with trio.move_on_after(math.inf if timeout_s is None else timeout_s):
            await permission.answered.wait()
        if not permission.answered.is_set() and policy is not None:
            default: Decision = "allow" if policy.timeout_default == "allow" else "deny"
            option = choose_option(options, default, False)
            answer(permission, _selected(None if option is None else dict(option)), "timeout")
        return {"outcome": permission.outcome}
    finally:
        registry.remove(permission)
        with trio.CancelScope(shield=True):
            outcome = permission.outcome or {"outcome": "withdrawn"}
            await recorder.move(
                "running",
                only_from=frozenset({"awaiting_permission"})
                if not registry.of_session(session_id)
                else frozenset(),
                reason="permission_answered",
                events=(
                    events.PermissionAnswered(
                        permission=permission.id,
                        outcome=outcome.get("outcome"),
                        option_id=outcome.get("optionId"),
                        by=permission.answered_by or "agent_withdrew",
                        remembered=permission.remembered,
                    ),
                ),
            )


async def _answer_at_once(
    recorder: Recorder,
    permission: Permission,
    verdict: Verdict,
    option: Mapping[str, Any] | None,
    title: Any,
) -> dict[str, Any]:
    """The policy's allow or deny: journaled (request and decision, in one write,
    the status left as it is) before the agent gets it. Never parked, so no client
    can answer it.

    Cancellation: before the write, nothing is journaled and the agent gets no
    answer; the write itself is shielded."""
    outcome = _selected(None if option is None else dict(option))
    requested = events.PermissionRequested(
        permission=permission.id,
        tool_call=permission.tool_call,
        options=permission.shown_options,
        title=title,
        policy={"decision": verdict.decision, "rule": verdict.rule.to_wire()},
    )
    decided = events.PermissionDecided(
        permission=permission.id,
        decision=verdict.decision,
        by="policy",
        rule=verdict.rule.to_wire(),
        option_id=_shown_id(permission, option),
        outcome=outcome["outcome"],
        reason=verdict.reason
        if option is not None
        else "the agent offered no reject option; answered cancelled",
    )
    await recorder.move("running", only_from=frozenset(), events=(requested, decided))
    return {"outcome": outcome}


def _shown_id(permission: Permission, option: Any) -> Any:
    """The id of ``option`` (one of the agent's) as clients are shown it."""
    for sent, shown in zip(permission.options, permission.shown_options, strict=True):
        if sent is option:
            return shown.get("optionId")
    return None
