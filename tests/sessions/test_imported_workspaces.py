"""An imported session's workspace on this machine. A file's word that a directory is a
session's worktree or private copy is not taken for it: the directory is ``foreign``,
never worked in, checked in, moved, removed or pruned until the user adopts it
(``session.repair``: a worktree once it checks out as the project's, on the session's
branch). A deleted session brings no workspace, a restore with nothing in the trash says
so, and an in-place session works only in its project's directory. A real daemon on a
real socket; the files are crafted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.mimirctl.test_mimirctl_transfer import (
    A_RUN,
    HEADER,
    PROJECT,
    PROJECT_ID,
    RUN_ID,
    SESSION_ID,
    ctl,
)
from tests.mimirctl.test_mimirctl_transfer import a_session as session_record
from tests.support.agents import Client
from tests.support.helpers import DaemonDirs, InProcessDaemon, git, make_repo, write


async def imported(c: Client, *records: dict[str, Any]) -> dict[str, Any]:
    await c.call("import.begin", {"header": HEADER})
    await c.call("import.records", {"records": list(records), "first_line": 2})
    report: dict[str, Any] = await c.call("import.end", {})
    return report


def a_folder(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A project record for a directory that is here, and someone's precious files."""
    notes = tmp_path / "notes"
    notes.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    return {**PROJECT, "path": str(notes), "is_git": False}, precious


def a_copy(path: Path | str, **changes: Any) -> dict[str, Any]:
    return session_record(
        PROJECT_ID,
        SESSION_ID,
        workspace_kind="private",
        workspace_path=str(path),
        agent="fake",
        **changes,
    )


async def kinds(c: Client) -> list[str]:
    page = await c.call("session.events", {"session": SESSION_ID})
    return [event["kind"] for event in page["events"]]


@pytest.mark.parametrize("force", [False, True])
async def test_a_directory_at_an_imported_copys_path_is_foreign_and_left_where_it_is(
    daemon: InProcessDaemon, dirs: DaemonDirs, tmp_path: Path, force: bool
) -> None:
    project, precious = a_folder(tmp_path)
    async with Client.connect(daemon.socket) as c:
        report = await imported(c, project, a_copy(precious))
        shown = await c.call("session.get", {"session": SESSION_ID})
        resumed = await c.error("session.resume", {"session": SESSION_ID})
        deleted = await c.call("session.delete", {"session": SESSION_ID, "force": force})
        journal = await kinds(c)
    assert report["sessions"] == 1
    assert report["foreign_workspaces"] == [{"session_id": SESSION_ID, "path": str(precious)}]
    assert shown["workspace"]["state"] == "foreign"
    # No agent is started in a directory a file named.
    assert resumed["data"]["kind"] == "invalid_state"
    assert resumed["data"]["detail"] == {"workspace_state": "foreign"}
    assert "'session repair' adopts it" in resumed["message"]
    # Deleting the session leaves the directory alone: nothing moved to the trash.
    assert deleted["session"]["status"] == "deleted"
    assert deleted["session"]["workspace"]["state"] == "foreign"
    assert (precious / "thesis.tex").read_text() == "years of work\n"
    assert not (dirs.state / "trash").exists()
    assert "workspace_removed" not in journal


@pytest.mark.parametrize("under_worktrees", [False, True])
async def test_repair_adopts_the_directory_which_is_then_the_sessions_copy(
    daemon: InProcessDaemon, dirs: DaemonDirs, tmp_path: Path, under_worktrees: bool
) -> None:
    project, precious = a_folder(tmp_path)
    if under_worktrees:  # where this mimird would have made it (a copy rsynced over)
        (dirs.data / "worktrees" / "away").mkdir(parents=True)
        precious = Path(shutil.move(precious, dirs.data / "worktrees" / "away" / "copy"))
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, a_copy(precious))
        repaired = await c.call("session.repair", {"session": SESSION_ID})
        again = await c.call("session.repair", {"session": SESSION_ID})
        page = await c.call("session.events", {"session": SESSION_ID})
        await c.call("session.delete", {"session": SESSION_ID})
        trashed = sorted(p.name for p in (dirs.state / "trash" / SESSION_ID).iterdir())
        restored = await c.call("session.restore", {"session": SESSION_ID})
    assert repaired["workspace"]["state"] == again["workspace"]["state"] == "ok"
    adopted = [e["data"] for e in page["events"] if e["kind"] == "workspace_repaired"]
    assert adopted == [{"adopted_path": str(precious)}]
    assert trashed == ["thesis.tex"]  # now the session's own copy: kept for restore
    assert restored["workspace"]["state"] == "ok"
    assert (precious / "thesis.tex").read_text() == "years of work\n"


