"""``daemon.status`` and ``rpc.discover``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from mimird import __version__, projects
from mimird.api.methods import MethodTable
from mimird.config import Settings
from mimird.rpc.audit import CLIENT_KEY
from mimird.rpc.openrpc import openrpc_document
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions import usage
from mimird.store import Store
from mimird.wire.protocol import PROTOCOL_VERSION
from mimird.wire.types import (
    DaemonCounts,
    DaemonPaths,
    DaemonStatus,
    DaemonStatusParams,
    EmptyParams,
)
from mimird.wire.usage import Usage

_method = MethodTable()
SECONDS_PER_DAY: Final = 86_400


class DaemonService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        started_at: str,
        socket_activated: bool,
        connections: Callable[[], int],
    ) -> None:
        self._store = store
        self._started_at = started_at
        self._started = time.monotonic()
        self._pid = os.getpid()  # a syscall per call otherwise (glibc caches no pid)
        self._socket_activated = socket_activated
        self._connections = connections
        self._registry: Registry | None = None
        self._openrpc: dict[str, Any] | None = None
        # Counts and the database size change only with writes: recompute them
        # when the store's generation moves, not on every call.
        self._counts_generation = -1
        self._counts = (0, 0, 0)
        # Today's usage changes with writes and at midnight UTC: read it again then
        # (a POSIX day is 86,400 s), not on every call (utc_now() alone costs µs).
        self._usage_generation = -1
        self._day_ends_at = 0.0
        self._usage_today = Usage()
        self._size_bytes = 0
        self._paths = DaemonPaths(
            socket=str(settings.socket_path),
            database=str(settings.database_path),
            config=None if settings.config_path is None else str(settings.config_path),
            worktrees=str(settings.worktrees_dir),
            state=str(settings.state_dir),
        )

    def register(self, registry: Registry) -> None:
        self._registry = registry
        _method.register(self, registry)

    @_method(
        "daemon.status",
        params=DaemonStatusParams,
        result=DaemonStatus,
        summary=(
            "Version, protocol version, pid, uptime, paths, database size, counts and the "
            "usage of the turns that ended today (UTC)."
        ),
    )
    async def status(self, ctx: CallContext, params: DaemonStatusParams) -> DaemonStatus:
        if params.client is not msgspec.UNSET and ctx.connection is not None:
            ctx.connection.state[CLIENT_KEY] = params.client
        generation = self._store.generation
        if generation != self._counts_generation:
            self._counts = await self._store.read(projects.counts)
            self._size_bytes = self._store.size_bytes()
            self._counts_generation = generation
        if generation != self._usage_generation or time.time() >= self._day_ends_at:
            now = time.time()
            today = time.strftime("%Y-%m-%d", time.gmtime(now))
            self._usage_today = await self._store.read(usage.of_day, today)
            self._usage_generation = generation
            self._day_ends_at = (now // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
        active, archived, total_sessions = self._counts
        return DaemonStatus(
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            pid=self._pid,
            started_at=self._started_at,
            uptime_s=round(time.monotonic() - self._started, 3),
            socket_activated=self._socket_activated,
            database_size_bytes=self._size_bytes,
            database_encrypted=self._store.encrypted,
            schema_revision=self._store.revision,
            paths=self._paths,
            counts=DaemonCounts(
                projects=active,
                archived_projects=archived,
                sessions=total_sessions,
                connections=self._connections(),
            ),
            usage_today=self._usage_today,
        )

    @_method(
        "rpc.discover",
        params=EmptyParams,
        result=dict[str, Any],
        summary="The OpenRPC document describing every method, generated from its types.",
    )
    async def discover(self, ctx: CallContext, params: EmptyParams) -> dict[str, Any]:
        if self._openrpc is None:
            assert self._registry is not None
            self._openrpc = openrpc_document(self._registry, __version__)
        return self._openrpc
