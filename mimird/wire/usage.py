"""Usage as Mimir counts it: tokens and cost, per turn and summed (per session,
project and day). Standard library and msgspec only (``mimirctl`` imports it)."""

from __future__ import annotations

import msgspec


class Usage(msgspec.Struct, kw_only=True):
    """Tokens and cost of one turn, or of many summed (``turns`` of them).

    ``total_tokens`` is the agent's own total where it reports one, else the sum of
    input, output and thought tokens, and never less than the largest context size
    the agent reported during the turn. ``cost_usd`` comes from the cumulative cost
    in the agent's ``usage_update`` notifications (the part of it the turn added)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    thought_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    turns: int = 0
