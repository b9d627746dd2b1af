"""A bench ACP agent that streams as fast as it can (stdlib only, no trio).

Usage: ``python stream_agent.py [--count N] [--batch B] [--text T] [--stats FILE]``.
It answers ``initialize`` and ``session/new``; on ``session/prompt`` it writes
``count`` ``agent_message_chunk`` updates, then answers ``{"stopReason": "end_turn"}``.
The prompt's text may be a JSON object overriding ``count``, ``batch`` and ``rate``
(events per second; 0, the default, means as fast as the pipe takes them).

Each update carries ``_meta: {"bench": {"i": index, "t": time.monotonic_ns()}}`` (the
index counts from 0 within the prompt; CLOCK_MONOTONIC is shared by every process of
the machine, so a reader can subtract it from its own ``time.monotonic_ns()``). ``t``
is read when the update is put in the output buffer, just before the buffer is
written: up to ``batch`` lines go out in one ``write`` (and always the last ones
before the answer), so under a full pipe ``t`` includes the time the agent waited
for the reader.

After each prompt one JSON line goes to the ``--stats`` file: how many updates,
the bytes written, the monotonic time of the first and last write, and the
agent's CPU time for the prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

SESSION_ID = "bench-session"
PROTOCOL_VERSION = 1


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class StreamAgent:
    def __init__(self, count: int, batch: int, text: str, stats: str | None) -> None:
        self.count = count
        self.batch = batch
        self.text = text
        self.stats = stats
        self.out = sys.stdout.fileno()

    def send(self, message: dict[str, Any]) -> None:
        write_all(self.out, (json.dumps(message, separators=(",", ":")) + "\n").encode())

    def stream(self, count: int, batch: int, rate: float) -> dict[str, Any]:
        head = (
            '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"'
            + SESSION_ID
            + '","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text",'
            + '"text":'
            + json.dumps(self.text)
            + '},"_meta":{"bench":{"i":'
        )
        tail = "}" * 5 + "\n"  # bench, _meta, update, params, the message
        clock = time.monotonic_ns
        cpu = time.process_time()
        first_ns = 0
        written = 0
        out = self.out
        i = 0
        start = clock()
        while i < count:
            n = min(batch, count - i)
            if rate > 0:
                due = int((clock() - start) * rate / 1e9) + 1 - i
                if due <= 0:
                    time.sleep(min(1.0 / rate, 0.001))
                    continue
                n = min(n, due)
            lines = []
            for j in range(i, i + n):
                lines.append(f'{head}{j},"t":{clock()}{tail}')
            data = "".join(lines).encode()
            write_all(out, data)
            if not first_ns:
                first_ns = clock()
            written += len(data)
            i += n
        return {
            "updates": count,
            "bytes": written,
            "first_write_ns": first_ns,
            "last_write_ns": clock(),
            "start_ns": start,
            "cpu_s": time.process_time() - cpu,
            "batch": batch,
            "rate": rate,
        }

    def prompt(self, params: Any) -> None:
        options: dict[str, Any] = {}
        blocks = params.get("prompt", []) if isinstance(params, dict) else []
        text = " ".join(b.get("text", "") for b in blocks if isinstance(b, dict)).strip()
        if text.startswith("{"):
            options = json.loads(text)
        stats = self.stream(
            int(options.get("count", self.count)),
            max(1, int(options.get("batch", self.batch))),
            float(options.get("rate", 0)),
        )
        if self.stats:
            with open(self.stats, "a") as file:
                file.write(json.dumps(stats) + "\n")

    def run(self) -> None:
        for line in sys.stdin.buffer:
            if not line.strip():
                continue
            message = json.loads(line)
            method = message.get("method")
            if "id" not in message or method is None:
                continue  # notifications (session/cancel) and answers
            result: Any
            if method == "initialize":
                result = {
                    "protocolVersion": PROTOCOL_VERSION,
                    "agentCapabilities": {},
                    "authMethods": [],
                    "agentInfo": {"name": "mimir-bench-stream", "version": "1"},
                }
            elif method == "session/new":
                result = {"sessionId": SESSION_ID}
            elif method == "session/prompt":
                self.prompt(message.get("params"))
                result = {"stopReason": "end_turn"}
            else:
                error = {"code": -32601, "message": f"method not found: {method}"}
                self.send({"jsonrpc": "2.0", "id": message["id"], "error": error})
                continue
            self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=100_000, help="updates per prompt")
    parser.add_argument("--batch", type=int, default=64, help="lines per write at most")
    parser.add_argument("--text", default="tok ", help="the text of each chunk")
    parser.add_argument("--stats", help="append one JSON line per prompt to this file")
    args = parser.parse_args()
    StreamAgent(args.count, args.batch, args.text, args.stats).run()


if __name__ == "__main__":
    main()
