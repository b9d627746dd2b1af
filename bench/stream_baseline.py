"""The baseline of ``bench/stream.py``: the bench agent read by a bare ACP client.

Usage: ``python bench/stream_baseline.py COUNT -- AGENT_ARGV...``. A trio program
that starts the agent, speaks ACP to it through mimird's own
:class:`mimird.agents.acp.AcpConnection` (``initialize``, ``session/new``, then one
``session/prompt``), and counts the ``session/update`` notifications: no journal,
no database, no subscribers. Each update's embedded ``time.monotonic_ns()`` is
compared to the time the handler sees it. Prints one JSON object on stdout: how
many updates arrived, the time from sending the prompt to its answer, the latencies'
percentiles and this process's CPU time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import trio
from common import percentile

from mimird.agents.acp import AcpConnection


class Counter:
    """The ACP handler: counts updates and records their latency, nothing else."""

    def __init__(self) -> None:
        self.updates = 0
        self.next_index = 0
        self.out_of_order = 0
        self.latencies: list[int] = []

    async def on_request(self, method: str, params: Any) -> Any:
        raise NotImplementedError(method)

    async def on_notification(self, method: str, params: Any) -> None:
        if method != "session/update":
            return
        now = time.monotonic_ns()
        stamp = params["update"]["_meta"]["bench"]
        self.latencies.append(now - stamp["t"])
        if stamp["i"] != self.next_index:
            self.out_of_order += 1
        self.next_index = stamp["i"] + 1
        self.updates += 1

    async def on_protocol_error(self, line_preview: str, reason: str) -> None:
        raise RuntimeError(f"protocol error: {reason}: {line_preview}")


async def run(count: int, argv: list[str]) -> dict[str, Any]:
    counter = Counter()
    process = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        async with AcpConnection.open(process.stdout, process.stdin, counter) as conn:
            await conn.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
            session = await conn.request("session/new", {"cwd": "/", "mcpServers": []})
            prompt = [{"type": "text", "text": json.dumps({"count": count})}]
            cpu = time.process_time()
            sent = time.monotonic_ns()
            result = await conn.request(
                "session/prompt", {"sessionId": session["sessionId"], "prompt": prompt}
            )
            answered = time.monotonic_ns()
            cpu = time.process_time() - cpu
    finally:
        with trio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    latencies = sorted(counter.latencies)
    return {
        "stop_reason": result.get("stopReason") if isinstance(result, dict) else None,
        "updates": counter.updates,
        "out_of_order": counter.out_of_order,
        "prompt_sent_ns": sent,
        "answered_ns": answered,
        "seconds": (answered - sent) / 1e9,
        "cpu_s": cpu,
        "latency_p50_us": percentile(latencies, 0.50) / 1e3,
        "latency_p99_us": percentile(latencies, 0.99) / 1e3,
        "latency_max_us": (latencies[-1] / 1e3) if latencies else float("nan"),
    }


def main() -> None:
    count = int(sys.argv[1])
    if sys.argv[2] != "--":
        raise SystemExit("usage: stream_baseline.py COUNT -- AGENT_ARGV...")
    report = trio.run(run, count, sys.argv[3:])
    print(json.dumps(report))


if __name__ == "__main__":
    main()
