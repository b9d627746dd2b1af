"""A competition run end to end, with the scripted fake agent: members that write
different files, checks that pass and fail, the decision by the checks or by the
user (run.pick)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.errors import InvalidState
from mimird.runs import catalog, create, orchestrator
from mimird.wire.errors import ErrorCode
from tests.runs.world import eventually, run_world, writes
from tests.support.helpers import DaemonDirs, count_git_calls, git

pytestmark = pytest.mark.timeout(90)


async def test_a_run_gives_the_task_to_every_member_and_waits_for_the_users_pick(
    dirs: DaemonDirs,
) -> None:
    scenarios = {"alpha": writes("a.txt", "alpha\n"), "beta": writes("b.txt", "beta\nbeta\n")}
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["alpha", "beta"])
        assert [m["slot"] for m in run["members"]] == [1, 2]
        assert [m["agent"] for m in run["members"]] == ["alpha", "beta"]
        # Made together, told apart by the 10 characters mimirctl shows of an id.
        assert len({m["session_id"][:10] for m in run["members"]}) == 2
        done = await world.until_status(run, "deciding")
        members = {m["slot"]: m for m in done["members"]}
        assert members[1]["outcome"] == members[2]["outcome"] == "finished"
        assert (members[1]["files_changed"], members[1]["lines_added"]) == (1, 1)
        assert (members[2]["files_changed"], members[2]["lines_added"]) == (1, 2)
        assert done["totals"]["total_files_changed"] == 2
        assert done["totals"]["total_lines_added"] == 3
        branch = members[1]["branch"]
        assert branch.startswith("mimir/run-make-it-better-")
        assert branch.endswith("/1-alpha")
        # The member's work is committed on its branch.
        assert git(world.repo, "show", f"{branch}:a.txt").strip() == "alpha"
        events = await world.events(run)
        kinds = [event["kind"] for event in events]
        assert kinds[0] == "run_created"
        assert kinds.count("member_started") == kinds.count("member_finished") == 2
        # Recorded while the first turns start (the run is being made), member_started
        # still comes before its member's member_finished.
        for slot in (1, 2):
            of_slot = [e["kind"] for e in events if e.get("data", {}).get("slot") == slot]
            assert of_slot == ["member_started", "member_finished"], of_slot
        picked = await world.client.call("run.pick", {"run": run["id"], "slot": 2})
        assert picked["winner"] == 2
        assert picked["decision"]["by"] == "user"
        final = await world.until_status(run, "decided", "completed")
        loser = next(m for m in final["members"] if m["slot"] == 1)
        assert loser["status"] == "deleted"


def usage(used: int) -> dict[str, Any]:
    update = {"sessionUpdate": "usage_update", "used": used, "size": 1 << 20}
    return {"do": "update", "update": update}


WAIT_CANCEL = {"do": "wait_cancel"}
CRASH = {"do": "crash", "exit_code": 3}


async def test_one_member_failing_does_not_stop_the_others_and_the_run_notes_why(
    dirs: DaemonDirs,
) -> None:
    scenarios = {"good": writes("a.txt", "a\n"), "broken": {"prompts": [[CRASH]]}}
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["good", "broken"])
        done = await world.until_status(run, "deciding")
        members = {m["slot"]: m for m in done["members"]}
        assert members[1]["outcome"] == "finished"
        assert members[2]["outcome"] == "failed"
        assert members[2]["reason"]
        finished = [e["data"] for e in await world.events(run) if e["kind"] == "member_finished"]
        assert {d["slot"]: d["outcome"] for d in finished} == {1: "finished", 2: "failed"}


async def test_a_member_over_its_budget_is_noted_and_the_others_go_on(dirs: DaemonDirs) -> None:
    scenarios = {
        "small": writes("a.txt", "a\n"),
        "hungry": {"prompts": [[usage(5000), WAIT_CANCEL]]},
    }
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["small", "hungry"], config={"token_budget": 1000})
        done = await world.until_status(run, "deciding")
        members = {m["slot"]: m for m in done["members"]}
        assert members[1]["outcome"] == "finished"
        assert members[2]["outcome"] == "budget_exceeded"
        assert members[2]["status"] == "budget_exceeded"


async def test_the_run_budget_cancels_every_members_turn(dirs: DaemonDirs) -> None:
    scenarios = {
        "a": {"prompts": [[usage(600), WAIT_CANCEL]]},
        "b": {"prompts": [[usage(600), WAIT_CANCEL]]},
    }
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["a", "b"], run_budget={"tokens": 1000})
        done = await world.until_status(run, "failed")
        assert {m["outcome"] for m in done["members"]} == {"budget_exceeded"}
        assert "run's budget" in done["failure"]
        events = await world.events(run)
        [reached] = [e["data"] for e in events if e["kind"] == "run_budget_exceeded"]
        assert reached["budget"] == "tokens"
        assert reached["limit"] == 1000
        assert reached["used"] >= 1000


async def test_checks_pass_and_fail_and_judge_checks_picks_the_smallest_passing_diff(
    dirs: DaemonDirs,
) -> None:
    # The check passes when ok.txt exists; slot 3 passes with the smaller diff.
    scenarios = {
        "big": {"prompts": [[{"do": "disk_write", "path": "ok.txt", "text": "1\n2\n3\n"}]]},
        "none": writes("other.txt", "x\n"),
        "small": {"prompts": [[{"do": "disk_write", "path": "ok.txt", "text": "1\n"}]]},
    }
    async with run_world(dirs, scenarios) as world:
        run = await world.create(
            agents=["big", "none", "small"],
            check_command="echo checking; test -f ok.txt && echo passed",
            judge="checks",
            merge="manual",
        )
        done = await world.until_status(run, "decided", "completed")
        checks = {m["slot"]: m["check"] for m in done["members"]}
        assert [checks[s]["passed"] for s in (1, 2, 3)] == [True, False, True]
        assert checks[1]["summary"] == "passed"
        assert checks[2]["summary"] == "checking"
        assert checks[2]["exit_code"] == 1
        assert done["winner"] == 3
        assert done["decision"]["by"] == "checks"
        assert "smallest diff" in done["decision"]["reasons"]
        kinds = await world.kinds(run)
        assert kinds.count("check_started") == kinds.count("check_finished") == 3
        # The losers were put away: deleted with their work snapshotted, branches kept.
        losers = [m for m in done["members"] if m["slot"] != 3]
        assert {m["status"] for m in losers} == {"deleted"}
        for member in losers:
            git(world.repo, "rev-parse", "--verify", member["branch"])


async def test_a_check_that_runs_too_long_is_stopped_and_fails(dirs: DaemonDirs) -> None:
    scenarios = {"a": writes("a.txt", "a\n")}
    async with run_world(dirs, scenarios, runs={"check_timeout_s": 0.5}) as world:
        run = await world.create(agent="a", n=1, check_command="echo started; sleep 30")
        done = await world.until_status(run, "deciding")
        check = done["members"][0]["check"]
        assert check["timed_out"] is True
        assert check["passed"] is False
        assert check["exit_code"] is None


async def test_a_check_output_is_bounded_and_masks_secrets(dirs: DaemonDirs) -> None:
    scenarios = {"a": writes("a.txt", "a\n")}
    config = {"env": {"TOKEN": {"value": "sekrit-value-123", "secret": True}}}
    async with run_world(dirs, scenarios, runs={"check_output_bytes": 1024}) as world:
        run = await world.create(
            agent="a",
            n=1,
            config=config,
            check_command='head -c 5000 /dev/zero | tr "\\0" x; echo; echo "key $TOKEN"',
        )
        await world.until_status(run, "deciding")
        [finished] = [e["data"] for e in await world.events(run) if e["kind"] == "check_finished"]
        assert finished["passed"] is True
        assert "sekrit-value-123" not in finished["output"]
        assert finished["summary"] == "key ***"
        assert len(finished["output"].encode()) <= 1024
        assert finished["output_dropped"] > 0


async def test_cancel_cancels_every_members_turn(dirs: DaemonDirs) -> None:
    scenarios = {"a": {"prompts": [[WAIT_CANCEL]]}, "b": {"prompts": [[WAIT_CANCEL]]}}
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["a", "b"])
        # Both members are in their turn before the cancel.
        for _ in range(500):
            got = await world.get(run)
            if all(m["status"] == "running" for m in got["members"]):
                break
            await trio.sleep(0.02)
        cancelled = await world.client.call("run.cancel", {"run": run["id"]})
        assert cancelled["status"] == "cancelled"
        assert cancelled["finished_at"] is not None
        kinds = await world.kinds(run)
        assert kinds[-2:] == ["run_cancelled", "run_status_changed"]
        assert {m["outcome"] for m in cancelled["members"]} == {"cancelled"}
        for member in cancelled["members"]:
            turn_ends = (
                await world.client.call(
                    "session.events", {"session": member["session_id"], "kind": "turn_ended"}
                )
            )["events"]
            assert [e["data"]["stop_reason"] for e in turn_ends] == ["cancelled"]
        again = await world.client.error("run.cancel", {"run": run["id"]})
        assert again["data"]["kind"] == "invalid_state"


async def test_a_pick_while_members_work_is_refused_at_once(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It waited for the run's task to end (up to CANCEL_WAIT_S, 60 s), which a
    # member at work does not: the call hung, then said "it is running".
    monkeypatch.setattr(orchestrator, "CANCEL_WAIT_S", 30.0)
    scenarios = {"a": {"prompts": [[WAIT_CANCEL]]}}
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["a"])
        await world.until_status(run, "running")
        with trio.fail_after(10):
            refused = await world.client.error("run.pick", {"run": run["id"], "slot": 1})
        assert refused["data"]["kind"] == "invalid_state"
        assert refused["data"]["detail"] == {"status": "running", "wanted": "decided"}
        assert (await world.get(run))["status"] == "running"
        await world.client.call("run.cancel", {"run": run["id"]})


async def test_delete_deletes_every_member_with_its_work_snapshotted_then_the_run(
    dirs: DaemonDirs,
) -> None:
    scenarios = {"a": writes("a.txt", "a\n"), "b": writes("b.txt", "b\n")}
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["a", "b"], preserve_worktrees=True)
        await world.until_status(run, "deciding")
        # Work the member left after its turn (not committed yet) is saved too.
        member = run["members"][0]
        shown = await world.client.call("session.get", {"session": member["session_id"]})
        workspace = shown["workspace"]["path"]
        await trio.Path(workspace, "late.txt").write_text("late\n")
        removed = await world.client.call("run.delete", {"run": run["id"]})
        assert sorted(removed["sessions"]) == sorted(m["session_id"] for m in run["members"])
        for session_id in removed["sessions"]:
            session = await world.client.call("session.get", {"session": session_id})
            assert session["status"] == "deleted"
            assert session["workspace"]["snapshot_ref"] is not None
        snapshot = shown["id"]
        saved = git(world.repo, "show", f"refs/mimir/snapshots/{snapshot}:late.txt")
        assert saved.strip() == "late"
        gone = await world.client.error("run.get", {"run": run["id"]})
        assert gone["data"]["kind"] == "not_found"


async def test_a_member_is_an_ordinary_session_that_names_its_run_and_slot(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}) as world:
        run = await world.create(agent="a", n=2, title="Two of a kind")
        for member in run["members"]:
            session = await world.client.call("session.get", {"session": member["session_id"]})
            assert (session["run_id"], session["slot"]) == (run["id"], member["slot"])
            assert session["title"] == f"Two of a kind [{member['slot']}/2 a]"
            assert session["config"]["auto_complete"] is False
        listed = (await world.client.call("session.list", {}))["sessions"]
        assert {(s["run_id"], s["slot"]) for s in listed} == {(run["id"], 1), (run["id"], 2)}


async def test_judge_checks_with_no_passing_check_waits_for_the_user(dirs: DaemonDirs) -> None:
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}) as world:
        run = await world.create(agent="a", n=2, check_command="exit 3", judge="checks")
        done = await world.until_status(run, "deciding")
        assert done["winner"] is None
        notes = [e["data"]["text"] for e in await world.events(run) if e["kind"] == "run_note"]
        assert notes == ["no member's check passed: no winner by checks; run.pick decides"]


async def test_run_list_filters_by_project_and_status_a_page_at_a_time(dirs: DaemonDirs) -> None:
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}) as world:
        made = [await world.create(agent="a", n=1, title=f"run {i}") for i in range(3)]
        for run in made:
            await world.until_status(run, "deciding")
        await world.client.call("run.cancel", {"run": made[0]["id"]})
        first = await world.client.call("run.list", {"project": "demo", "limit": 2})
        assert [r["id"] for r in first["runs"]] == [made[2]["id"], made[1]["id"]]
        rest = await world.client.call("run.list", {"limit": 2, "cursor": first["next_cursor"]})
        assert [r["id"] for r in rest["runs"]] == [made[0]["id"]]
        assert rest["next_cursor"] is None
        cancelled = await world.client.call("run.list", {"status": ["cancelled"]})
        assert [r["id"] for r in cancelled["runs"]] == [made[0]["id"]]


async def test_cancel_during_the_checks_stops_each_checks_whole_process_group(
    dirs: DaemonDirs,
) -> None:
    pidfile = dirs.root / "check.pid"
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}) as world:
        run = await world.create(
            agent="a", n=1, check_command=f"sleep 60 & echo $! > {pidfile}; wait"
        )
        await world.until_status(run, "checking")
        await eventually(lambda: pidfile.exists() and pidfile.read_text().strip())
        pid = int(pidfile.read_text())
        assert _state(pid) not in ("Z", "gone")
        await world.client.call("run.cancel", {"run": run["id"]})
        await eventually(lambda: _state(pid) in ("Z", "gone"))
        kinds = await world.kinds(run)
        assert "check_started" in kinds
        assert "check_finished" not in kinds


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2 :].split()[0]


async def test_run_get_reads_a_working_members_diff_stats_from_its_worktree(
    dirs: DaemonDirs,
) -> None:
    working = {"prompts": [[{"do": "disk_write", "path": "w.txt", "text": "1\n2\n"}, WAIT_CANCEL]]}
    async with run_world(dirs, {"w": working}) as world:
        run = await world.create(agent="w", n=1)

        async def wrote() -> dict[str, Any] | None:
            got = await world.get(run)
            return got if got["members"][0]["files_changed"] else None

        with trio.fail_after(10):
            while (got := await wrote()) is None:  # noqa: ASYNC110
                await trio.sleep(0.02)
        member = got["members"][0]
        assert member["outcome"] == "working"
        assert (member["files_changed"], member["lines_added"]) == (1, 2)
        assert got["totals"]["total_lines_added"] == 2
        await world.client.call("run.cancel", {"run": run["id"]})


async def test_an_agents_stop_reason_is_bounded_before_the_run_keeps_it(dirs: DaemonDirs) -> None:
    hostile = {"prompts": [[{"do": "stop_reason", "value": "\x1b[2J" + "x" * 100_000}]]}
    async with run_world(dirs, {"h": hostile}) as world:
        run = await world.create(agent="h", n=1)
        done = await world.until_status(run, "deciding", "failed")
        member = done["members"][0]
        assert member["outcome"] == "failed"
        assert len(member["stop_reason"]) == 64
        assert len(member["reason"]) <= 2000
        events = await world.client.call("session.events", {"session": member["session_id"]})
        ended = [e["data"] for e in events["events"] if e["kind"] == "turn_ended"]
        assert [len(data["stop_reason"]) for data in ended] == [64]


async def test_a_template_is_rendered_for_each_member(dirs: DaemonDirs) -> None:
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}) as world:
        config = {"prompt_templates": {"fix": "Do: {task} on {branch} for {who}"}}
        run = await world.create(
            agent="a", n=2, config=config, template={"template": "fix", "vars": {"who": "me"}}
        )
        await world.until_status(run, "deciding")
        record = (dirs.root / "received-a.jsonl").read_text().splitlines()
        texts = sorted(
            m["params"]["prompt"][0]["text"]
            for m in map(json.loads, record)
            if m.get("method") == "session/prompt"
        )
        branches = sorted(m["branch"] for m in run["members"])
        assert texts == [f"Do: make it better on {b} for me" for b in branches]
        missing = await world.client.error(
            "run.create",
            {
                "project": world.project,
                "task": "t",
                "agent": "a",
                "n": 1,
                "config": config,
                "template": {"template": "fix"},
            },
        )
        assert missing["data"]["kind"] == "invalid_params"


async def test_a_picked_winner_is_integrated_into_the_target_and_the_run_completes(
    dirs: DaemonDirs,
) -> None:
    scenarios = {"a": writes("a.txt", "alpha\n"), "b": writes("b.txt", "beta\n")}
    async with run_world(dirs, scenarios) as world:
        before = git(world.repo, "rev-parse", "main")
        run = await world.create(agents=["a", "b"])
        await world.until_status(run, "deciding")
        await world.client.call("run.pick", {"run": run["id"], "slot": 2})
        done = await world.until_status(run, "completed", "decided", "failed")
        assert done["status"] == "completed", done["failure"]
        assert done["winner"] == 2
        winner = next(m for m in done["members"] if m["slot"] == 2)
        assert winner["status"] == "completed"
        # main moved to the winner's work (the user's checkout, on main and clean, too).
        assert git(world.repo, "rev-parse", "main") != before
        assert git(world.repo, "show", "main:b.txt").strip() == "beta"
        assert (world.repo / "b.txt").read_text() == "beta\n"
        assert not (world.repo / "a.txt").exists()
        [completed] = [e["data"] for e in await world.events(run) if e["kind"] == "run_completed"]
        assert completed["winner"] == 2
        assert completed["into"] == "main"


async def test_judge_checks_decides_and_brings_the_winner_home_by_itself(
    dirs: DaemonDirs,
) -> None:
    scenarios = {
        "fails": writes("a.txt", "a\n"),
        "passes": {"prompts": [[{"do": "disk_write", "path": "ok.txt", "text": "ok\n"}]]},
    }
    async with run_world(dirs, scenarios) as world:
        run = await world.create(
            agents=["fails", "passes"], check_command="test -f ok.txt", judge="checks"
        )
        done = await world.until_status(run, "completed", "decided", "failed")
        assert done["status"] == "completed", done["failure"]
        assert done["winner"] == 2
        assert git(world.repo, "show", "main:ok.txt").strip() == "ok"


async def test_a_member_whose_agent_cannot_start_fails_and_the_others_go_on(
    dirs: DaemonDirs,
) -> None:
    missing = '\n[agents.missing]\ncommand = "/nonexistent/agent-binary"\n'
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}, extra=missing) as world:
        run = await world.create(agents=["a", "missing"])
        done = await world.until_status(run, "deciding")
        members = {m["slot"]: m for m in done["members"]}
        assert members[1]["outcome"] == "finished"
        assert members[2]["outcome"] == "failed"
        assert "not found" in members[2]["reason"]


async def test_an_error_raised_in_a_steps_own_nursery_fails_the_run_with_its_message(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mode whose concurrent work raises a MimirError (it reaches the run's task
    inside an exception group) fails the run saying what went wrong, not "internal
    error"."""

    async def broken(ctx: Any) -> None:
        async def refuse() -> None:
            raise InvalidState("the disk said no")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refuse)

    monkeypatch.setitem(catalog.MODES, "competition", broken)
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}) as world:
        run = await world.create(agents=["a"])
        done = await world.until_status(run, "failed")
    assert done["failure"] == "the disk said no"


