"""The methods themselves, thin, grouped by noun. ``build_registry`` is the one
place that decides which methods exist."""

from __future__ import annotations

from mimird.api.agents import AgentService
from mimird.api.daemon import DaemonService
from mimird.api.db import DbService
from mimird.api.events import EventService
from mimird.api.projects import ProjectService
from mimird.api.search import SearchService
from mimird.api.sessions import SessionService
from mimird.api.turns import TurnService
from mimird.api.worktrees import WorktreeService
from mimird.rpc.registry import Registry


def build_registry(
    daemon: DaemonService,
    projects: ProjectService,
    sessions: SessionService,
    worktrees: WorktreeService,
    agents: AgentService,
    turns: TurnService,
    events: EventService,
    search: SearchService,
    db: DbService,
) -> Registry:
    registry = Registry()
    for service in (daemon, projects, sessions, worktrees, agents, turns, events, search, db):
        service.register(registry)
    return registry


__all__ = [
    "AgentService",
    "DaemonService",
    "DbService",
    "EventService",
    "ProjectService",
    "SearchService",
    "SessionService",
    "TurnService",
    "WorktreeService",
    "build_registry",
]
