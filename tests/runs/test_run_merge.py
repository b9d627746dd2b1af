"""run.compare and run.integrate on a real daemon: members (the scripted fake agent)
that write different files, compared side by side and file by file; the chosen work
brought into the project's repository (fast-forward, true merge, squash), and the
refusals (a dirty checkout, a conflict) that leave the run and the repository as
they were, journaled in the run's journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.wire.codes import ErrorCode
from tests.runs.world import RunWorld, run_world, writes
from tests.support.helpers import DaemonDirs, git, run_mimirctl

pytestmark = pytest.mark.timeout(90)

SCENARIOS = {"alpha": writes("a.txt", "alpha\n"), "beta": writes("b.txt", "beta\nbeta\n")}


async def deciding(world: RunWorld, **params: Any) -> dict[str, Any]:
    run = await world.create(agents=["alpha", "beta"], **params)
    return await world.until_status(run, "deciding")


async def error_of(world: RunWorld, method: str, params: dict[str, Any]) -> dict[str, Any]:
    response = await world.client.call_raw(method, params)
    assert "error" in response, response
    error: dict[str, Any] = response["error"]
    return error


def repo_state(repo: Path) -> tuple[str, str, dict[str, str]]:
    """Every ref, the checkout's status, and its files: what a refusal must not change."""
    files = {
        p.name: p.read_text() for p in repo.iterdir() if p.is_file() and p.name != ".gitignore"
    }
    return (
        git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        files,
    )


async def kinds_and_status(world: RunWorld, run: dict[str, Any]) -> tuple[list[str], str]:
    return await world.kinds(run), (await world.get(run))["status"]


# ---- run.compare -----------------------------------------------------------------------


