"""Cancellation of session.create, session.delete and session.restore at each await
that matters (httpcore's tests/sessions/test_cancellations.py is the model).

The sessions owner runs against a real SQLite store and real git repositories; a
step is made controllable by wrapping the real function (git's, or a database
function run in the store's writer thread) in a :class:`Gate` that holds its
thread until the test releases it. The test cancels the call while the step is
held, releases it, and then checks what the invariant says: the row agrees with
the disk (directory, git's worktree registrations, branches), and no intent is
left behind.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final, cast

import pytest
import trio

from mimird import journal, projects
from mimird.api.sessions import SessionService
from mimird.config import Settings
from mimird.errors import AlreadyExists
from mimird.rpc.registry import CallContext
from mimird.sessions import intents, records, recovery
from mimird.sessions.lifecycle import Sessions
from mimird.sessions.records import SessionRow
from mimird.store import Store
from mimird.wire.types import SessionCreateParams, SessionRefParams
from mimird.workspaces import git as worktrees
from mimird.workspaces.provision import GIT_THREADS, Workspaces, snapshot_ref
from tests.support.helpers import README, DaemonDirs, git, make_repo, write

pytestmark = pytest.mark.timeout(60)

#: How long a test waits for a held step to be reached.
REACH_TIMEOUT_S: Final = 20.0


class Gate:
    """Holds the thread of the wrapped function, before or after the real call, until
    released; says when a thread is held."""

    def __init__(self, fn: Callable[..., Any], *, after: bool = False) -> None:
        self._fn = fn
        self._after = after
        self._reached = threading.Event()
        self._release = threading.Event()

    def _hold(self) -> None:
        self._reached.set()
        if not self._release.wait(REACH_TIMEOUT_S):
            raise TimeoutError("gate never released")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._after:
            self._hold()
        result = self._fn(*args, **kwargs)
        if self._after:
            self._hold()
        return result

    async def reached(self) -> None:
        with trio.fail_after(REACH_TIMEOUT_S):
            await trio.to_thread.run_sync(self._reached.wait)

    def release(self) -> None:
        self._release.set()


@pytest.fixture(autouse=True)
def config_file(dirs: DaemonDirs) -> None:
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text("")


@pytest.fixture
def settings(dirs: DaemonDirs) -> Settings:
    return dirs.settings()


@pytest.fixture
async def store(dirs: DaemonDirs, settings: Settings) -> AsyncIterator[Store]:
    async with Store.open(
        settings.database_path,
        key=None,
        options=settings.database,
        backup_dir=settings.backup_dir,
    ) as opened:
        yield opened


@pytest.fixture
def owner(store: Store, settings: Settings) -> Sessions:
    return Sessions(store, settings, Workspaces(settings))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


async def add_project(store: Store, repo: Path, name: str) -> str:
    """Register ``repo`` as a project; its id."""
    inspected = await trio.to_thread.run_sync(projects.inspect_path, str(repo))
    project = await store.write(
        lambda conn: projects.insert_project(
            conn,
            project_id=store.ids.new(),
            inspected=inspected,
            name=name,
            description="",
            config={},
        )
    )
    return project.id


@pytest.fixture
async def project_id(store: Store, repo: Path) -> str:
    return await add_project(store, repo, "repo")


# ---- what must hold after every cancellation -------------------------------------------


def worktree_paths(repo: Path) -> set[Path]:
    """git's registered worktrees of ``repo`` but its main checkout."""
    out = git(repo, "worktree", "list", "--porcelain")
    paths = {
        Path(line.split(" ", 1)[1]) for line in out.splitlines() if line.startswith("worktree ")
    }
    return {p.resolve() for p in paths} - {repo.resolve()}


def branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


async def rows(store: Store) -> list[SessionRow]:
    return await store.read(records.with_workspaces, None)


