"""A competition run end to end, with the scripted fake agent: members that write
different files, checks that pass and fail, the decision by the checks or by the
user (run.pick)."""

from __future__ import annotations

import pytest

from tests.runs.world import run_world, writes
from tests.support.helpers import DaemonDirs, git

pytestmark = pytest.mark.timeout(90)


async def test_a_run_gives_the_task_to_every_member_and_waits_for_the_users_pick(
    dirs: DaemonDirs,
) -> None:
    scenarios = {"alpha": writes("a.txt", "alpha\n"), "beta": writes("b.txt", "beta\nbeta\n")}
    async with run_world(dirs, scenarios) as world:
        run = await world.create(agents=["alpha", "beta"])
        assert [m["slot"] for m in run["members"]] == [1, 2]
        assert [m["agent"] for m in run["members"]] == ["alpha", "beta"]
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
        kinds = await world.kinds(run)
        assert kinds[0] == "run_created"
        assert kinds.count("member_started") == kinds.count("member_finished") == 2
        picked = await world.client.call("run.pick", {"run": run["id"], "slot": 2})
        assert picked["winner"] == 2
        assert picked["decision"]["by"] == "user"
        final = await world.until_status(run, "decided", "completed")
        loser = next(m for m in final["members"] if m["slot"] == 1)
        assert loser["status"] == "deleted"
