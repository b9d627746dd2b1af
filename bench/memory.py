"""Memory benchmark: mimird's resident memory across turns of one long streamed message.

Run as ``.venv/bin/python bench/memory.py`` (or ``make bench-memory``). What it does, in a
temporary directory:

1. makes a small git repository and starts a real ``mimird`` there (``--log-level warning``)
   with a config whose default agent kind runs the scripted test agent
   ``tests/support/fake_acp_agent.py``: on every ``session/prompt`` it writes ``--chunks``
   ``agent_message_chunk`` updates of ``--size`` characters each (one agent message of
   chunks x size characters), then answers ``end_turn``;
2. one session, its agent started (``session.resume``), no subscriber; then ``--turns``
   prompts one after the other, each answered after its ``turn_ended`` is committed;
3. the agent stopped (``session.stop``), and a few seconds idle.

Reported: mimird's VmRSS (and VmHWM, the peak) from ``/proc/<pid>/status`` when idle
before the first turn, after each turn, after the agent stopped and after the idle wait;
then the figures the targets are about: RSS after the last turn over RSS after the first
(target <= 1.5) and RSS after the agent stopped over the idle RSS.

It prints a table and writes everything to ``bench/results/memory-<timestamp>.json``.
The daemon is stopped (SIGTERM) in a ``finally`` block, and any agent it reported that
outlived it is killed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from common import write_report
from stream import PROJECT, make_repository, new_session, running_mimird, write_config

BENCH_DIR: Final = Path(__file__).resolve().parent
RESULTS_DIR: Final = BENCH_DIR / "results"
AGENT: Final = BENCH_DIR.parent / "tests" / "support" / "fake_acp_agent.py"
#: The target: RSS after the last turn within this factor of RSS after the first.
GROWTH_TARGET: Final = 1.5


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a live process, in KiB."""
    figures: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0])
    return figures


#: The words of the agent's texts (the fake agent appends each chunk's index).
WORDS: Final = "the quick brown fox jumps over a lazy dog while mimir keeps every word "


def write_scenario(path: Path, turns: int, chunks: int, size: int, *, words: bool) -> None:
    """The fake agent's scenario: ``turns`` prompts, each answered after ``chunks``
    updates of ``size`` characters: words then the chunk's index, or with
    ``words`` false ``x`` * (size - 6) then the index (a message of one 20 MB token)."""
    stem = (WORDS * (size // len(WORDS) + 1))[: size - 6] if words else "x" * (size - 6)
    step = {"do": "chunks", "count": chunks, "text": stem}
    path.write_text(json.dumps({"prompts": [[step] for _ in range(turns)]}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=20, help="prompts, one after the other")
    parser.add_argument("--chunks", type=int, default=100_000, help="updates per turn")
    parser.add_argument("--size", type=int, default=200, help="characters per update")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle at the end")
    parser.add_argument(
        "--one-token", action="store_true", help="texts without spaces (one giant search token)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    # SIGTERM becomes SystemExit, so that the finally blocks stop the daemon.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    started = datetime.datetime.now(datetime.UTC)
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mimir-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        make_repository(root / "repo")
        scenario = root / "scenario.json"
        write_scenario(scenario, args.turns, args.chunks, args.size, words=not args.one_token)
        config = root / "config.toml"
        write_config(config, [sys.executable, str(AGENT), str(scenario)])
        with running_mimird(root, config) as daemon:
            pid = daemon.proc.pid

            def sample(label: str, seconds: float | None = None) -> None:
                kib = rss_kib(pid)
                figures: dict[str, Any] = {"label": label, **kib}
                if seconds is not None:
                    figures["seconds"] = round(seconds, 2)
                samples.append(figures)
                print(
                    f"  {label:<22} RSS {kib['VmRSS'] / 1024:7.1f} MiB"
                    f"  peak {kib['VmHWM'] / 1024:7.1f} MiB"
                    + (f"  ({seconds:.1f} s)" if seconds is not None else ""),
                    flush=True,
                )

            daemon.call("project.add", {"path": str(root / "repo"), "name": PROJECT})
            sample("started")
            session_id, _ = new_session(daemon, "memory")
            sample("agent started")
            for number in range(1, args.turns + 1):
                began = time.monotonic()
                daemon.call("session.prompt", {"session": session_id, "text": "go"})
                sample(f"after turn {number}", time.monotonic() - began)
            daemon.call("session.stop", {"session": session_id})
            sample("agent stopped")
            time.sleep(args.idle)
            sample(f"idle {args.idle:g} s")

    by_label = {s["label"]: s["VmRSS"] for s in samples}
    first = by_label["after turn 1"]
    last = by_label[f"after turn {args.turns}"]
    growth = last / first
    stopped_over_idle = by_label["agent stopped"] / by_label["agent started"]
    report = {
        "started": started.isoformat(),
        "config": vars(args) | {"out": str(args.out)},
        "load_avg": os.getloadavg(),
        "samples": samples,
        "growth_last_over_first": growth,
        "stopped_over_idle": stopped_over_idle,
        "passed": growth <= GROWTH_TARGET,
    }
    text = "\n".join(
        [
            f"{args.turns} turns of {args.chunks:,} updates of {args.size} characters "
            f"({args.chunks * args.size / 1e6:.1f} MB per agent message), no subscriber",
            f"RSS after turn 1: {first / 1024:.1f} MiB, after turn {args.turns}: "
            f"{last / 1024:.1f} MiB, ratio {growth:.2f} (target <= {GROWTH_TARGET})",
            f"RSS after the agent stopped / with the agent idle before turn 1: "
            f"{stopped_over_idle:.2f}",
        ]
    )
    write_report(report, text, args.out, "memory", started)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