async def test_compare_shows_the_members_side_by_side_and_each_against_the_base(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        found = await world.client.call("run.compare", {"run": run["id"]})
        table = {m["slot"]: m for m in found["members"]}
        assert {
            s: (m["agent"], m["files_changed"], m["lines_added"]) for s, m in table.items()
        } == {
            1: ("alpha", 1, 1),
            2: ("beta", 1, 2),
        }
        assert all(m["outcome"] == "finished" and not m["winner"] for m in table.values())
        assert [(d["from_slot"], d["to_slot"]) for d in found["diffs"]] == [(None, 1), (None, 2)]
        assert [f["path"] for f in found["diffs"][0]["files"]] == ["a.txt"]
        assert found["diffs"][0]["files"][0]["patch"] is None  # counts only, unless files


async def test_compare_with_files_gives_each_files_diff_and_sees_uncommitted_work(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        member = next(m for m in run["members"] if m["slot"] == 1)
        session = await world.client.call("session.get", {"session": member["session_id"]})
        # Work left in the worktree after the turn (not committed) counts too.
        (Path(session["workspace"]["path"]) / "later.txt").write_text("later\n")
        found = await world.client.call("run.compare", {"run": run["id"], "files": True})
        first = found["diffs"][0]
        assert [f["path"] for f in first["files"]] == ["a.txt", "later.txt"]
        assert "+alpha\n" in first["files"][0]["patch"]
        assert first["files"][0]["patch"].startswith("diff --git a/a.txt b/a.txt\n")
        assert not first["truncated"]


async def test_compare_between_two_members_is_the_diff_of_their_work(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        found = await world.client.call(
            "run.compare", {"run": run["id"], "between": [1, 2], "files": True, "max_bytes": 40}
        )
        [diff] = found["diffs"]
        assert (diff["from_slot"], diff["to_slot"]) == (1, 2)
        assert [(f["path"], f["status"]) for f in diff["files"]] == [
            ("a.txt", "deleted"),
            ("b.txt", "added"),
        ]
        assert diff["truncated"]  # 40 bytes of text diff at most, and it says so
        assert sum(len((f["patch"] or "").encode()) for f in diff["files"]) <= 40


async def test_compare_reads_a_put_away_members_work_from_its_branch(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        await world.client.call("run.integrate", {"run": run["id"], "slot": 2})
        found = await world.client.call("run.compare", {"run": run["id"], "between": [1, 2]})
        table = {m["slot"]: m for m in found["members"]}
        assert table[1]["status"] == "deleted"  # its worktree is gone, its branch kept
        assert (table[1]["files_changed"], table[1]["lines_added"], table[1]["unavailable"]) == (
            1,
            1,
            None,
        )
        assert table[2]["winner"]
        assert [f["path"] for f in found["diffs"][0]["files"]] == ["a.txt", "b.txt"]


INTEGRATOR = {
    "prompts": [
        [
            {"do": "disk_write", "path": "a.txt", "text": "alpha\n"},
            {"do": "disk_write", "path": "b.txt", "text": "beta\nbeta\n"},
            {"do": "disk_write", "path": "c.txt", "text": "both\n"},
        ]
    ]
}


async def test_an_ensembles_integration_is_slot_0_to_compare_and_to_integrate(
    dirs: DaemonDirs,
) -> None:
    # run.get lists the integration session as slot 0, and run.pick takes it; compare
    # and integrate refused it at decode ("Expected `int` >= 1").
    async with run_world(dirs, {**SCENARIOS, "integrator": INTEGRATOR}) as world:
        run = await world.create(
            agents=["alpha", "beta"],
            mode="ensemble",
            integration_agent="integrator",
            check_command="test -f nothing.txt",  # fails: the run waits for the user
            merge="manual",
        )
        await world.until_status(run, "deciding")
        found = await world.client.call("run.compare", {"run": run["id"], "between": [1, 0]})
        [diff] = found["diffs"]
        assert (diff["from_slot"], diff["to_slot"]) == (1, 0)
        assert [(f["path"], f["status"]) for f in diff["files"]] == [
            ("b.txt", "added"),
            ("c.txt", "added"),
        ]
        assert 0 in {m["slot"] for m in found["members"]}
        shown = await trio.to_thread.run_sync(
            lambda: run_mimirctl(dirs, "run", "compare", run["id"], "--between", "1", "0")
        )
        assert shown.returncode == 0, shown.stderr
        assert "slot 1 → the integration (slot 0): 2 file(s), +3 -0" in shown.stdout
        done = await world.client.call("run.integrate", {"run": run["id"], "slot": 0})
        assert done["slot"] == 0
        assert done["run"]["status"] == "completed"
        assert done["run"]["winner"] == 0
        assert git(world.repo, "show", "main:c.txt") == "both\n"
        assert sorted(done["put_away"]) == [1, 2]


async def test_an_integration_that_did_not_finish_its_work_is_not_integrated(
    dirs: DaemonDirs,
) -> None:
    crashing = {
        "prompts": [
            [
                {"do": "disk_write", "path": "c.txt", "text": "half\n"},
                {"do": "crash", "exit_code": 1},
            ]
        ]
    }
    async with run_world(dirs, {**SCENARIOS, "integrator": crashing}) as world:
        run = await world.create(
            agents=["alpha", "beta"], mode="ensemble", integration_agent="integrator"
        )
        waiting = await world.until_status(run, "deciding")
        assert waiting["integration_phase"] == "failed"
        before = repo_state(world.repo)
        error = await error_of(world, "run.integrate", {"run": run["id"], "slot": 0})
        assert error["code"] == ErrorCode.INVALID_STATE
        assert error["data"]["field"] == "slot"
        assert error["data"]["detail"] == {"integration_phase": "failed"}
        assert repo_state(world.repo) == before
        assert (await world.get(run))["status"] == "deciding"


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"between": [1, 3]}, ErrorCode.NOT_FOUND, "between"),
        ({"between": [2, 2]}, ErrorCode.INVALID_PARAMS, "between"),
        ({"between": [1]}, ErrorCode.INVALID_PARAMS, "between"),
        ({"max_bytes": -1}, ErrorCode.INVALID_PARAMS, "max_bytes"),
        ({"run": "zzzzzzzz"}, ErrorCode.NOT_FOUND, "run"),
    ],
)
async def test_compare_refuses_bad_input_by_its_field(
    dirs: DaemonDirs, params: dict[str, Any], code: ErrorCode, field: str
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        error = await error_of(world, "run.compare", {"run": run["id"], **params})
        assert error["code"] == code
        assert error["data"]["field"] == field


# ---- run.integrate ---------------------------------------------------------------------


async def test_integrating_a_slot_of_a_deciding_run_decides_it_and_moves_the_clean_checkout(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        done = await world.client.call("run.integrate", {"run": run["id"], "slot": 2})
        # main is checked out (clean) in the user's repository: it moves with the branch.
        assert (done["kind"], done["into"], done["slot"]) == ("fast_forward", "main", 2)
        assert done["worktree"] == str(world.repo)
        assert git(world.repo, "rev-parse", "main").strip() == done["commit"]
        assert (world.repo / "b.txt").read_text() == "beta\nbeta\n"
        assert git(world.repo, "status", "--porcelain").strip() == ""
        assert done["run"]["status"] == "completed"
        assert done["run"]["winner"] == 2
        assert done["run"]["decision"]["by"] == "user"
        assert done["put_away"] == [1]
        kinds = await world.kinds(run)
        assert kinds.index("integrated") < kinds.index("run_completed")
        integrated = [e["data"] for e in await world.events(run) if e["kind"] == "integrated"]
        assert integrated == [
            {
                "slot": 2,
                "branch": done["branch"],
                "into": "main",
                "kind": "fast_forward",
                "commit": done["commit"],
                "previous": done["previous"],
                "files_changed": 1,
                "insertions": 2,
                "worktree": str(world.repo),
            }
        ]


async def test_a_decided_run_is_merged_into_a_branch_not_checked_out_without_touching_the_checkout(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        # merge "manual": after the pick the run waits in decided for run.integrate.
        run = await deciding(world, merge="manual")
        git(world.repo, "branch", "release")
        # main moves on: the winner's branch has to be truly merged into it.
        (world.repo / "notes.md").write_text("notes\n")
        git(world.repo, "add", "notes.md")
        git(world.repo, "commit", "-q", "-m", "notes")
        git(world.repo, "switch", "-q", "release")
        git(world.repo, "merge", "-q", "--ff-only", "main")
        git(world.repo, "switch", "-q", "main")
        await world.client.call("run.pick", {"run": run["id"], "slot": 1})
        await world.until_status(run, "decided")
        checkout_before = repo_state(world.repo)[1:]
        release_before = git(world.repo, "rev-parse", "release").strip()
        done = await world.client.call("run.integrate", {"run": run["id"], "into": "release"})
        assert (done["kind"], done["slot"], done["worktree"]) == ("merge", 1, None)
        assert git(world.repo, "log", "-1", "--format=%P", "release").split() == [
            release_before,
            git(world.repo, "rev-parse", done["branch"]).strip(),
        ]
        assert git(world.repo, "show", "release:a.txt") == "alpha\n"
        assert git(world.repo, "show", "release:notes.md") == "notes\n"
        assert repo_state(world.repo)[1:] == checkout_before
        assert done["put_away"] == []  # the pick had put the losers away already
        assert done["run"]["status"] == "completed"


async def test_squash_makes_one_commit_with_the_given_message(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        before = git(world.repo, "rev-parse", "main").strip()
        done = await world.client.call(
            "run.integrate",
            {"run": run["id"], "slot": 1, "squash": True, "message": "alpha's a.txt"},
        )
        assert done["kind"] == "squash"
        assert git(world.repo, "log", "-1", "--format=%P|%s|%an", "main").strip() == (
            f"{before}|alpha's a.txt|Mimir"
        )


async def test_a_dirty_checkout_of_the_target_is_refused_and_the_run_stays_as_it_was(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        (world.repo / "README.md").write_text("the user's edit\n")
        before = repo_state(world.repo)
        kinds_before, _ = await kinds_and_status(world, run)
        error = await error_of(world, "run.integrate", {"run": run["id"], "slot": 2})
        assert error["code"] == ErrorCode.CHECKOUT_DIRTY
        assert error["data"]["kind"] == "checkout_dirty"
        assert error["data"]["detail"] == {"worktree": str(world.repo), "changes": [" M README.md"]}
        assert str(world.repo) in error["message"]
        assert repo_state(world.repo) == before
        kinds, status = await kinds_and_status(world, run)
        assert status == "deciding"
        assert kinds == [*kinds_before, "integration_refused"]
        refused = (await world.events(run))[-1]["data"]
        assert (refused["slot"], refused["into"], refused["error"]) == (2, "main", "checkout_dirty")
        members = {m["slot"]: m["status"] for m in (await world.get(run))["members"]}
        assert "deleted" not in members.values()


async def test_a_conflict_is_refused_file_by_file_and_nothing_is_half_merged(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        (world.repo / "a.txt").write_text("main's own a.txt\n")
        git(world.repo, "add", "a.txt")
        git(world.repo, "commit", "-q", "-m", "a.txt on main")
        before = repo_state(world.repo)
        error = await error_of(world, "run.integrate", {"run": run["id"], "slot": 1})
        assert error["code"] == ErrorCode.MERGE_CONFLICT
        assert error["data"]["detail"]["files"] == ["a.txt"]
        assert repo_state(world.repo) == before
        merge_head = git(world.repo, "rev-parse", "--git-path", "MERGE_HEAD").strip()
        assert not (world.repo / merge_head).exists()
        _, status = await kinds_and_status(world, run)
        assert status == "deciding"
        refused = (await world.events(run))[-1]
        assert refused["kind"] == "integration_refused"
        assert refused["data"]["files"] == ["a.txt"]
        # The other member does not conflict: integrating it still works.
        done = await world.client.call("run.integrate", {"run": run["id"], "slot": 2})
        assert done["kind"] == "merge"


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"slot": 3}, ErrorCode.NOT_FOUND, "slot"),
        ({"slot": 1, "into": "-f"}, ErrorCode.INVALID_PARAMS, "into"),
        ({"slot": 1, "into": "a..b"}, ErrorCode.INVALID_PARAMS, "into"),
        ({"slot": 1, "into": "no-such-branch"}, ErrorCode.NOT_FOUND, "into"),
        ({"slot": 1, "message": "  "}, ErrorCode.INVALID_PARAMS, "message"),
        ({}, ErrorCode.INVALID_STATE, "slot"),  # no winner yet, no slot given
    ],
)
async def test_integrate_refuses_bad_input_and_changes_nothing(
    dirs: DaemonDirs, params: dict[str, Any], code: ErrorCode, field: str
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        before = repo_state(world.repo)
        kinds_before, _ = await kinds_and_status(world, run)
        error = await error_of(world, "run.integrate", {"run": run["id"], **params})
        assert error["code"] == code
        assert error["data"]["field"] == field
        assert repo_state(world.repo) == before
        assert await kinds_and_status(world, run) == (kinds_before, "deciding")


async def test_a_completed_run_cannot_be_integrated_again(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        await world.client.call("run.integrate", {"run": run["id"], "slot": 1})
        error = await error_of(world, "run.integrate", {"run": run["id"], "slot": 2})
        assert error["code"] == ErrorCode.INVALID_STATE
        assert error["data"]["detail"]["status"] == "completed"


# ---- mimirctl --------------------------------------------------------------------------


async def test_mimirctl_run_compare_and_merge(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        compared = await trio.to_thread.run_sync(
            lambda: run_mimirctl(dirs, "run", "compare", run["id"], "--between", "1", "2")
        )
        assert compared.returncode == 0, compared.stderr
        lines = compared.stdout.splitlines()
        assert lines[0].split() == [
            "SLOT",
            "AGENT",
            "STATUS",
            "OUTCOME",
            "FILES",
            "+",
            "-",
            "CHECK",
        ]
        assert "slot 1 → slot 2: 2 file(s), +2 -1" in compared.stdout
        merged = await trio.to_thread.run_sync(
            lambda: run_mimirctl(dirs, "run", "merge", run["id"], "--slot", "2")
        )
        assert merged.returncode == 0, merged.stderr
        assert "fast-forwarded into main" in merged.stdout
        assert "put away (work snapshotted): slot(s) 1" in merged.stdout
        refused = await trio.to_thread.run_sync(
            lambda: run_mimirctl(dirs, "run", "merge", run["id"], "--slot", "1", "--json")
        )
        assert refused.returncode == 6, refused.stdout + refused.stderr  # invalid state


async def test_an_automatic_merge_refused_by_a_dirty_checkout_waits_for_run_integrate(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await deciding(world)
        (world.repo / "scratch.txt").write_text("the user's notes\n")
        main = git(world.repo, "rev-parse", "main")
        before = repo_state(world.repo)[1:]  # the pick snapshots the loser: refs move
        await world.client.call("run.pick", {"run": run["id"], "slot": 2})
        decided = await world.until_status(run, "decided", "completed")
        assert decided["status"] == "decided"
        assert repo_state(world.repo)[1:] == before
        assert git(world.repo, "rev-parse", "main") == main
        refused = [e["data"] for e in await world.events(run) if e["kind"] == "integration_refused"]
        assert [(r["slot"], r["error"]) for r in refused] == [(2, "checkout_dirty")]
        # The user tidies up; run.integrate brings the winner home.
        (world.repo / "scratch.txt").unlink()
        done = await world.client.call("run.integrate", {"run": run["id"]})
        assert (done["slot"], done["kind"], done["run"]["status"]) == (
            2,
            "fast_forward",
            "completed",
        )
        assert (world.repo / "b.txt").read_text() == "beta\nbeta\n"
