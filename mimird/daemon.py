"""The daemon's root task: open every part in order, serve, shut down cleanly.

Order matters: the instance locks come first (a second daemon must fail before
it touches anything), then the store (migrations), then the listening socket;
``READY=1`` is sent only when the socket accepts and migrations ran.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
import trio

from mimird import __version__, memory, policy, systemd
from mimird.agents.manager import AgentManager
from mimird.api import (
    AgentProbeService,
    AgentService,
    AuditService,
    ClientRequestService,
    DaemonService,
    DbService,
    EventService,
    MetricsService,
    ModelModeService,
    PermissionService,
    ProjectService,
    PromptService,
    RunMergeService,
    RunService,
    SearchService,
    SessionService,
    TemplateService,
    WorktreeService,
    build_registry,
)
from mimird.api.transfer import TransferService
from mimird.config import Settings
from mimird.instance import (
    bind_unix_listener,
    check_activated_socket,
    ensure_private_dir,
    instance_lock,
)
from mimird.journal import Journal
from mimird.metrics import Metrics
from mimird.rpc.audit import AuditLog
from mimird.rpc.dispatch import Dispatcher
from mimird.rpc.server import CredentialsFn, RpcServer, peer_credentials
from mimird.runs import Runs
from mimird.store import Store, clean_stop
from mimird.timeutil import utc_now

log = structlog.get_logger("mimird")

#: On shutdown, calls already running get this long to finish (new ones are
#: answered "shutting down") before every connection is cancelled.
SHUTDOWN_GRACE_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Running:
    """What ``run_daemon`` reports once it is ready."""

    socket_path: Path
    database_path: Path
    pid: int


def _unlink_if_ours(path: Path, inode: int) -> None:
    """Remove the socket file at shutdown, unless another process replaced it."""
    with contextlib.suppress(FileNotFoundError):
        if os.lstat(path).st_ino == inode:
            path.unlink()


async def run_daemon(
    settings: Settings,
    shutdown: trio.Event,
    *,
    listen_sockets: list[socket.socket] | None = None,
    credentials: CredentialsFn = peer_credentials,
    watchdog_interval: float | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until ``shutdown`` is set. Raises :class:`StartupError` if it cannot start."""
    memory.configure()  # before the store's worker threads take arenas of their own
    notifier = systemd.Notifier(settings.notify_socket)
    started_at = utc_now()
    started = trio.current_time()
    counters = Metrics()
    socket_lock, database_lock = settings.lock_paths
    activated = bool(listen_sockets)
    with contextlib.ExitStack() as resources:
        resources.enter_context(instance_lock(database_lock, "database"))
        if not activated:
            # Check the socket's directory before the database is touched.
            ensure_private_dir(settings.socket_path.parent)
            resources.enter_context(instance_lock(socket_lock, "socket"))
        log.info(
            "daemon_starting",
            version=__version__,
            pid=os.getpid(),
            database=str(settings.database_path),
            encrypted=settings.db_key is not None,
            key_source=settings.db_key_source,
        )
        async with Store.open(
            settings.database_path,
            key=settings.db_key,
            options=settings.database,
            backup_dir=settings.backup_dir,
            clean_stop_file=settings.state_dir / clean_stop.RECORD_NAME,
        ) as store:
            if listen_sockets:
                listen_socket = listen_sockets[0]
                check_activated_socket(listen_socket)
                for extra in listen_sockets[1:]:
                    extra.close()
            else:
                listen_socket = bind_unix_listener(settings.socket_path)
                inode = os.lstat(settings.socket_path).st_ino
                resources.callback(_unlink_if_ours, settings.socket_path, inode)
            server: RpcServer | None = None
            daemon_service = DaemonService(
                settings=settings,
                store=store,
                started_at=started_at,
                socket_activated=activated,
                connections=lambda: 0 if server is None else server.connections,
            )
            session_service = SessionService(store, settings)
            worktree_service = WorktreeService(store, settings, session_service)
            await worktree_service.reconcile()
            async with (
                Journal.open(store, metrics=counters) as journal,
                AgentManager.open(store, journal, settings) as agents,
                Runs.open(store, settings, session_service, agents) as runs,
            ):
                session_service.agents = agents
                agents.git_limiter = session_service.workspaces.read_limiter
                await runs.recover()
                registry = build_registry(
                    daemon_service,
                    ProjectService(store, session_service),
                    session_service,
                    worktree_service,
                    AgentService(settings, agents),
                    PromptService(session_service, agents),
                    PermissionService(session_service, agents),
                    EventService(journal, session_service),
                    SearchService(store),
                    DbService(store, settings),
                    TemplateService(store, session_service),
                    ModelModeService(session_service, agents),
                    RunService(store, runs, journal),
                    RunMergeService(store, runs),
                    MetricsService(store, journal, agents, started=started),
                    AuditService(store),
                    AgentProbeService(settings),
                    client_requests=ClientRequestService(session_service, agents),
                )
                TransferService(store, settings).register(registry)
                audit = AuditLog(store, policy.mask_config, session_service.secrets_of_call)
                server = RpcServer(
                    listen_socket,
                    Dispatcher(registry, audit, counters),
                    settings.rpc,
                    credentials=credentials,
                )
                try:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(server.serve)
                        if watchdog_interval:
                            nursery.start_soon(systemd.run_watchdog, notifier, watchdog_interval)
                        notifier.notify(
                            READY=1,
                            STATUS=f"serving on {settings.socket_path}",
                            MAINPID=os.getpid(),
                        )
                        log.info(
                            "daemon_ready",
                            socket=str(settings.socket_path),
                            socket_activated=activated,
                            schema_revision=store.revision,
                            recovered_from_crash=store.recovered_from_crash,
                            methods=len(registry),
                        )
                        task_status.started(
                            Running(
                                socket_path=settings.socket_path,
                                database_path=settings.database_path,
                                pid=os.getpid(),
                            )
                        )
                        await shutdown.wait()
                        notifier.notify(STOPPING=1, STATUS="shutting down")
                        log.info("daemon_stopping", grace_s=SHUTDOWN_GRACE_S)
                        # No new work from here on; running turns are cancelled and
                        # agents stopped, so that their calls can answer within the grace.
                        await server.stop_accepting()
                        # Runs first: their members' turns cut short by the stop must not
                        # count as the members' outcome (the next start resumes them).
                        await runs.stop()
                        await agents.stop_all("daemon_shutdown")
                        await server.drain(SHUTDOWN_GRACE_S)
                        nursery.cancel_scope.cancel()
                finally:
                    with trio.move_on_after(1, shield=True):
                        await server.aclose()
                    with trio.move_on_after(1, shield=True):
                        await audit.flush()  # rows a full disk held back, if it has room now
    log.info("daemon_stopped")
