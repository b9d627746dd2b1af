"""The restart policy of agent processes, and the supervision loop that follows it,
on trio's virtual clock: exact delays, no real sleeps."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mimird.agents.host import supervise
from mimird.agents.restart import RestartPolicy
from mimird.config import SupervisionSection

POLICY = RestartPolicy(
    max_restarts=3, backoff_initial_s=1.0, backoff_max_s=5.0, stable_after_s=60.0
)


def test_the_policy_is_made_from_the_supervision_settings() -> None:
    options = SupervisionSection()
    policy = RestartPolicy.from_settings(options)
    assert policy == RestartPolicy(
        max_restarts=options.max_restarts,
        backoff_initial_s=options.backoff_initial_s,
        backoff_max_s=options.backoff_max_s,
        stable_after_s=options.stable_after_s,
    )


def test_quick_failures_wait_twice_as_long_each_time_up_to_the_max() -> None:
    assert [POLICY.next_delay(attempt, 0.1) for attempt in range(3)] == [1.0, 2.0, 4.0]
    wide = RestartPolicy(
        max_restarts=10, backoff_initial_s=1.0, backoff_max_s=5.0, stable_after_s=60
    )
    assert [wide.next_delay(attempt, 0.1) for attempt in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_past_max_restarts_failures_in_a_row_the_agent_is_given_up() -> None:
    assert POLICY.failures(3, 0.1) == 4
    assert POLICY.next_delay(3, 0.1) is None
    never = RestartPolicy(
        max_restarts=0, backoff_initial_s=1.0, backoff_max_s=5.0, stable_after_s=60
    )
    assert never.next_delay(0, 0.1) is None


def test_an_agent_that_ran_stably_starts_again_with_a_clean_count() -> None:
    assert POLICY.failures(3, 60.0) == 1
    assert POLICY.next_delay(3, 60.0) == 1.0
    assert POLICY.next_delay(2, 59.9) == 4.0


class Lives:
    """Lives of an agent that each run ``ran_for[i]`` seconds of trio's clock."""

    def __init__(self, ran_for: list[float]) -> None:
        self.ran_for = ran_for
        self.starts: list[tuple[int, float]] = []
        self.restarts: list[tuple[int, float, str]] = []
        self.stop = False

    async def life(self, attempt: int) -> str:
        self.starts.append((attempt, trio.current_time()))
        await trio.sleep(self.ran_for[len(self.starts) - 1])
        return f"life {len(self.starts)} ended"

    async def restart(self, attempt: int, delay: float, reason: str) -> None:
        self.restarts.append((attempt, delay, reason))
        await trio.sleep(delay)


async def test_supervision_restarts_after_the_policys_delays_then_gives_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lives = Lives([0.5, 0.5, 0.5, 0.5])
    began = trio.current_time()
    given_up = await supervise(
        lives.life, POLICY, stopping=lambda: lives.stop, restart=lives.restart
    )
    assert given_up == (4, "life 4 ended")
    assert [(a, t - began) for a, t in lives.starts] == [(0, 0.0), (1, 1.5), (2, 4.0), (3, 8.5)]
    assert [(a, d) for a, d, _ in lives.restarts] == [(1, 1.0), (2, 2.0), (3, 4.0)]


async def test_supervision_counts_again_after_a_stable_life(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lives = Lives([0.5, 0.5, 60.0, 0.5, 0.5, 0.5])
    given_up = await supervise(
        lives.life, POLICY, stopping=lambda: lives.stop, restart=lives.restart
    )
    assert given_up == (4, "life 6 ended")
    assert [d for _, d, _ in lives.restarts] == [1.0, 2.0, 1.0, 2.0, 4.0]
    assert [a for a, _ in lives.starts] == [0, 1, 2, 1, 2, 3]


async def test_supervision_ends_without_a_restart_once_stopping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lives = Lives([0.5, 0.5])

    async def life(attempt: int) -> str:
        reason = await lives.life(attempt)
        lives.stop = True
        return reason

    assert await supervise(life, POLICY, stopping=lambda: lives.stop, restart=lives.restart) is None
    assert len(lives.starts) == 1
    assert lives.restarts == []


@pytest.mark.parametrize("ran_for", [0.0, 59.999])
def test_a_life_shorter_than_stable_after_counts_as_another_failure(ran_for: float) -> None:
    assert POLICY.failures(1, ran_for) == 2
