"""``project.*``: register and manage project directories: decode → :mod:`mimird.projects`
(and the sessions owner, for a forced removal) → encode."""

from __future__ import annotations

import msgspec
import trio

from mimird import names, policy, projects
from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions.records import live_session_ids
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.types import (
    Project,
    ProjectAddParams,
    ProjectGetParams,
    ProjectList,
    ProjectListParams,
    ProjectRemoved,
    ProjectRemoveParams,
    ProjectUpdateParams,
)

_method = MethodTable()

#: Detection touches the disk (and git's files); a few at a time is plenty.
INSPECT_THREADS = 4


class ProjectService:
    def __init__(self, store: Store, sessions: SessionService) -> None:
        self._store = store
        self._sessions = sessions
        self._inspect_limiter = trio.CapacityLimiter(INSPECT_THREADS)

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "project.add",
        params=ProjectAddParams,
        result=Project,
        summary="Register a directory as a project.",
        description=(
            "The path must exist. Inside a git repository the repository's root is "
            "registered, whatever subdirectory was given. The type is detected from marker "
            "files; the name defaults to the directory's name and must be unique."
        ),
        mutating=True,
        errors=(ErrorCode.ALREADY_EXISTS,),
    )
    async def add(self, ctx: CallContext, params: ProjectAddParams) -> Project:
        if params.name is not msgspec.UNSET:
            names.check_project_name(params.name)
        policy.parse_layer(params.config, "project")
        inspected = await trio.to_thread.run_sync(
            projects.inspect_path, params.path, limiter=self._inspect_limiter
        )
        await self._sessions.workspaces.refuse_mimir_data(inspected.root, field="path")
        return await self._store.write(
            lambda conn: projects.insert_project(
                conn,
                project_id=self._store.ids.new(),
                inspected=inspected,
                name=None if params.name is msgspec.UNSET else params.name,
                description=params.description,
                config=params.config,
            )
        )

    @_method(
        "project.list",
        params=ProjectListParams,
        result=ProjectList,
        summary="List projects by name; archived ones only when asked.",
    )
    async def list(self, ctx: CallContext, params: ProjectListParams) -> ProjectList:
        found = await self._store.read(
            lambda conn: projects.list_projects(conn, include_archived=params.include_archived)
        )
        return ProjectList(projects=found)

    @_method(
        "project.get",
        params=ProjectGetParams,
        result=Project,
        summary="One project, by id or name.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def get(self, ctx: CallContext, params: ProjectGetParams) -> Project:
        return await self._store.read(projects.get_project, params.project)

    @_method(
        "project.update",
        params=ProjectUpdateParams,
        result=Project,
        summary="Change a project's name, description, config or archived flag.",
        description="Fields left out are unchanged; config is replaced as a whole.",
        mutating=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.ALREADY_EXISTS),
    )
    async def update(self, ctx: CallContext, params: ProjectUpdateParams) -> Project:
        if params.name is not msgspec.UNSET:
            names.check_project_name(params.name)
        if params.config is not msgspec.UNSET:
            policy.parse_layer(params.config, "project")
        changes = {
            field: value
            for field in ("name", "description", "config", "archived")
            if (value := getattr(params, field)) is not msgspec.UNSET
        }
        return await self._store.write(projects.update_project, params.project, changes)

    @_method(
        "project.remove",
        params=ProjectRemoveParams,
        result=ProjectRemoved,
        summary="Unregister a project (its files are not touched).",
        description=(
            "Refused while the project has sessions (deleted ones aside), unless force is "
            "true: then each session is deleted first, its work snapshotted and its worktree "
            "removed, and the project goes with its sessions' records."
        ),
        mutating=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def remove(self, ctx: CallContext, params: ProjectRemoveParams) -> ProjectRemoved:
        if params.force:
            # Forced removal still keeps invariant 4: each session's work is
            # snapshotted and its worktree removed first; a failure stops here.
            project = await self._store.read(projects.get_project, params.project)
            for session_id in await self._store.read(live_session_ids, project.id):
                await self._sessions.owner.delete(session_id)
        return await self._store.write(
            lambda conn: projects.remove_project(conn, params.project, force=params.force)
        )