def check_disk(found: list[SessionRow], repo: Path, settings: Settings) -> None:
    live = {Path(r.workspace_path).resolve() for r in found if r.workspace_state == "ok"}
    for row in found:
        path = Path(row.workspace_path)
        if row.workspace_state == "ok":
            assert (path / ".git").is_file(), f"{row.id}: row says ok, {path} is not there"
        else:
            assert row.workspace_state == "removed"
            assert not path.exists(), f"{row.id}: row says removed, {path} is there"
    assert worktree_paths(repo) == live
    on_disk = {p.resolve() for p in settings.worktrees_dir.glob("*/*")}
    assert on_disk == live
    assert branches(repo) <= {"main"} | {r.branch for r in found if r.branch}


async def assert_row_agrees_with_disk(store: Store, repo: Path, settings: Settings) -> None:
    """Every worktree on disk or registered with git is a session's, every session's
    worktree is where its row says, no branch but main and the sessions', no intent."""
    assert await store.read(intents.pending) == []
    check_disk(await rows(store), repo, settings)


async def cancel_while_held(
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    gate: Gate,
    call: Callable[[], Awaitable[Any]],
) -> BaseException | None:
    """Run ``call`` with ``target`` replaced by ``gate``; cancel it once the gate is
    reached, then release the gate. Returns what ``call`` raised other than the
    cancellation (None if it was cancelled or returned)."""
    monkeypatch.setattr(target, gate)
    raised: list[BaseException] = []
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            try:
                await call()
            except trio.Cancelled:
                raise
            except Exception as exc:
                raised.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await gate.reached()
        scope.cancel()
        gate.release()
    monkeypatch.undo()
    return raised[0] if raised else None


def create_params(project_id: str) -> SessionCreateParams:
    return SessionCreateParams(project=project_id, task="change the greeting")


# ---- create -------------------------------------------------------------------------------

#: The awaits of a worktree create, each held before or after the real step.
CREATE_STEPS: Final = [
    ("mimird.workspaces.git.repo_state", False),
    ("mimird.workspaces.git.branch_exists", False),
    ("mimird.sessions.intents.begin", False),
    ("mimird.workspaces.git.add_worktree", False),
    ("mimird.workspaces.git.add_worktree", True),
    ("mimird.workspaces.git.copy_files", False),
    ("mimird.workspaces.git.copy_files", True),
    ("mimird.sessions.records.insert", False),
    ("mimird.sessions.records.insert", True),
]


@pytest.mark.parametrize(("target", "after"), CREATE_STEPS)
async def test_create_cancelled_at_any_step_leaves_row_and_disk_in_agreement(
    monkeypatch: pytest.MonkeyPatch,
    owner: Sessions,
    store: Store,
    repo: Path,
    settings: Settings,
    project_id: str,
    target: str,
    after: bool,
) -> None:
    real = _resolve(target)
    raised = await cancel_while_held(
        monkeypatch,
        target,
        Gate(real, after=after),
        lambda: owner.create(create_params(project_id)),
    )
    assert raised is None
    await assert_row_agrees_with_disk(store, repo, settings)


async def test_create_cancelled_while_recording_still_records_the_session(
    monkeypatch: pytest.MonkeyPatch,
    owner: Sessions,
    store: Store,
    repo: Path,
    settings: Settings,
    project_id: str,
) -> None:
    # The record step is shielded: the worktree is made, so the session must exist.
    await cancel_while_held(
        monkeypatch,
        "mimird.sessions.records.insert",
        Gate(records.insert),
        lambda: owner.create(create_params(project_id)),
    )
    [row] = await rows(store)
    assert row.workspace_state == "ok"
    await assert_row_agrees_with_disk(store, repo, settings)


async def test_create_cancelled_while_git_adds_the_worktree_removes_it_and_its_branch(
    monkeypatch: pytest.MonkeyPatch,
    owner: Sessions,
    store: Store,
    repo: Path,
    settings: Settings,
    project_id: str,
) -> None:
    await cancel_while_held(
        monkeypatch,
        "mimird.workspaces.git.add_worktree",
        Gate(worktrees.add_worktree, after=True),
        lambda: owner.create(create_params(project_id)),
    )
    assert await rows(store) == []
    assert branches(repo) == {"main"}
    assert worktree_paths(repo) == set()
    await assert_row_agrees_with_disk(store, repo, settings)