async def test_repair_of_a_foreign_copy_whose_directory_went_away_says_so(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, precious = a_folder(tmp_path)
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, a_copy(precious))
        (precious / "thesis.tex").unlink()
        precious.rmdir()
        refused = await c.error("session.repair", {"session": SESSION_ID})
        shown = await c.call("session.get", {"session": SESSION_ID})
    assert refused["data"]["kind"] == "invalid_state"
    assert "no directory is at its path" in refused["message"]
    assert shown["workspace"]["state"] == "foreign"


async def test_a_copy_that_is_not_on_this_machine_is_missing_and_no_agent_starts(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, _ = a_folder(tmp_path)
    async with Client.connect(daemon.socket) as c:
        report = await imported(c, project, a_copy(tmp_path / "elsewhere"))
        shown = await c.call("session.get", {"session": SESSION_ID})
        resumed = await c.error("session.resume", {"session": SESSION_ID})
    assert report["foreign_workspaces"] == []
    assert shown["workspace"]["state"] == "missing"
    assert resumed["data"]["detail"] == {"workspace_state": "missing"}
    assert "not on this machine" in resumed["message"]


async def test_restoring_a_copy_deleted_elsewhere_says_the_trash_has_none(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, _ = a_folder(tmp_path)
    gone = a_copy(tmp_path / "gone", status="deleted", workspace_state="removed")
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, gone)
        refused = await c.error("session.restore", {"session": SESSION_ID})
        shown = await c.call("session.get", {"session": SESSION_ID})
    assert refused["code"] == -32003, refused
    assert "not in the trash" in refused["message"]
    assert (shown["status"], shown["workspace"]["state"]) == ("deleted", "removed")
    assert not (tmp_path / "gone").exists()


async def test_an_in_place_session_is_imported_only_in_its_projects_directory(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, precious = a_folder(tmp_path)
    elsewhere = session_record(
        PROJECT_ID, SESSION_ID, workspace_kind="in_place", workspace_path=str(precious)
    )
    at_home = session_record(
        PROJECT_ID,
        "01kccccccccccccccccccccccc",
        workspace_kind="in_place",
        workspace_path=project["path"],
        workspace_state="foreign",  # only a private copy is ever foreign
    )
    async with Client.connect(daemon.socket) as c:
        report = await imported(c, project, elsewhere, at_home)
        missing = await c.error("session.get", {"session": SESSION_ID})
        kept = await c.call("session.get", {"session": at_home["id"]})
    assert report["sessions"] == 1
    assert [(x["line"], x["type"], x["id"]) for x in report["conflicts"]] == [
        (3, "session", SESSION_ID)
    ]
    assert "works in its project's directory" in report["conflicts"][0]["reason"]
    assert missing["data"]["kind"] == "not_found"
    assert kept["workspace"]["state"] == "ok"


async def test_mimirctl_says_what_it_left_alone(
    daemon: InProcessDaemon, dirs: DaemonDirs, tmp_path: Path
) -> None:
    project, precious = a_folder(tmp_path)
    export = tmp_path / "from-a-colleague.jsonl"
    export.write_text(
        "".join(json.dumps(line) + "\n" for line in (HEADER, project, a_copy(precious)))
    )
    taken = await ctl(dirs, "import", str(export))
    removed = await ctl(dirs, "session", "rm", SESSION_ID)
    assert taken.returncode == 0, taken.stderr
    assert (
        f"session {SESSION_ID}: its workspace's path {precious} holds a directory this "
        "mimird did not make; it is left alone, and no agent works in it until "
        f"'mimirctl session repair {SESSION_ID}' adopts it"
    ) in taken.stdout.decode()
    assert removed.returncode == 0, removed.stderr
    assert f"workspace {precious} left where it is" in removed.stdout.decode()
    assert "removed" not in removed.stdout.decode().replace(f"deleted session {SESSION_ID}", "")
    assert (precious / "thesis.tex").is_file()


@pytest.mark.parametrize("where", ["project", "inside-project", "state", "home"])
async def test_repair_never_adopts_a_directory_whose_delete_would_take_more(
    daemon: InProcessDaemon, dirs: DaemonDirs, tmp_path: Path, where: str
) -> None:
    # A copy's delete moves it into the trash: the project's own directory, Mimir's
    # state (the trash itself) or a directory holding them is never taken for one.
    project, _ = a_folder(tmp_path)
    notes = Path(project["path"])
    (notes / "sub").mkdir()
    path = {
        "project": notes,
        "inside-project": notes / "sub",
        "state": dirs.state,
        "home": dirs.root,
    }[where]
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, a_copy(path))
        refused = await c.error("session.repair", {"session": SESSION_ID})
        deleted = await c.call("session.delete", {"session": SESSION_ID})
    assert refused["data"]["kind"] == "invalid_state"
    assert f"cannot adopt {path} as the private copy" in refused["message"]
    assert deleted["session"]["workspace"]["state"] == "foreign"
    assert path.is_dir()


async def test_a_deleted_session_brings_no_workspace_that_a_prune_would_remove(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    # The user's own worktree of their repository, which a file names as the
    # worktree of a session deleted elsewhere (its delete cut short there).
    project, own = a_users_worktree(tmp_path)
    deleted = naming(own, status="deleted")
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, deleted)
        shown = await c.call("session.get", {"session": SESSION_ID})
        dry = await c.call("worktree.prune", {"dry_run": True})
        pruned = await c.call("worktree.prune", {})
    assert shown["workspace"]["state"] == "removed"  # nothing of it lives here
    assert dry["removed"] == pruned["removed"] == []
    assert (own / "wip.txt").read_text() == "not committed yet\n"


async def test_a_deleted_in_place_session_comes_back_in_its_projects_directory(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, _ = a_folder(tmp_path)
    deleted = session_record(
        PROJECT_ID,
        SESSION_ID,
        status="deleted",
        workspace_kind="in_place",
        workspace_path=project["path"],
    )
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, deleted)
        restored = await c.call("session.restore", {"session": SESSION_ID})
    assert (restored["status"], restored["workspace"]["state"]) == ("created", "ok")


def a_users_worktree(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A project record for the user's repository, and the user's own worktree of it
    (on branch ``feature``, with work not committed yet)."""
    repo = make_repo(tmp_path / "app")
    own = tmp_path / "app-feature"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(own))
    write(own, {"wip.txt": "not committed yet\n"})
    return {**PROJECT, "path": str(repo)}, own


def naming(worktree: Path, **changes: Any) -> dict[str, Any]:
    """A session record that names ``worktree`` (on ``feature``) as its own."""
    return session_record(
        PROJECT_ID, SESSION_ID, workspace_path=str(worktree), branch="feature", **changes
    )


async def test_an_imported_worktree_is_foreign_until_repair_checks_and_adopts_it(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, own = a_users_worktree(tmp_path)
    record = naming(own)
    async with Client.connect(daemon.socket) as c:
        report = await imported(c, project, record)
        shown = await c.call("session.get", {"session": SESSION_ID})  # no drift check flips it
        listed = await c.call("worktree.list", {})
        resumed = await c.error("session.resume", {"session": SESSION_ID})
        repaired = await c.call("session.repair", {"session": SESSION_ID})
        page = await c.call("session.events", {"session": SESSION_ID})
    assert report["foreign_workspaces"] == [{"session_id": SESSION_ID, "path": str(own)}]
    assert shown["workspace"]["state"] == "foreign"
    assert [w["state"] for w in listed["worktrees"]] == ["foreign"]
    assert resumed["data"]["detail"] == {"workspace_state": "foreign"}
    assert "'session repair' checks it and adopts it" in resumed["message"]
    assert repaired["workspace"]["state"] == "ok"
    adopted = [e["data"] for e in page["events"] if e["kind"] == "workspace_repaired"]
    assert adopted == [{"adopted_path": str(own)}]
    assert (own / "wip.txt").read_text() == "not committed yet\n"


async def test_deleting_a_session_with_a_foreign_worktree_leaves_worktree_and_branch(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, own = a_users_worktree(tmp_path)
    record = naming(own)
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, record)
        deleted = await c.call(
            "session.delete", {"session": SESSION_ID, "force": True, "delete_branch": True}
        )
        pruned = await c.call("worktree.prune", {})
    assert deleted["snapshot"] is None
    assert deleted["session"]["workspace"]["state"] == "foreign"
    assert pruned["removed"] == []
    assert (own / "wip.txt").read_text() == "not committed yet\n"
    assert git(own, "branch", "--show-current").strip() == "feature"


async def test_repair_of_a_foreign_worktree_on_another_branch_says_what_it_found(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, own = a_users_worktree(tmp_path)
    record = session_record(
        PROJECT_ID, SESSION_ID, workspace_path=str(own), branch="mimir/elsewhere"
    )
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, record)
        refused = await c.error("session.repair", {"session": SESSION_ID})
        shown = await c.call("session.get", {"session": SESSION_ID})
    assert refused["data"]["detail"] == {"workspace_state": "wrong_branch"}
    assert "switch back to mimir/elsewhere" in refused["message"]
    assert shown["workspace"]["state"] == "wrong_branch"  # what the check found, now shown


async def test_resuming_an_imported_run_runs_no_check_in_a_foreign_worktree(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    project, own = a_users_worktree(tmp_path)
    base = git(own, "rev-parse", "HEAD").strip()
    run = {
        **A_RUN,
        "check_command": "touch ran-here",
        "base_commit": base,
        "member_results": {"1": {"outcome": "finished"}},  # its turn ended elsewhere
    }
    member = naming(own, run_id=RUN_ID, slot=1, base_commit=base)
    async with Client.connect(daemon.socket) as c:
        await imported(c, project, run, member)
        await c.call("run.resume", {"run": RUN_ID})
        decided = await c.until(
            "run.get", {"run": RUN_ID}, lambda r: r["members"][0].get("check") is not None
        )
    assert not (own / "ran-here").exists()
    assert decided["members"][0]["check"]["summary"] == "not run: the workspace is foreign"
    assert decided["members"][0]["check"]["passed"] is False


async def test_mimirctl_rm_of_a_foreign_worktree_claims_nothing_it_did_not_do(
    daemon: InProcessDaemon, dirs: DaemonDirs, tmp_path: Path
) -> None:
    project, own = a_users_worktree(tmp_path)
    record = naming(own)
    export = tmp_path / "from-a-colleague.jsonl"
    export.write_text("".join(json.dumps(line) + "\n" for line in (HEADER, project, record)))
    taken = await ctl(dirs, "import", str(export))
    removed = await ctl(dirs, "session", "rm", "--force", "--delete-branch", SESSION_ID)
    assert taken.returncode == removed.returncode == 0, (taken.stderr, removed.stderr)
    said = removed.stdout.decode()
    assert f"workspace {own} left where it is, with its branch" in said
    assert "deleted\n" not in said.replace(f"deleted session {SESSION_ID}\n", "")
    assert "uncommitted work is gone" not in said
    assert (own / "wip.txt").is_file()
    assert git(own, "branch", "--show-current").strip() == "feature"
