"""Projects: registered directories, usually git repositories.

Detection (git root, project type) runs in worker threads; database functions
are plain sync functions taking a connection and returning wire structs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import git
import msgspec
import sqlalchemy as sa

from mimird import names
from mimird.errors import AlreadyExists, InvalidParams, InvalidState, NotFound
from mimird.ids import is_id
from mimird.policy import keep_masked_secrets, mask_config
from mimird.sessions import usage
from mimird.store.schema import projects, sessions
from mimird.timeutil import utc_now
from mimird.wire.types import Project, ProjectRemoved, ProjectType
from mimird.wire.usage import Usage

#: Marker files, checked in this order: the first match decides. Python comes
#: before the JavaScript family because many Python repositories carry a
#: package.json for tooling, rarely the other way round.
TYPE_MARKERS: Final[tuple[tuple[ProjectType, tuple[str, ...]], ...]] = (
    ("rust", ("Cargo.toml",)),
    ("go", ("go.mod",)),
    (
        "java",
        ("pom.xml", "build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts"),
    ),
    ("python", ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "Pipfile")),
    ("typescript", ("tsconfig.json", "deno.json")),
    ("javascript", ("package.json",)),
)


@dataclass(frozen=True, slots=True)
class Inspected:
    root: Path
    is_git: bool
    type: ProjectType


def detect_type(root: Path) -> ProjectType:
    for project_type, markers in TYPE_MARKERS:
        if any((root / marker).is_file() for marker in markers):
            if project_type == "javascript" and _package_json_uses_typescript(root):
                return "typescript"
            return project_type
    return "unknown"


def _package_json_uses_typescript(root: Path) -> bool:
    try:
        manifest = msgspec.json.decode((root / "package.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return False
    if not isinstance(manifest, dict):
        return False
    return any(
        isinstance(deps := manifest.get(section), dict) and "typescript" in deps
        for section in ("dependencies", "devDependencies")
    )


def inspect_path(text: str) -> Inspected:
    """Find the project root for a path given by a client. Sync: run in a thread."""
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~user/..." for a user that does not exist
        raise InvalidParams(
            f"path {text!r} starts with a '~' that names no home directory", field="path"
        ) from None
    if not path.is_absolute():
        raise InvalidParams(
            f"path {text!r} is relative; give an absolute path (mimirctl does this for you)",
            field="path",
        )
    try:
        path = path.resolve(strict=True)
    except FileNotFoundError:
        raise InvalidParams(f"path {text} does not exist", field="path") from None
    except OSError as exc:
        raise InvalidParams(f"path {text} cannot be used: {exc.strerror}", field="path") from None
    if not path.is_dir():
        raise InvalidParams(f"path {path} is not a directory", field="path")
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return Inspected(root=path, is_git=False, type=detect_type(path))
    try:
        if repo.bare or repo.working_tree_dir is None:
            raise InvalidParams(
                f"{path} is inside a bare git repository; add a checkout of it instead",
                field="path",
            )
        root = Path(repo.working_tree_dir).resolve()
    finally:
        repo.close()
    return Inspected(root=root, is_git=True, type=detect_type(root))


def default_name(root: Path) -> str:
    """A new project's name when none is given: its directory's name, or that
    name's slug when it breaks the rule for project names (``.dotfiles``, ``-x``)."""
    name = root.name or "root"
    return name if names.project_name_problem(name) is None else names.path_slug(name)


# ---- database functions (sync, run by the store in a worker thread) ---------------

# Deleted sessions are history (their work is in snapshot refs): not counted. A
# correlated count per project, answered from the (project_id, status) index,
# instead of grouping every session of every project.
_session_count = (
    sa.select(sa.func.count())
    .select_from(sessions)
    .where(sessions.c.project_id == projects.c.id, sessions.c.status != "deleted")
    .correlate(projects)
    .scalar_subquery()
)
# When a session of the project last changed (created, prompted, ...): the
# newest updated_at of its sessions, deleted ones included (their use was use).
_last_used = (
    sa.select(sa.func.max(sessions.c.updated_at))
    .where(sessions.c.project_id == projects.c.id)
    .correlate(projects)
    .scalar_subquery()
)
_select_projects = sa.select(
    *projects.c, _session_count.label("sessions"), _last_used.label("last_used_at")
)


def _to_project(row: Any, used: Usage) -> Project:
    return Project(
        id=row.id,
        name=row.name,
        path=row.path,
        type=row.type,
        is_git=bool(row.is_git),
        description=row.description,
        config=mask_config(msgspec.json.decode(row.config)),
        archived=bool(row.archived),
        sessions=int(row.sessions),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_used_at=row.last_used_at,
        usage=used,
    )


def _with_usage(conn: sa.Connection, rows: list[Any]) -> list[Project]:
    """Projects from their rows, each with its sessions' usage summed."""
    used = usage.of_projects(conn, [row.id for row in rows])
    return [_to_project(row, used[row.id]) for row in rows]


