"""Ids: strictly increasing, and ids made together differ in their first 10 characters
(the millisecond, which mimirctl shows), within a bounded lead over the clock."""

from __future__ import annotations

import threading
import time

import pytest

from mimird import ids
from mimird.ids import MAX_AHEAD_MS, IdGenerator

SHOWN = 10  # mimirctl.render.SHORT_ID


def _ms(value: str) -> int:
    number = 0
    for char in value[:SHOWN]:
        number = number * 32 + "0123456789abcdefghjkmnpqrstvwxyz".index(char)
    return number


def test_ids_made_together_differ_in_what_mimirctl_shows() -> None:
    generator = IdGenerator()
    made = [generator.new() for _ in range(200)]  # far faster than one a millisecond
    assert made == sorted(made)
    assert len({m[:SHOWN] for m in made}) == len(made)
    assert all(ids.is_id(m) for m in made)


def test_a_burst_leads_the_clock_by_at_most_max_ahead_then_counts_up() -> None:
    generator = IdGenerator()
    made = [generator.new() for _ in range(3 * MAX_AHEAD_MS)]
    now_ms = time.time_ns() // 1_000_000
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert _ms(made[-1]) <= now_ms + MAX_AHEAD_MS
    # Past the lead, ids share a millisecond and still increase.
    assert len({m[:SHOWN] for m in made}) < len(made)


def test_a_clock_stepping_back_never_inverts_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = IdGenerator()
    clock = [10_000_000 * 1_000_000]
    monkeypatch.setattr(time, "time_ns", lambda: clock[0])
    first = generator.new()
    clock[0] -= 5_000 * 1_000_000  # five seconds back
    second = generator.new()
    clock[0] -= 10 * 1_000_000
    third = generator.new()
    assert first < second < third


def test_threads_get_distinct_increasing_ids() -> None:
    generator = IdGenerator()
    found: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(generator.new() for _ in range(300))

    threads = [threading.Thread(target=make, args=(f,)) for f in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for made in found:
        assert made == sorted(made)
    every = [m for made in found for m in made]
    assert len(set(every)) == len(every)
