"""The restart policy of an agent process: pure arithmetic, no I/O, no clock.

Supervisor's model, with ``[supervision]``'s settings: an agent that exits
unexpectedly is restarted after an exponential backoff (``backoff_initial_s``,
doubling, at most ``backoff_max_s``); an agent that ran ``stable_after_s`` or
longer before it exited counts as a first failure again; past ``max_restarts``
failures in a row the agent is given up (the session fails).
"""

from __future__ import annotations

from dataclasses import dataclass

from mimird.config import SupervisionSection


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int
    backoff_initial_s: float
    backoff_max_s: float
    stable_after_s: float

    @classmethod
    def from_settings(cls, options: SupervisionSection) -> RestartPolicy:
        return cls(
            max_restarts=options.max_restarts,
            backoff_initial_s=options.backoff_initial_s,
            backoff_max_s=options.backoff_max_s,
            stable_after_s=options.stable_after_s,
        )

    def failures(self, attempt: int, ran_for: float) -> int:
        """The failures in a row after an exit: ``attempt`` is the number of the
        life that ended (0 for the first start, then the restart's number), and
        ``ran_for`` how long it ran. A life that ran stably starts the count again."""
        return 1 if ran_for >= self.stable_after_s else attempt + 1

    def next_delay(self, attempt: int, ran_for: float) -> float | None:
        """How long to wait before the next start after an exit of life ``attempt``
        that ran ``ran_for`` seconds; None when the agent is given up."""
        failures = self.failures(attempt, ran_for)
        if failures > self.max_restarts:
            return None
        return float(min(self.backoff_initial_s * 2 ** (failures - 1), self.backoff_max_s))
