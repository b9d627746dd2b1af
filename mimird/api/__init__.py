"""The methods themselves, thin, grouped by noun. ``build_registry`` is the one
place that decides which methods exist."""

from __future__ import annotations

from mimird.api.agents import AgentService
from mimird.api.daemon import DaemonService
from mimird.api.db import DbService
from mimird.api.events import EventService
from mimird.api.metrics import MetricsService
from mimird.api.model_mode import ModelModeService
from mimird.api.permissions import PermissionService
from mimird.api.projects import ProjectService
from mimird.api.prompts import PromptService
from mimird.api.run_merge import RunMergeService
from mimird.api.runs import RunService
from mimird.api.search import SearchService
from mimird.api.sessions import SessionService
from mimird.api.templates import TemplateService
from mimird.api.worktrees import WorktreeService
from mimird.rpc.registry import Registry


def build_registry(
    daemon: DaemonService,
    projects: ProjectService,
    sessions: SessionService,
    worktrees: WorktreeService,
    agents: AgentService,
    prompts: PromptService,
    permissions: PermissionService,
    events: EventService,
    search: SearchService,
    db: DbService,
    templates: TemplateService,
    model_mode: ModelModeService,
    runs: RunService | None = None,
    run_merge: RunMergeService | None = None,
    metrics: MetricsService | None = None,
) -> Registry:
    registry = Registry()
    for service in (
        daemon,
        projects,
        sessions,
        worktrees,
        agents,
        prompts,
        permissions,
        events,
        search,
        db,
        templates,
        model_mode,
    ):
        service.register(registry)
    if runs is not None:
        runs.register(registry)
    if run_merge is not None:
        run_merge.register(registry)
    if metrics is not None:
        metrics.register(registry)
    return registry


__all__ = [
    "AgentService",
    "DaemonService",
    "DbService",
    "EventService",
    "MetricsService",
    "ModelModeService",
    "PermissionService",
    "ProjectService",
    "PromptService",
    "RunMergeService",
    "RunService",
    "SearchService",
    "SessionService",
    "TemplateService",
    "WorktreeService",
    "build_registry",
]
