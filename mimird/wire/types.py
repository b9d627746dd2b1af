"""Params and results of every method, as msgspec Structs.

Params forbid unknown fields (a typo is an error, not a silent no-op); results
are tolerant so that an older client keeps decoding a newer daemon's answers.
``UNSET`` distinguishes "field absent" from an explicit ``null``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType


class Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every method's params."""


class Result(msgspec.Struct, kw_only=True):
    """Base of every method's result."""


ProjectName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[^/\s](?:[^/]*[^/\s])?$",
        description="Unique project name: no '/', no leading or trailing whitespace.",
    ),
]
ProjectRef = Annotated[
    str, Meta(min_length=1, max_length=4096, description="A project's id or its name.")
]
ProjectType = Literal["python", "go", "rust", "typescript", "javascript", "java", "unknown"]
Description = Annotated[str, Meta(max_length=10_000)]
ConfigObject = Annotated[
    dict[str, Any], Meta(description="Configuration overrides (a JSON object).")
]


# ---- rpc.* / daemon.* -------------------------------------------------------------


class EmptyParams(Params):
    pass


class DaemonCounts(Result):
    projects: int
    archived_projects: int
    sessions: int
    connections: int


class DaemonPaths(Result):
    socket: str
    database: str
    config: str | None
    worktrees: str
    state: str


class DaemonStatus(Result):
    version: str
    protocol_version: int
    pid: int
    started_at: str
    uptime_s: float
    socket_activated: bool
    database_size_bytes: int
    database_encrypted: bool
    schema_revision: str
    paths: DaemonPaths
    counts: DaemonCounts


# ---- project.* --------------------------------------------------------------------


class Project(Result):
    id: str
    name: str
    path: str
    type: ProjectType
    is_git: bool
    description: str
    config: dict[str, Any]
    archived: bool
    sessions: int
    created_at: str
    updated_at: str


class ProjectAddParams(Params):
    path: Annotated[str, Meta(min_length=1, max_length=4096)]
    name: ProjectName | UnsetType = UNSET
    description: Description = ""
    config: ConfigObject = msgspec.field(default_factory=dict)


class ProjectListParams(Params):
    include_archived: bool = False


class ProjectList(Result):
    projects: list[Project]


class ProjectGetParams(Params):
    project: ProjectRef


class ProjectUpdateParams(Params):
    project: ProjectRef
    name: ProjectName | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    config: ConfigObject | UnsetType = UNSET
    archived: bool | UnsetType = UNSET


class ProjectRemoveParams(Params):
    project: ProjectRef
    force: bool = False


class ProjectRemoved(Result):
    id: str
    name: str
    sessions_removed: int