def _find(conn: sa.Connection, ref: str) -> Project:
    """A project by id, else by name."""
    if is_id(ref):
        row = conn.execute(_select_projects.where(projects.c.id == ref)).first()
        if row is not None:
            return _with_usage(conn, [row])[0]
    row = conn.execute(_select_projects.where(projects.c.name == ref)).first()
    if row is None:
        raise NotFound(f"no project with id or name {ref!r}", field="project", id=ref)
    return _with_usage(conn, [row])[0]


def resolve_id(conn: sa.Connection, ref: str) -> str:
    """A project's id from its id or name, without computing anything else."""
    if is_id(ref):
        found = conn.execute(sa.select(projects.c.id).where(projects.c.id == ref)).scalar()
        if found is not None:
            return str(found)
    found = conn.execute(sa.select(projects.c.id).where(projects.c.name == ref)).scalar()
    if found is None:
        raise NotFound(f"no project with id or name {ref!r}", field="project", id=ref)
    return str(found)


def _check_name_free(conn: sa.Connection, name: str) -> None:
    existing = conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar()
    if existing is not None:
        raise AlreadyExists(
            f"a project named {name!r} already exists ({existing}); choose another name",
            field="name",
            id=existing,
        )


def insert_project(
    conn: sa.Connection,
    *,
    project_id: str,
    inspected: Inspected,
    name: str | None,
    description: str,
    config: dict[str, Any],
) -> Project:
    path = str(inspected.root)
    existing = conn.execute(
        sa.select(projects.c.id, projects.c.name).where(projects.c.path == path)
    ).first()
    if existing is not None:
        raise AlreadyExists(
            f"{path} is already registered as project {existing.name!r} ({existing.id})",
            field="path",
            id=existing.id,
        )
    if name is None:
        name = default_name(inspected.root)
    _check_name_free(conn, name)
    now = utc_now()
    conn.execute(
        sa.insert(projects).values(
            id=project_id,
            name=name,
            path=path,
            type=inspected.type,
            is_git=inspected.is_git,
            description=description,
            config=msgspec.json.encode(config).decode(),
            archived=False,
            created_at=now,
            updated_at=now,
        )
    )
    return _find(conn, project_id)


def list_projects(conn: sa.Connection, *, include_archived: bool) -> list[Project]:
    query = _select_projects.order_by(projects.c.name)
    if not include_archived:
        query = query.where(projects.c.archived.is_(False))
    return _with_usage(conn, list(conn.execute(query)))


def get_project(conn: sa.Connection, ref: str) -> Project:
    return _find(conn, ref)


def update_project(conn: sa.Connection, ref: str, changes: dict[str, Any]) -> Project:
    project = _find(conn, ref)
    if "name" in changes and changes["name"] != project.name:
        _check_name_free(conn, changes["name"])
    if "config" in changes:
        stored = conn.execute(
            sa.select(projects.c.config).where(projects.c.id == project.id)
        ).scalar_one()
        merged = keep_masked_secrets(changes["config"], msgspec.json.decode(stored))
        changes["config"] = msgspec.json.encode(merged).decode()
    if changes:
        conn.execute(
            sa.update(projects)
            .where(projects.c.id == project.id)
            .values(**changes, updated_at=utc_now())
        )
    return _find(conn, project.id)


def remove_project(conn: sa.Connection, ref: str, *, force: bool) -> ProjectRemoved:
    project = _find(conn, ref)
    if project.sessions and not force:
        raise InvalidState(
            f"project {project.name!r} has {project.sessions} session(s); remove them first "
            "or pass force to remove the project with its sessions",
            field="force",
            id=project.id,
        )
    removed = conn.execute(
        sa.select(sa.func.count()).select_from(sessions).where(sessions.c.project_id == project.id)
    ).scalar_one()
    conn.execute(sa.delete(projects).where(projects.c.id == project.id))
    return ProjectRemoved(id=project.id, name=project.name, sessions_removed=int(removed))


def counts(conn: sa.Connection) -> tuple[int, int, int]:
    """(active projects, archived projects, sessions)."""
    active, archived = conn.execute(
        sa.select(
            sa.func.count().filter(projects.c.archived.is_(False)),
            sa.func.count().filter(projects.c.archived.is_(True)),
        ).select_from(projects)
    ).one()
    total_sessions = conn.execute(
        sa.select(sa.func.count()).select_from(sessions).where(sessions.c.status != "deleted")
    ).scalar_one()
    return int(active), int(archived), int(total_sessions)


def raw_config(conn: sa.Connection, project_id: str) -> dict[str, Any]:
    """A project's config as stored, secrets in clear: for building sessions, never for output."""
    stored = conn.execute(
        sa.select(projects.c.config).where(projects.c.id == project_id)
    ).scalar_one()
    config: dict[str, Any] = msgspec.json.decode(stored)
    return config
