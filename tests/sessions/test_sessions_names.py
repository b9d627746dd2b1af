"""Names that become paths or refs, and private copies: a hostile branch is refused,
a project's name never leads a workspace out of its root, a directory holding
Mimir's own files is never copied, and a copy is bounded by copy_max_bytes.

Over the socket of an in-process daemon, against real git repositories and
directories (see tests/support/sessions.py)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import DaemonDirs, TrioClient, add_project, write
from tests.support.sessions import (
    all_sessions,
    branches,
    create,
    error_of,
    files_of,
    git_worktrees,
    main_checkout_state,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


def store_raw(dirs: DaemonDirs, project: dict[str, Any], **columns: str) -> None:
    """Change a project's row behind the daemon's back, as an older Mimir (whose rules
    were looser) could have stored it."""
    assignments = ", ".join(f"{column} = ?" for column in columns)
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=10)) as db, db:
        db.execute(
            f"UPDATE projects SET {assignments} WHERE id = ?",
            (*columns.values(), project["id"]),
        )


def everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


async def leftovers(client: TrioClient, dirs: DaemonDirs, repo: Path | None) -> dict[str, Any]:
    """What a create could leave behind: sessions, intents, branches, worktrees, files."""
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=10)) as db:
        intents = db.execute("SELECT count(*) FROM workspace_intents").fetchone()[0]
    return {
        "sessions": await all_sessions(client, include_archived=True, include_deleted=True),
        "intents": intents,
        # The per-project parent directory may stay (as after any failed create).
        "worktrees_dir": [p for p in everything_under(dirs.data / "worktrees") if "/" in p],
        "trash": everything_under(dirs.state / "trash"),
        **(
            {
                "branches": branches(repo),
                "worktrees": git_worktrees(repo),
                "checkout": main_checkout_state(repo),
            }
            if repo is not None
            else {}
        ),
    }


# ---- branches ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "branch",
    [
        pytest.param("@", id="at"),
        pytest.param("refs/heads/x", id="refs-prefix"),
        pytest.param("-rf", id="leading-dash"),
        pytest.param("HEAD", id="HEAD"),
        pytest.param("a..b", id="dot-dot"),
        pytest.param("x/.hidden", id="dot-component"),
        pytest.param("x.lock", id="lock"),
        pytest.param("a b", id="space"),
        pytest.param("a\nb", id="newline"),
        pytest.param("a\x1b[31mb", id="esc"),
        pytest.param("@{-1}", id="previous-branch"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("x" * 251, id="too-long"),
    ],
)
async def test_a_hostile_branch_is_invalid_params_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path, branch: str
) -> None:
    before = await leftovers(client, dirs, repo)
    response = await client.call_raw("session.create", {"project": project["id"], "branch": branch})
    error = response["error"]
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "branch"
    assert await leftovers(client, dirs, repo) == before


async def test_a_branch_template_that_makes_a_refs_path_is_refused(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    before = await leftovers(client, dirs, repo)
    error = await error_of(
        client,
        "session.create",
        {"project": project["id"], "config": {"branch_template": "refs/heads/{slug}"}},
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config.branch_template"
    assert await leftovers(client, dirs, repo) == before


# ---- project names in paths --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("..", "project"),
        (".", "project"),
        ("../../escape", "escape"),
        ("-rf", "rf"),
        ("a\nb", "a-b"),
        ("\x1b]0;x\x07", "0-x"),
        ("x.lock", "x-lock"),
    ],
)
async def test_a_stored_hostile_project_name_never_leads_a_worktree_out_of_its_root(
    client: TrioClient,
    dirs: DaemonDirs,
    project: dict[str, Any],
    repo: Path,
    name: str,
    slug: str,
) -> None:
    # Refused on new input; a name stored before the rule existed still works, and
    # only its slug goes on disk, even with {project} twice in the location.
    store_raw(dirs, project, name=name)
    session = await create(
        client,
        project,
        title="escape",
        config={
            "worktree_location": "{project}/{project}/{slug}",
            "branch_template": "m/{project}/{slug}",
        },
    )
    worktrees_dir = (dirs.data / "worktrees").resolve()
    path = workspace(session)
    assert path.parent == worktrees_dir / slug / slug
    assert session["workspace"]["branch"] == f"m/{slug}/escape"
    assert path in git_worktrees(repo)


async def test_a_stored_hostile_project_name_never_leads_a_private_copy_out(
    client: TrioClient, dirs: DaemonDirs, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n"})
    project = await add_project(client, plain)
    store_raw(dirs, project, name="..")
    session = await create(client, project, config={"worktree_location": "{project}/{project}"})
    assert workspace(session) == (dirs.data / "worktrees" / "project" / "project").resolve()
    assert files_of(workspace(session)) == files_of(plain)


# ---- private copies: Mimir's own directories ---------------------------------------------


async def test_a_stored_project_holding_the_daemons_directories_is_not_copied(
    client: TrioClient, dirs: DaemonDirs, tmp_path: Path
) -> None:
    # project.add refuses it now (tests/daemon/test_projects.py); one registered
    # before that (here: its path changed behind the daemon's back) is never copied:
    # the copy would hold the worktrees directory it is written into.
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n"})
    project = await add_project(client, plain)
    store_raw(dirs, project, path=str(dirs.root.resolve()))
    before = await leftovers(client, dirs, None)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "project"
    assert "contains Mimir's" in error["message"]
    assert await leftovers(client, dirs, None) == before
    # in place, nothing is copied: still allowed.
    in_place = await create(client, project, workspace="in_place")
    assert workspace(in_place) == dirs.root.resolve()


async def test_a_private_copy_inside_the_directory_it_copies_is_refused(
    client: TrioClient, dirs: DaemonDirs, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n"})
    project = await add_project(client, plain)
    before = await leftovers(client, dirs, None)
    location = f"{plain.resolve()}/copies/{{slug}}"
    error = await error_of(
        client,
        "session.create",
        {"project": project["id"], "config": {"worktree_location": location}},
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "config.worktree_location"
    assert await leftovers(client, dirs, None) == before
    assert sorted(os.listdir(plain)) == ["notes.txt"]


# ---- private copies: bounded ----------------------------------------------------------------


async def test_a_copy_over_copy_max_bytes_is_invalid_state_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"a.bin": b"a" * 600, "sub/b.bin": b"b" * 600})
    project = await add_project(client, plain, config={"copy_max_bytes": 1000})
    before = await leftovers(client, dirs, None)
    files_before = files_of(plain)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["field"] == "copy_max_bytes"
    assert error["data"]["detail"]["limit"] == 1000
    assert error["data"]["detail"]["size_at_least"] > 1000
    assert "copy_max_bytes" in error["message"]
    assert await leftovers(client, dirs, None) == before
    assert files_of(plain) == files_before
    # Within the limit (a session's layer raises it), the same project is copied.
    session = await create(client, project, config={"copy_max_bytes": 1200})
    assert files_of(workspace(session)) == files_before


async def test_a_copy_of_a_fifo_is_invalid_state_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n"})
    os.mkfifo(plain / "pipe")
    project = await add_project(client, plain)
    before = await leftovers(client, dirs, None)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["field"] == "project"
    assert "pipe" in error["message"]
    assert await leftovers(client, dirs, None) == before