async def test_what_a_check_leaves_in_a_worktree_is_not_the_members_work(
    dirs: DaemonDirs,
) -> None:
    """A check that writes files (bytecode in a project that does not ignore it, a
    report, a rewritten tracked file) leaves the member's result as its agent made
    it: compared, counted and merged without them; what the check left is saved
    under a snapshot ref, not lost."""
    check = "echo report > report.txt && mkdir -p cache && echo x > cache/c && echo more >> a.txt"
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}) as world:
        run = await world.create(agents=["a"], check_command=check, judge="checks")
        done = await world.until_status(run, "completed")
        member = done["members"][0]
        assert member["check"]["passed"] is True
        assert (member["files_changed"], member["lines_added"]) == (1, 1)
        assert git(world.repo, "show", "main:a.txt") == "a\n"
        merged = set(git(world.repo, "ls-tree", "--name-only", "main").split())
        assert "a.txt" in merged
        assert not {"report.txt", "cache"} & merged
        saved = f"refs/mimir/snapshots/runs/{run['id']}/check-1"
        assert git(world.repo, "show", f"{saved}:report.txt") == "report\n"
        assert git(world.repo, "show", f"{saved}:a.txt") == "a\nmore\n"


async def test_each_member_works_as_soon_as_it_is_made_while_the_next_are_made(
    dirs: DaemonDirs,
) -> None:
    """Member 2's setup command waits for a file that member 1's agent writes in its
    turn: the run can be made only if member 1 was prompted before member 2 was
    made (a run that made every member first would wait for ever)."""
    marker = dirs.root / "member-1-worked"
    first = dirs.root / "first-setup-ran"
    setup = (
        f"if [ -e {first} ]; then"
        f" for i in $(seq 400); do [ -e {marker} ] && exit 0; sleep 0.05; done; exit 1;"
        f" else touch {first}; fi"
    )
    early = {"prompts": [[{"do": "disk_write", "path": str(marker), "text": "x"}]] * 3}
    scenarios = {"early": early, "late": writes("b.txt", "b\n")}
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["early", "late"], config={"setup_command": setup})
        done = await world.until_status(run, "deciding")
        assert [m["outcome"] for m in done["members"]] == ["finished", "finished"]
        kinds = await world.kinds(run)
        # The run's first event names every member, though they were made after it.
        assert kinds[0] == "run_created"
        created = (await world.events(run))[0]["data"]["members"]
        assert [m["session_id"] for m in created] == [m["session_id"] for m in done["members"]]


