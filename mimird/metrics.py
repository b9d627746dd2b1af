"""The daemon's counters, and their Prometheus text exposition (``daemon.metrics``).

One :class:`Metrics` per daemon, made by the daemon's root task and handed to the
owners that count (the journal, and through it the agent hosts' turns and
restarts; the RPC dispatcher). trio runs the daemon on one thread, so the
counters are plain ints and dicts: an increment costs a dict lookup, no lock.
Gauges (sessions by status, subscribers, agents running, journal lag, RSS,
uptime) are read when the metrics are asked for, by ``api/daemon.py``.

The text is the Prometheus exposition format, version 0.0.4: ``# HELP`` and
``# TYPE`` before each family, label values escaped (backslash, double quote,
newline). Every label value that an agent could choose (a stop reason) is
mapped onto a fixed set first, so that no agent can grow the number of series.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, get_args

from mimird.wire.types import SessionStatus

#: The content type of the exposition, as a scraper expects it.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds (seconds) of the RPC latency histogram's buckets; +Inf is implied.
LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: The session statuses counted (``deleted`` sessions are not).
SESSION_STATUSES: Final = tuple(s for s in get_args(SessionStatus) if s != "deleted")
#: The stop reasons ACP defines, and Mimir's own ``error``; any other is ``other``.
STOP_REASONS: Final = frozenset(
    {"end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled", "error", "other"}
)


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (not cumulative; summed when rendered), sum and count."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(LATENCY_BUCKETS, value)  # the first bound >= value
        if i < len(self.buckets):
            self.buckets[i] += 1
        self.total += value
        self.count += 1


@dataclass(slots=True)
class Metrics:
    """The counters of one daemon. Owners increment them where the thing happens."""

    turns_started: int = 0
    turns_ended: dict[str, int] = field(default_factory=dict)
    agent_restarts: dict[str, int] = field(default_factory=dict)
    rpc_calls: dict[tuple[str, str], int] = field(default_factory=dict)
    rpc_latency: dict[str, Histogram] = field(default_factory=dict)

    def turn_started(self) -> None:
        self.turns_started += 1

    def turn_ended(self, stop_reason: str) -> None:
        reason = stop_reason if stop_reason in STOP_REASONS else "other"  # bounded series
        self.turns_ended[reason] = self.turns_ended.get(reason, 0) + 1

    def agent_restarted(self, kind: str) -> None:
        self.agent_restarts[kind] = self.agent_restarts.get(kind, 0) + 1

    def rpc_called(self, method: str, outcome: str, seconds: float | None) -> None:
        """One call of ``method`` (a registered name) that ended with ``outcome``
        (``ok`` or an error kind); ``seconds`` is None when it never ran (bad params)."""
        key = (method, outcome)
        self.rpc_calls[key] = self.rpc_calls.get(key, 0) + 1
        if seconds is not None:
            histogram = self.rpc_latency.get(method)
            if histogram is None:
                histogram = self.rpc_latency[method] = Histogram()
            histogram.observe(seconds)


@dataclass(frozen=True, slots=True)
class Gauges:
    """What is read at the time of the scrape."""

    sessions_by_status: Mapping[str, int]
    events_journaled: int
    journal_lag: int
    subscribers: int
    subscriber_catch_ups: int
    agents_running: int
    uptime_s: float
    rss_bytes: int | None


def rss_bytes() -> int | None:
    """The process's resident set size, from /proc (None where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident * os.sysconf("SC_PAGE_SIZE")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Iterable[tuple[str, str]] = ()) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_number(value)}")


def exposition(metrics: Metrics, gauges: Gauges) -> str:
    """The Prometheus text (0.0.4) of ``metrics`` and ``gauges``, ending in a newline."""
    out = _Text()
    out.family("mimir_up", "gauge", "1 while mimird answers.")
    out.sample("mimir_up", 1)
    out.family("mimir_uptime_seconds", "gauge", "Seconds since mimird started.")
    out.sample("mimir_uptime_seconds", round(gauges.uptime_s, 3))
    if gauges.rss_bytes is not None:
        out.family("mimir_process_resident_memory_bytes", "gauge", "mimird's resident memory.")
        out.sample("mimir_process_resident_memory_bytes", gauges.rss_bytes)
    out.family("mimir_sessions", "gauge", "Sessions by status (deleted ones not counted).")
    # Every status, 0 included: a series that vanishes reads as missing data, not as none.
    by_status = dict.fromkeys(SESSION_STATUSES, 0) | dict(gauges.sessions_by_status)
    for status, count in sorted(by_status.items()):
        out.sample("mimir_sessions", count, [("status", status)])
    out.family("mimir_turns_started_total", "counter", "Turns started (prompts sent).")
    out.sample("mimir_turns_started_total", metrics.turns_started)
    out.family("mimir_turns_ended_total", "counter", "Turns ended, by stop reason.")
    for reason, count in sorted((dict.fromkeys(STOP_REASONS, 0) | metrics.turns_ended).items()):
        out.sample("mimir_turns_ended_total", count, [("stop_reason", reason)])
    out.family(
        "mimir_journal_events_total", "counter", "Events committed to the journal (rate() = /s)."
    )
    out.sample("mimir_journal_events_total", gauges.events_journaled)
    out.family(
        "mimir_journal_lag_events", "gauge", "Events submitted to the journal, not yet committed."
    )
    out.sample("mimir_journal_lag_events", gauges.journal_lag)
    out.family("mimir_subscribers", "gauge", "Open journal subscriptions.")
    out.sample("mimir_subscribers", gauges.subscribers)
    out.family(
        "mimir_subscriber_catch_ups_total",
        "counter",
        "Times a subscriber fell behind and was caught up from the database.",
    )
    out.sample("mimir_subscriber_catch_ups_total", gauges.subscriber_catch_ups)
    out.family("mimir_agents_running", "gauge", "Agent processes hosted.")
    out.sample("mimir_agents_running", gauges.agents_running)
    out.family("mimir_agent_restarts_total", "counter", "Agent restarts, by agent kind.")
    for kind, count in sorted(metrics.agent_restarts.items()):
        out.sample("mimir_agent_restarts_total", count, [("kind", kind)])
    out.family("mimir_rpc_calls_total", "counter", "JSON-RPC calls, by method and outcome.")
    for (method, outcome), count in sorted(metrics.rpc_calls.items()):
        out.sample("mimir_rpc_calls_total", count, [("method", method), ("outcome", outcome)])
    out.family(
        "mimir_rpc_duration_seconds", "histogram", "Time to answer a JSON-RPC call, by method."
    )
    for method, histogram in sorted(metrics.rpc_latency.items()):
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, histogram.buckets, strict=True):
            cumulative += count
            out.sample(
                "mimir_rpc_duration_seconds_bucket",
                cumulative,
                [("method", method), ("le", _number(bound))],
            )
        out.sample(
            "mimir_rpc_duration_seconds_bucket",
            histogram.count,
            [("method", method), ("le", "+Inf")],
        )
        out.sample("mimir_rpc_duration_seconds_sum", histogram.total, [("method", method)])
        out.sample("mimir_rpc_duration_seconds_count", histogram.count, [("method", method)])
    return "\n".join(out.lines) + "\n"
