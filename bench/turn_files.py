"""What journaling a turn's changed files costs the turn path, in one run.

Run as ``.venv/bin/python bench/turn_files.py [FILES]`` (default 2,000 files). An
in-process mimird with the scripted fake agent (tests/support/fake_acp_agent.py, which
answers a prompt at once) in a git repository of FILES small files; per round, 40 empty
turns (``session.prompt`` round trips, the first 5 left out) with the turn's file
comparison on, and 40 with it replaced by one that does nothing; rounds alternate. It
prints the p50 of each round and the ratio of the best p50s. An empty turn is the worst
case: a real agent's turn takes seconds, and the comparison costs the same whatever the
agent did (a few git processes, plus reading the files that changed).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimird.agents import host, turn_files
from tests.support.agents import Client, write_config
from tests.support.helpers import DaemonDirs, in_process_daemon, make_repo

TURNS = 40
WARM_UP = 5
ROUNDS = 2


class NoFiles(turn_files.TurnFiles):
    async def start(self) -> turn_files.Start:
        return turn_files.Start(None, "off")

    async def changes(self, start: turn_files.Start | None) -> turn_files.Changes:
        return turn_files.Changes(None, 0, "off")


async def p50_of_a_turn(kind: type[turn_files.TurnFiles], files: dict[str, str]) -> float:
    setattr(host, "TurnFiles", kind)  # noqa: B010 (replaced for the measurement)
    with tempfile.TemporaryDirectory(prefix="mimir-bench-turn-files-") as tmp:
        dirs = DaemonDirs(Path(tmp))
        write_config(dirs, {})
        repo = make_repo(dirs.root / "repo", files)
        async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as c:
            project = await c.call("project.add", {"path": str(repo)})
            session = await c.call("session.create", {"project": project["id"]})
            await c.call("session.resume", {"session": session["id"]})
            times = []
            for _ in range(TURNS):
                began = time.perf_counter()
                await c.call("session.prompt", {"session": session["id"], "text": "x"})
                times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times[WARM_UP:])


async def main(count: int) -> None:
    files = {f"src/m{i // 100}/f{i}.py": f"x = {i}\n" for i in range(count)}
    found: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(ROUNDS):
        found["without"].append(await p50_of_a_turn(NoFiles, files))
        found["with"].append(await p50_of_a_turn(turn_files.TurnFiles, files))
    print(f"an empty turn, {count} files in the repository, p50 ms per round:")
    for name, p50s in found.items():
        print(f"  {name:8} the file comparison: {', '.join(f'{p:.1f}' for p in p50s)}")
    print(f"  ratio of the best p50s: {min(found['with']) / min(found['without']):.2f}")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