async def test_a_run_create_that_fails_midway_stops_the_members_already_working(
    dirs: DaemonDirs,
) -> None:
    """Member 1 works (its agent writes a marker, then waits to be cancelled);
    member 2's setup command waits for that marker; member 3 cannot be made (member
    1's agent took its worktree's place). run.create fails; member 1's running turn
    is cancelled before the members and the run are removed; no agent is left."""
    marker = dirs.root / "member-1-works"
    taken = dirs.data / "worktrees" / "demo" / "t-3-3-other" / "taken"
    working = {
        "prompts": [
            [
                {"do": "disk_write", "path": str(taken), "text": "x"},
                {"do": "disk_write", "path": str(marker), "text": "x"},
                WAIT_CANCEL,
            ]
        ]
    }
    setup = f"case $(pwd) in *t-2-3-*) while [ ! -e {marker} ]; do sleep 0.05; done;; esac"
    scenarios = {"working": working, "other": writes("b.txt", "b\n")}
    async with run_world(dirs, scenarios) as world:
        error = await world.client.error(
            "run.create",
            {
                "project": world.project,
                "task": "t",
                "agents": ["working", "other", "other"],
                "config": {"worktree_location": "{project}/{slug}", "setup_command": setup},
            },
        )
        assert "t-3-3-other already exists" in error["message"], error
        assert (await world.client.call("run.list", {}))["runs"] == []
        listed = await world.client.call("session.list", {"include_deleted": True})
        assert [s["status"] for s in listed["sessions"]] == ["deleted", "deleted"]
        first = listed["sessions"][-1]["id"]
        history = (await world.client.call("session.events", {"session": first}))["events"]
        kinds = [(e["kind"], e["data"].get("stop_reason")) for e in history]
        # Member 1's turn was cancelled by the run (not ended by its agent being stopped).
        assert kinds.index(("turn_ended", "cancelled")) < kinds.index(("agent_exited", None))
        scenario = str(dirs.root / "scenario-working.json")
        await eventually(lambda: not _processes_with(scenario))


