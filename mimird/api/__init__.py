"""The methods themselves, thin, grouped by noun. ``build_registry`` is the one
place that decides which methods exist."""

from __future__ import annotations

from mimird.api.daemon import DaemonService
from mimird.api.projects import ProjectService
from mimird.rpc.registry import Registry


def build_registry(daemon: DaemonService, projects: ProjectService) -> Registry:
    registry = Registry()
    daemon.register(registry)
    projects.register(registry)
    return registry


__all__ = ["DaemonService", "ProjectService", "build_registry"]
