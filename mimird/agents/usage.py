"""Usage as agents report it, normalised: tokens and cost from ACP ``usage_update``
notifications, the ``session/prompt`` result's ``usage``, and the known ``_meta``
shapes of the presets. Agents are untrusted: a number that is not a non-negative
whole number of tokens (or amount of USD) below a sane maximum is ignored, and so
is anything else of a shape not known here; nothing an agent sends fails a turn.

What each agent sends (opencode 1.18 checked against the fake LLM; the Rust
zed-industries/codex-acp read from its source; claude-agent-acp as
shared/reference/acp.md describes it, not run here):

- ``usage_update`` ``{used, size, cost?: {amount, currency}}``: ``used`` is the
  context's size in tokens (not tokens spent), ``cost`` the agent's *cumulative*
  cost of its ACP session (opencode: ``{"amount": 0, "currency": "USD"}`` with a
  model that has no price; claude-agent-acp; codex-acp sends no cost, only
  ``used`` from its last token count).
- ``session/prompt`` result ``usage`` ``{totalTokens, inputTokens, outputTokens,
  thoughtTokens?, cachedReadTokens?, cachedWriteTokens?}`` (ACP, unstable): the
  turn's tokens (opencode, claude-agent-acp; not the Rust codex-acp, whose turns
  are counted by their context size alone).
- Gemini CLI: the result's ``_meta.quota.token_count {input_tokens, output_tokens}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from mimird.wire.usage import Usage

#: A token count above this in one report is garbage (a turn of a trillion tokens).
MAX_TOKENS: Final = 10**12
#: A cost above this (USD) in one report is garbage.
MAX_COST_USD: Final = 1_000_000.0

#: Usage fields and the names agents give them (ACP's camelCase, then snake_case forms).
_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "input_tokens": ("inputTokens", "input_tokens", "promptTokens", "prompt_tokens"),
    "output_tokens": ("outputTokens", "output_tokens", "completionTokens", "completion_tokens"),
    "thought_tokens": ("thoughtTokens", "thought_tokens", "reasoningTokens", "reasoning_tokens"),
    "total_tokens": ("totalTokens", "total_tokens"),
}
_CACHED: Final = (
    "cachedReadTokens",
    "cachedWriteTokens",
    "cached_read_tokens",
    "cached_write_tokens",
    "cachedTokens",
    "cached_tokens",
)


def tokens(value: Any) -> int | None:
    """A token count as an agent may send it (an int, or a float holding one), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value <= MAX_TOKENS else None


def dollars(value: Any) -> float | None:
    """An amount in USD as an agent may send it, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= MAX_COST_USD else None


def _first(data: Mapping[str, Any], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in data:
            return tokens(data[name])
    return None


def of_counts(data: Any) -> Usage | None:
    """A usage object of token counts (ACP's ``Usage`` or a snake_case form); None
    when it holds no valid count."""
    if not isinstance(data, Mapping):
        return None
    found = {field: _first(data, names) for field, names in _NAMES.items()}
    cached = [count for name in _CACHED if (count := tokens(data.get(name))) is not None]
    if all(count is None for count in found.values()) and not cached:
        return None
    counts = {field: count or 0 for field, count in found.items()}
    if found["total_tokens"] is None:
        counts["total_tokens"] = min(
            MAX_TOKENS, counts["input_tokens"] + counts["output_tokens"] + counts["thought_tokens"]
        )
    return Usage(**counts, cached_tokens=min(MAX_TOKENS, sum(cached)), turns=1)


def of_prompt_result(result: Any) -> Usage | None:
    """The turn's usage from a ``session/prompt`` result: its ``usage``, else a
    known ``_meta`` shape."""
    if not isinstance(result, Mapping):
        return None
    found = of_counts(result.get("usage"))
    if found is not None:
        return found
    meta = result.get("_meta")
    quota = meta.get("quota") if isinstance(meta, Mapping) else None
    if isinstance(quota, Mapping):  # Gemini CLI
        return of_counts(quota.get("token_count"))
    return None


def of_update(update: Any) -> tuple[int | None, float | None]:
    """(context tokens, cumulative cost in USD) of a ``usage_update``; None where
    absent, invalid, or (cost) not in USD."""
    if not isinstance(update, Mapping) or update.get("sessionUpdate") != "usage_update":
        return None, None
    used = tokens(update.get("used"))
    cost = update.get("cost")
    amount: float | None = None
    if isinstance(cost, Mapping):
        currency = cost.get("currency", "USD")
        if isinstance(currency, str) and currency.upper() == "USD":
            amount = dollars(cost.get("amount"))
    return used, amount


class Meter:
    """What the current turn of one agent used so far, from its notifications.

    The cost an agent reports is cumulative: a turn's cost is how much it grew
    during the turn (a report lower than the last one is a counter that started
    again, and counts whole). Cost reported between turns goes to the next turn."""

    def __init__(self) -> None:
        #: The last cumulative cost the agent reported (None: none yet).
        self.reported_cost: float | None = None
        self._cost = 0.0
        self._context = 0

    def on_update(self, update: Any) -> bool:
        """Count a ``session/update``'s usage; True if it was a usage update with news."""
        used, cost = of_update(update)
        if used is not None:
            self._context = max(self._context, used)
        if cost is not None:
            last = self.reported_cost
            grown = cost - last if last is not None and cost >= last else cost
            self._cost = min(MAX_COST_USD, self._cost + grown)
            self.reported_cost = cost
        return used is not None or cost is not None

    def so_far(self) -> Usage:
        """The turn's usage as known before its end (a lower bound)."""
        return Usage(total_tokens=self._context, cost_usd=self._cost, turns=1)

    def end_turn(self, reported: Usage | None) -> Usage | None:
        """The turn's usage (None when nothing was reported), and a new turn begins."""
        context, cost = self._context, self._cost
        self._context, self._cost = 0, 0.0
        if reported is None and not context and not cost:
            return None
        usage = reported or Usage(turns=1)
        usage.total_tokens = max(usage.total_tokens, context)
        usage.cost_usd = round(min(MAX_COST_USD, usage.cost_usd + cost), 9)
        return usage

    def between_turns(self) -> None:
        """Forget the context size seen outside a turn (cost stays for the next turn)."""
        self._context = 0


def added(a: Usage, b: Usage) -> Usage:
    """The sum of two usages."""
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
        thought_tokens=a.thought_tokens + b.thought_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
        cost_usd=a.cost_usd + b.cost_usd,
        turns=a.turns + b.turns,
    )