def _processes_with(argument: str) -> list[int]:
    """The pids of live processes with ``argument`` on their command line."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argument.encode() in args and state != "Z":
            found.append(int(proc.name))
    return found


async def test_run_create_asks_git_for_the_base_once_and_each_member_only_for_its_worktree(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run resolves its base and names its members' branches after its own new
    id: a member's create does not ask git again (two git processes a member, on the
    way to the last member's start)."""
    hang = {"prompts": [[{"do": "wait_cancel"}]]}
    async with run_world(dirs, {"a": hang}) as world:
        calls = count_git_calls(monkeypatch)
        await world.create(agent="a", n=3)
        asked = [c for c in calls if c in ("status", "rev-parse", "show-ref", "worktree")]
        assert asked == ["status", "show-ref", "worktree", "worktree", "worktree"]


async def test_a_member_branch_made_meanwhile_is_refused_by_git_and_left_alone(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Git is not asked whether a member's branch exists (it is named after the new
    run's id); one that does after all makes the worktree add fail: the run is not
    made, and the branch, someone else's, is untouched."""
    monkeypatch.setattr(create, "member_branch", lambda *_: "taken/1")
    async with run_world(dirs, {"a": writes("a.txt", "a\n")}) as world:
        git(world.repo, "branch", "taken/1")
        tip = git(world.repo, "rev-parse", "taken/1").strip()
        error = await world.client.error(
            "run.create", {"project": world.project, "task": "t", "agent": "a", "n": 1}
        )
        assert error["code"] == ErrorCode.ALREADY_EXISTS
        assert "taken/1" in error["message"]
        assert git(world.repo, "rev-parse", "taken/1").strip() == tip
        assert (await world.client.call("run.list", {}))["runs"] == []
        assert (await world.client.call("session.list", {}))["sessions"] == []
        assert len(git(world.repo, "worktree", "list", "--porcelain").strip().split("\n\n")) == 1
