"""``daemon.metrics``: the daemon's counters and gauges as Prometheus text."""

from __future__ import annotations

import trio

from mimird import metrics
from mimird.agents.manager import AgentManager
from mimird.api.methods import MethodTable
from mimird.journal import Journal
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions import records
from mimird.store import Store
from mimird.wire.metrics import DaemonMetrics
from mimird.wire.types import EmptyParams

_method = MethodTable()


class MetricsService:
    def __init__(
        self, store: Store, journal: Journal, agents: AgentManager, *, started: float
    ) -> None:
        """``started``: the daemon's start, on trio's clock."""
        self._store = store
        self._journal = journal
        self._agents = agents
        self._started = started
        # Session counts change only with writes: read them again when the store's
        # generation moves, not on every scrape.
        self._generation = -1
        self._by_status: dict[str, int] = {}

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "daemon.metrics",
        params=EmptyParams,
        result=DaemonMetrics,
        summary=(
            "Counters and gauges (sessions by status, turns, journal events and lag, "
            "subscribers, agent restarts, RPC calls and latency, memory, uptime) in the "
            "Prometheus text exposition format."
        ),
    )
    async def metrics(self, ctx: CallContext, params: EmptyParams) -> DaemonMetrics:
        generation = self._store.generation
        if generation != self._generation:
            self._by_status = await self._store.read(records.count_by_status)
            self._generation = generation
        journal = self._journal
        gauges = metrics.Gauges(
            sessions_by_status=self._by_status,
            events_journaled=journal.committed,
            journal_lag=journal.lag,
            subscribers=journal.subscribers,
            subscriber_catch_ups=journal.catch_ups,
            agents_running=self._agents.running,
            uptime_s=trio.current_time() - self._started,
            rss_bytes=metrics.rss_bytes(),
        )
        return DaemonMetrics(
            content_type=metrics.CONTENT_TYPE, text=metrics.exposition(journal.metrics, gauges)
        )
