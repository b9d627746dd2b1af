"""Budgets that stop work: a session's usage against the budgets of its effective
configuration (``token_budget``, ``cost_budget_usd``), a warning at
``budget_warn_ratio`` of each, and the turn's ``turn_timeout_s``.

What counts: the session's own usage (all its turns, plus what the running turn
used so far) against the effective budget, whichever layer set it. A budget in
the ``[defaults]`` or a project's config is therefore a budget *per session*.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import structlog

from mimird import policy
from mimird.agents.recorder import Recorder
from mimird.agents.usage import Meter, added
from mimird.errors import BudgetExceeded
from mimird.sessions import usage as stored
from mimird.wire import events
from mimird.wire.usage import Usage

log = structlog.get_logger("mimird.agents.budget")

#: The budget keys, and what their figures count.
BUDGETS: Final = {"token_budget": "tokens", "cost_budget_usd": "USD"}


@dataclass(frozen=True, slots=True)
class Reached:
    """A budget and how much of it was used."""

    budget: str
    limit: float
    used: float
    layer: str

    def event(self) -> events.BudgetExceeded:
        return events.BudgetExceeded(
            budget=self.budget, limit=self.limit, used=self.used, layer=self.layer
        )


def _used(budget: str, usage: Usage) -> float:
    return usage.total_tokens if budget == "token_budget" else round(usage.cost_usd, 6)


def figures(effective: policy.Effective, usage: Usage) -> list[Reached]:
    """Each budget that is set, with what ``usage`` used of it."""
    return [
        Reached(key, limit, _used(key, usage), effective.sources[key])
        for key in BUDGETS
        if (limit := effective.values[key]) is not None
    ]


def reached(effective: policy.Effective, usage: Usage) -> Reached | None:
    """The first budget ``usage`` has reached, if any."""
    return next((f for f in figures(effective, usage) if f.used >= f.limit), None)


def _amount(budget: str, value: float) -> str:
    return f"{value:,.0f} tokens" if budget == "token_budget" else f"{value:,.4f} USD"


def refusal(session_id: str, project: str, what: Reached) -> BudgetExceeded:
    """The error that refuses a prompt: the limit, the usage, the layer, how to raise it."""
    where = {
        "session": f"mimirctl session update {session_id} --config '{{...}}'",
        "project": f"mimirctl project update {project} --config '{{...}}'",
    }.get(what.layer, "the [defaults] of the daemon's config file, or a session's config")
    return BudgetExceeded(
        f"session {session_id} reached its {what.budget}: {_amount(what.budget, what.used)} "
        f"used of {_amount(what.budget, what.limit)} (set by the {what.layer} config); "
        f"raise it ({where} with a higher {what.budget}, or null for no limit), then "
        f"'mimirctl resume {session_id}'",
        field=f"config.{what.budget}",
        id=session_id,
        detail={
            "budget": what.budget,
            "limit": what.limit,
            "used": what.used,
            "layer": what.layer,
        },
    )


class Guard:
    """The budgets of one agent's session, checked as its turns use them."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self.meter = Meter()
        #: The session's effective configuration, fresh (set by the agent manager).
        self.effective: Callable[[], Awaitable[policy.Effective]] | None = None
        self._config: policy.Effective | None = None
        self._before = Usage()
        self._warned: set[str] | None = None

    async def _effective(self) -> policy.Effective:
        if self.effective is None:
            return policy.effective([])
        return await self.effective()

    async def agent_started(self, loaded: bool) -> None:
        """The agent (re)started its ACP session: a loaded one reports its cost on from
        where the last turn left it, a new one from 0.

        Cancellation: the cost then counts as before the start."""
        baseline: float | None = None
        if loaded:
            store, session_id = self._recorder.store, self._recorder.session_id
            baseline = await store.read(stored.last_reported_cost, session_id)
        # What the agent reported while it loaded (its cost so far) is not new: a new
        # meter, without an await from here, so no report falls in between.
        self.meter = Meter()
        self.meter.reported_cost = baseline

    async def start_turn(self) -> float | None:
        """Read the budgets and the session's usage for the turn; its timeout.

        Cancellation: nothing changed."""
        store, session_id = self._recorder.store, self._recorder.session_id
        self._config = await self._effective()
        self._before = await store.read(stored.of_session, session_id)
        if self._warned is None:
            self._warned = await store.read(stored.warned, session_id)
        timeout: float | None = self._config.values["turn_timeout_s"]
        return timeout

    async def check(self, usage: Usage) -> Reached | None:
        """Journal a warning for each budget newly past its warn ratio; the budget
        reached, if any, with ``usage`` the session's whole usage.

        Cancellation: a warning was submitted or not (and is journaled again later)."""
        config = self._config
        if config is None:
            return None
        warned = self._warned if self._warned is not None else set()
        ratio = config.values["budget_warn_ratio"]
        for figure in figures(config, usage):
            if figure.budget not in warned and figure.used >= ratio * figure.limit:
                warned.add(figure.budget)
                log.info(
                    "budget_warning", session_id=self._recorder.session_id, budget=figure.budget
                )
                await self._recorder.event(
                    events.BudgetWarning(
                        budget=figure.budget,
                        limit=figure.limit,
                        used=figure.used,
                        layer=figure.layer,
                        ratio=ratio,
                    )
                )
        self._warned = warned
        return reached(config, usage)

    async def during_turn(self) -> Reached | None:
        """The budget the running turn has reached so far, if any.

        Cancellation: as :meth:`check`."""
        return await self.check(added(self._before, self.meter.so_far()))

    async def after_turn(self) -> Reached | None:
        """Check the session's stored usage (the turn's included) against fresh budgets;
        a budget reached moves the session to ``budget_exceeded`` (journaled).

        Cancellation: the move is made (shielded) or not."""
        store, session_id = self._recorder.store, self._recorder.session_id
        self._config = await self._effective()
        found = await self.check(await store.read(stored.of_session, session_id))
        if found is not None:
            log.warning("budget_exceeded", session_id=session_id, budget=found.budget)
            await self._recorder.move(
                "budget_exceeded",
                only_from=frozenset({"idle"}),
                reason=found.budget,
                events=(found.event(),),
            )
        return found