async def test_create_leaves_alone_a_worktree_someone_made_at_its_path_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
    owner: Sessions,
    store: Store,
    repo: Path,
    settings: Settings,
    project_id: str,
) -> None:
    # Between the create's check of the path and git's add, someone else puts a
    # worktree of the same repository there: the failed create must not remove it.
    theirs: list[Path] = []

    def add_theirs_first(
        root: Path, path: Path, branch: str, base_commit: str, **options: bool
    ) -> None:
        git(root, "worktree", "add", "-q", "-b", "theirs", str(path))
        theirs.append(path)
        real_add(root, path, branch, base_commit, **options)

    real_add = worktrees.add_worktree
    monkeypatch.setattr("mimird.workspaces.git.add_worktree", add_theirs_first)
    with pytest.raises(AlreadyExists):
        await owner.create(create_params(project_id))
    monkeypatch.undo()
    [path] = theirs
    assert await trio.Path(path, ".git").is_file()
    assert await trio.Path(path, "README.md").read_text() == README
    assert "theirs" in branches(repo)
    assert await store.read(intents.pending) == []
    assert await rows(store) == []


# ---- delete and restore -----------------------------------------------------------------


async def made(owner: Sessions, project_id: str, repo: Path) -> SessionRow:
    """A session whose worktree holds uncommitted work."""
    row = await owner.create(create_params(project_id))
    (Path(row.workspace_path) / "README.md").write_text("changed\n")
    return row


async def began_delete(store: Store, row: SessionRow, repo: Path, **data: Any) -> None:
    """The intent a delete of ``row``'s worktree writes before it touches the disk
    (``data``: what differs from a delete that keeps the branch)."""
    await store.write(
        intents.begin,
        row.id,
        "delete",
        {
            "kind": "worktree",
            "root": str(repo),
            "path": row.workspace_path,
            "branch": row.branch,
            "snapshot_ref": snapshot_ref(row.id),
            "delete_branch": False,
            "force": False,
            **data,
        },
    )


DELETE_STEPS: Final = [
    ("mimird.workspaces.git.check_worktree", False),
    ("mimird.sessions.intents.begin", False),
    ("mimird.workspaces.git.remove_worktree", False),
    ("mimird.workspaces.git.remove_worktree", True),
    ("mimird.sessions.intents.clear", False),
    ("mimird.sessions.records.transition", True),
]


@pytest.mark.parametrize(("target", "after"), DELETE_STEPS)
async def test_delete_cancelled_at_any_step_leaves_row_and_disk_in_agreement(
    monkeypatch: pytest.MonkeyPatch,
    owner: Sessions,
    store: Store,
    repo: Path,
    settings: Settings,
    project_id: str,
    target: str,
    after: bool,
) -> None:
    row = await made(owner, project_id, repo)
    raised = await cancel_while_held(
        monkeypatch,
        target,
        Gate(_resolve(target), after=after),
        lambda: owner.delete(row.id, delete_branch=True),
    )
    assert raised is None
    await assert_row_agrees_with_disk(store, repo, settings)
    after_row = await owner.find(row.id)
    if after_row.workspace_state == "removed":
        # The work went into the snapshot, and the row says where.
        assert after_row.status == "deleted"
        assert after_row.snapshot_commit is not None
        assert git(repo, "show", f"{after_row.snapshot_commit}:README.md") == "changed\n"
    else:
        assert after_row.status == "created"
        assert (Path(row.workspace_path) / "README.md").read_text() == "changed\n"


RESTORE_STEPS: Final = [
    ("mimird.workspaces.git.restore_branch_start", False),
    ("mimird.sessions.intents.begin", False),
    ("mimird.workspaces.git.restore_worktree", False),
    ("mimird.workspaces.git.restore_worktree", True),
    ("mimird.sessions.intents.clear", False),
    ("mimird.sessions.records.transition", True),
]


@pytest.mark.parametrize(("target", "after"), RESTORE_STEPS)
async def test_restore_cancelled_at_any_step_leaves_row_and_disk_in_agreement(
    monkeypatch: pytest.MonkeyPatch,
    owner: Sessions,
    store: Store,
    repo: Path,
    settings: Settings,
    project_id: str,
    target: str,
    after: bool,
) -> None:
    row = await made(owner, project_id, repo)
    await owner.delete(row.id)
    raised = await cancel_while_held(
        monkeypatch,
        target,
        Gate(_resolve(target), after=after),
        lambda: owner.restore(row.id),
    )
    assert raised is None
    await assert_row_agrees_with_disk(store, repo, settings)
    after_row = await owner.find(row.id)
    if after_row.workspace_state == "ok":
        assert after_row.status == "created"
        assert (Path(row.workspace_path) / "README.md").read_text() == "changed\n"
    else:
        # Undone: still deleted, and a second restore brings the work back.
        assert after_row.status == "deleted"
        restored = await owner.restore(row.id)
        assert restored.workspace_state == "ok"
        assert (Path(row.workspace_path) / "README.md").read_text() == "changed\n"


# ---- reads do not wait behind creation -------------------------------------------------


async def test_session_get_answers_while_creates_hold_every_git_thread(
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    settings: Settings,
    tmp_path: Path,
    project_id: str,
) -> None:
    service = SessionService(store, settings)
    existing = await service.owner.create(create_params(project_id))
    # Creates in more projects than there are git threads, each held in git's
    # worktree add (one create per project runs at a time: the project lock).
    others = [
        await add_project(store, make_repo(tmp_path / f"other-{i}"), f"other-{i}")
        for i in range(GIT_THREADS + 2)
    ]
    gate = Gate(worktrees.add_worktree)
    monkeypatch.setattr("mimird.workspaces.git.add_worktree", gate)
    async with trio.open_nursery() as nursery:
        for other in others:
            nursery.start_soon(service.owner.create, create_params(other))
        await gate.reached()
        with trio.fail_after(REACH_TIMEOUT_S):
            got = await service.get(cast(CallContext, None), SessionRefParams(session=existing.id))
        assert got.git is not None
        assert got.workspace.state == "ok"
        gate.release()


# ---- helpers ----------------------------------------------------------------------------


def _resolve(target: str) -> Callable[..., Any]:
    module_name, _, name = target.rpartition(".")
    module = __import__(module_name, fromlist=[name])
    fn: Callable[..., Any] = getattr(module, name)
    return fn


# ---- a crash between the change on disk and its record: the next start settles it ------


async def test_start_after_a_crash_mid_create_rolls_the_worktree_back_and_says_so(
    owner: Sessions, store: Store, repo: Path, settings: Settings, project_id: str
) -> None:
    # What a kill after git's worktree add leaves: the intent, the worktree, no row.
    path = settings.worktrees_dir / "repo" / "half-made"
    base = git(repo, "rev-parse", "HEAD").strip()
    session_id = "0" * 26
    values: dict[str, Any] = {
        "id": session_id,
        "project_id": project_id,
        "title": "",
        "task": "t",
        "agent": None,
        "config": {},
        "workspace_kind": "worktree",
        "status": "created",
        "workspace_path": str(path),
        "branch": "mimir/half-made",
        "base_ref": "main",
        "base_commit": base,
    }
    data = {
        "kind": "worktree",
        "root": str(repo),
        "path": str(path),
        "branch": "mimir/half-made",
        "base_commit": base,
        "values": values,
    }
    await store.write(intents.begin, session_id, "create", data)
    await trio.to_thread.run_sync(worktrees.add_worktree, repo, path, "mimir/half-made", base)
    await recovery.recover(store, owner)
    row = await owner.find(session_id)
    assert (row.status, row.workspace_state) == ("failed", "removed")
    events = await store.read(lambda conn: journal.page(conn, row.id, after_seq=0, limit=10))
    assert "workspace_rolled_back" in [e.kind for e in events]
    await assert_row_agrees_with_disk(store, repo, settings)
    assert branches(repo) == {"main"}


async def test_start_after_a_crash_mid_create_leaves_a_directory_it_did_not_make(
    owner: Sessions, store: Store, repo: Path, settings: Settings, project_id: str
) -> None:
    # The user put files where the create meant to go while mimird was down.
    path = settings.worktrees_dir / "repo" / "users"
    await trio.to_thread.run_sync(lambda: write(path, {"notes.txt": "mine\n"}))
    data = {
        "kind": "worktree",
        "root": str(repo),
        "path": str(path),
        "branch": "main",
        "base_commit": git(repo, "rev-parse", "HEAD").strip(),
        "values": {"id": "1" * 26, "project_id": project_id, "task": "t"},
    }
    await store.write(intents.begin, "1" * 26, "create", data)
    await recovery.recover(store, owner)
    assert await trio.Path(path / "notes.txt").read_text() == "mine\n"
    assert branches(repo) == {"main"}
    assert await store.read(intents.pending) == []


async def test_start_after_a_crash_mid_delete_records_a_worktree_git_removed(
    owner: Sessions, store: Store, repo: Path, settings: Settings, project_id: str
) -> None:
    row = await made(owner, project_id, repo)
    await began_delete(store, row, repo)
    await owner.workspaces.remove(row, force=False, delete_branch=False)
    await recovery.recover(store, owner)
    deleted = await owner.find(row.id)
    assert (deleted.status, deleted.workspace_state) == ("deleted", "removed")
    assert deleted.snapshot_commit is not None
    await assert_row_agrees_with_disk(store, repo, settings)
    restored = await owner.restore(row.id)
    assert await trio.Path(restored.workspace_path, "README.md").read_text() == "changed\n"


async def test_start_after_a_crash_mid_removal_finishes_the_delete_from_its_snapshot(
    owner: Sessions, store: Store, repo: Path, settings: Settings, project_id: str
) -> None:
    # A kill while git removed the worktree, after the snapshot: the worktree is half
    # emptied, and the work is only whole in the snapshot.
    row = await made(owner, project_id, repo)
    await began_delete(store, row, repo, delete_branch=True, snapshot_before=None)
    saved = await trio.to_thread.run_sync(
        worktrees.snapshot, Path(row.workspace_path), snapshot_ref(row.id), "work"
    )
    await trio.Path(row.workspace_path, "README.md").unlink()
    await recovery.recover(store, owner)
    deleted = await owner.find(row.id)
    assert (deleted.status, deleted.workspace_state) == ("deleted", "removed")
    assert deleted.snapshot_commit == saved.commit
    await assert_row_agrees_with_disk(store, repo, settings)
    # The branch stays: whether it could go was not checked before the crash.
    assert row.branch in branches(repo)
    restored = await owner.restore(row.id)
    assert await trio.Path(restored.workspace_path, "README.md").read_text() == "changed\n"


async def test_start_after_a_crash_before_a_delete_removed_anything_keeps_the_session(
    owner: Sessions, store: Store, repo: Path, settings: Settings, project_id: str
) -> None:
    row = await made(owner, project_id, repo)
    await began_delete(store, row, repo, delete_branch=True)
    await recovery.recover(store, owner)
    kept = await owner.find(row.id)
    assert (kept.status, kept.workspace_state) == ("created", "ok")
    assert await trio.Path(kept.workspace_path, "README.md").read_text() == "changed\n"
    await assert_row_agrees_with_disk(store, repo, settings)


async def test_start_after_a_crash_mid_restore_undoes_it_and_restore_works_again(
    owner: Sessions, store: Store, repo: Path, settings: Settings, project_id: str
) -> None:
    row = await made(owner, project_id, repo)
    deleted, _ = await owner.delete(row.id, delete_branch=True)
    assert deleted.snapshot_commit is not None
    assert deleted.branch is not None
    await store.write(
        intents.begin,
        row.id,
        "restore",
        {
            "kind": "worktree",
            "root": str(repo),
            "path": row.workspace_path,
            "branch": row.branch,
            "branch_existed": False,
            "branch_start": await trio.to_thread.run_sync(
                worktrees.restore_branch_start, repo, deleted.snapshot_commit
            ),
        },
    )
    await owner.workspaces.restore(deleted)
    await recovery.recover(store, owner)
    undone = await owner.find(row.id)
    assert (undone.status, undone.workspace_state) == ("deleted", "removed")
    await assert_row_agrees_with_disk(store, repo, settings)
    assert branches(repo) == {"main"}
    restored = await owner.restore(row.id)
    assert await trio.Path(restored.workspace_path, "README.md").read_text() == "changed\n"
