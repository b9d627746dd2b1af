"""Streaming benchmark: an agent's updates through mimird's journal to live
subscribers, against the agent alone and a bare ACP reader, in one run.

Run as ``.venv/bin/python bench/stream.py`` (or ``make bench-stream``). What it does:

1. makes a small git repository in a temporary directory and starts a real ``mimird``
   there (``--log-level warning``) with a config whose default agent kind runs
   ``bench/stream_agent.py``: on ``session/prompt`` it writes N ``agent_message_chunk``
   updates as fast as the pipe takes them, each stamped with ``time.monotonic_ns()``
   (CLOCK_MONOTONIC, the same clock in every process of the machine), then answers
   ``end_turn``;
2. per round: times the agent alone (its stdout read by a plain ``os.read`` loop in this
   process); the bare ACP floor (``bench/stream_baseline.py``: the same agent read by
   mimird's ``AcpConnection`` in a trio program of its own, counting updates, no
   journal); then mimird: a new session, its agent started (``session.resume``), 8
   subscribers on their own connections (``subscribe {session}``, no cursor: live),
   one ``session.prompt`` asking for N updates. Every subscriber decodes every
   notification, checks that seqs are contiguous and the updates' indexes are
   0..N-1 in order, each once, and takes the latency from the update's stamp to its
   own read. Then a new subscriber replays the finished session (``after_seq: 0``)
   and is timed until it has every event; and the database is checked (seqs 1..last
   with no gap, N updates stored);
3. one more turn paced at a rate the daemon sustains, for the latency when the journal
   is not saturated (a saturated pipeline's latency is its queues' length over its
   rate).

The subscribers (and the replay reader) run in this process, one epoll loop over raw
non-blocking sockets reading up to 1 MiB at a time, splitting lines and decoding them
with typed msgspec structs: a process apart from the daemon, so the two cores are
shared by the OS between daemon, agent and readers, and cheap enough that the daemon is
what is measured (the report gives each process's CPU time per event).

It prints a table and writes everything to ``bench/results/stream-<timestamp>.json``.
Absolute figures depend on the machine and its load; compare the ratios measured in
one run (see DESIGN.md, "Tests and measurements").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
from common import (
    STOP_TIMEOUT_S,
    git,
    log_tail,
    mimir_env,
    mimird_process,
    percentile,
    threads_cpu_ns,
    wait_ready,
    write_report,
)

BENCH_DIR: Final = Path(__file__).resolve().parent
RESULTS_DIR: Final = BENCH_DIR / "results"
AGENT: Final = BENCH_DIR / "stream_agent.py"
BASELINE: Final = BENCH_DIR / "stream_baseline.py"

KIND: Final = "stream"
PROJECT: Final = "bench"
RECEIVE_SIZE: Final = 1 << 20
READY_TIMEOUT_S: Final = 60.0
CALL_TIMEOUT_S: Final = 120.0
#: A poll that sees nothing for this long means the daemon is stuck or gone.
STALL_TIMEOUT_S: Final = 60.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
DURABLE_TARGET: Final = 20_000.0
REPLAY_TARGET: Final = 100_000.0


# ---- wire shapes the readers decode (only the fields they need) ------------------------


class _Stamp(msgspec.Struct):
    i: int
    t: int


class _Meta(msgspec.Struct):
    bench: _Stamp | None = None


class _Update(msgspec.Struct):
    meta: _Meta | None = msgspec.field(default=None, name="_meta")


class _UpdateData(msgspec.Struct):
    """The data of an ``update`` event: the agent's ``session/update`` params."""

    update: _Update | None = None


class _Event(msgspec.Struct):
    seq: int
    kind: str
    data: msgspec.Raw


class _EventParams(msgspec.Struct):
    subscription: int
    event: _Event


class _Line(msgspec.Struct):
    """A line a subscriber receives: an ``event`` notification (or an error)."""

    method: str | None = None
    params: _EventParams | None = None
    error: msgspec.Raw | None = None


_LINES: Final = msgspec.json.Decoder(_Line)
_UPDATE: Final = msgspec.json.Decoder(_UpdateData)


# ---- the environment: repository, config, daemon ------------------------------------


def make_repository(repo: Path) -> None:
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("stream bench\n")
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", "bench repository")


def agent_argv(count: int, batch: int, stats: Path) -> list[str]:
    return [
        sys.executable,
        str(AGENT),
        "--count",
        str(count),
        "--batch",
        str(batch),
        "--stats",
        str(stats),
    ]


def write_config(path: Path, argv: list[str]) -> None:
    lines = [
        "[defaults]",
        f"agent = {json.dumps(KIND)}",
        "",
        f"[agents.{KIND}]",
        f"command = {json.dumps(argv[0])}",
        f"args = [{', '.join(json.dumps(a) for a in argv[1:])}]",
    ]
    path.write_text("\n".join(lines) + "\n")


class RpcError(Exception):
    pass


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CALL_TIMEOUT_S)
    sock.connect(os.fspath(path))
    return sock


def _request(request_id: int, method: str, params: dict[str, Any]) -> bytes:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return msgspec.json.encode(message) + b"\n"


def _read_line(sock: socket.socket) -> tuple[bytes, bytes]:
    """One line from a blocking socket: (the line, what was read after it)."""
    chunks = [sock.recv(RECEIVE_SIZE)]
    while b"\n" not in chunks[-1]:
        if not chunks[-1]:
            raise RuntimeError("mimird closed the connection")
        chunks.append(sock.recv(RECEIVE_SIZE))
    line, _, rest = b"".join(chunks).partition(b"\n")
    return line, rest


def _result(method: str, line: bytes) -> Any:
    answer = msgspec.json.decode(line)
    if "error" in answer:
        raise RpcError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    socket_path: Path
    database: Path
    log_path: Path
    sock: socket.socket | None = None
    next_id: int = 0
    agent_pids: set[int] = field(default_factory=set)

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def cpu_ns(self) -> int:
        """CPU time of the daemon's threads so far (nanoseconds, from their schedstat)."""
        return threads_cpu_ns(self.proc.pid)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if self.sock is None:
            self.sock = _connect(self.socket_path)
        self.next_id += 1
        self.sock.sendall(_request(self.next_id, method, params or {}))
        line, _ = _read_line(self.sock)
        return _result(method, line)


def _kill_leftovers(pids: set[int]) -> list[int]:
    """SIGKILL those of ``pids`` (agents this bench had mimird start) still alive."""
    left = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        left.append(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@contextlib.contextmanager
def running_mimird(root: Path, config: Path) -> Iterator[Daemon]:
    (root / "home").mkdir()
    log_path = root / "mimird.log"
    env = mimir_env(root)
    env["MIMIR_CONFIG"] = str(config)
    agent_pids: set[int] = set()
    try:
        with mimird_process(env, log_path) as proc:
            daemon = Daemon(
                proc=proc,
                socket_path=root / "run" / "mimird.sock",
                database=root / "data" / "mimir.db",
                log_path=log_path,
                agent_pids=agent_pids,
            )
            try:
                wait_ready(daemon, READY_TIMEOUT_S)
                yield daemon
            finally:
                if daemon.sock is not None:
                    daemon.sock.close()
    finally:
        left = _kill_leftovers(agent_pids)
        if left:
            print(f"warning: agent processes {left} outlived mimird (killed)", file=sys.stderr)


def _process_cpu_s(pid: int) -> float:
    """User + system CPU time of a live process (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# ---- readers ----------------------------------------------------------------------------


class Reader:
    """One subscription's reader: splits, decodes and checks what arrives, and
    takes each update's latency from its stamp to the read that brought it."""

    def __init__(self, sock: socket.socket, subscription: int, first_seq: int) -> None:
        self.sock = sock
        self.subscription = subscription
        self.first_seq = first_seq
        #: The seq the next event must have.
        self.expected_seq = first_seq
        self.next_index = 0
        self.pending = b""
        self.events = 0
        self.updates = 0
        self.kinds: dict[str, int] = {}
        #: Events whose seq was not the next one (gaps, duplicates, reordering).
        self.seq_errors = 0
        #: Updates whose index was not the next one.
        self.index_errors = 0
        self.foreign = 0  # notifications of another subscription, or errors
        self.last_seq = first_seq - 1
        self.latencies: list[int] = []
        self.last_read_ns = 0

    def feed(self, data: bytes, now: int) -> None:
        if self.pending:
            data = self.pending + data
        end = data.rfind(b"\n")
        if end < 0:
            self.pending = data
            return
        self.pending = data[end + 1 :]
        self.last_read_ns = now
        record = self.latencies.append
        for line in _LINES.decode_lines(memoryview(data)[: end + 1]):
            params = line.params
            if params is None or params.subscription != self.subscription:
                self.foreign += 1
                continue
            event = params.event
            self.events += 1
            if event.seq != self.expected_seq:
                self.seq_errors += 1
            self.expected_seq = event.seq + 1
            self.last_seq = max(self.last_seq, event.seq)
            kind = event.kind
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if kind != "update":
                continue
            update = _UPDATE.decode(event.data).update
            stamp = update.meta.bench if update is not None and update.meta is not None else None
            if stamp is None:
                continue
            self.updates += 1
            record(now - stamp.t)
            if stamp.i != self.next_index:
                self.index_errors += 1
            self.next_index = stamp.i + 1

    def check(self, last_seq: int, updates: int) -> list[str]:
        """What went wrong for this reader, if anything: it must have every seq from
        its first to at least ``last_seq`` once, in order, and ``updates`` updates."""
        problems = []
        if self.last_seq < last_seq:
            problems.append(f"last seq {self.last_seq}, the database has {last_seq}")
        expected_events = self.last_seq - self.first_seq + 1
        if self.events != expected_events:
            problems.append(f"{self.events} events for seqs {self.first_seq}..{self.last_seq}")
        if self.seq_errors:
            problems.append(f"{self.seq_errors} events out of seq order")
        if self.updates != updates:
            problems.append(f"{self.updates} updates instead of {updates}")
        if self.index_errors:
            problems.append(f"{self.index_errors} updates out of index order")
        if self.foreign:
            problems.append(f"{self.foreign} foreign lines or errors")
        return problems


def subscribe(daemon: Daemon, params: dict[str, Any]) -> tuple[Reader, int]:
    """A new connection subscribed with ``params``: its reader, and the monotonic time
    at which the request was sent. What arrived after the answer is fed to the reader."""
    sock = _connect(daemon.socket_path)
    sent = time.monotonic_ns()
    sock.sendall(_request(1, "subscribe", params))
    line, rest = _read_line(sock)
    result = _result("subscribe", line)
    reader = Reader(sock, result["subscription"], result["cursor"] + 1)
    if rest:
        reader.feed(rest, time.monotonic_ns())
    sock.setblocking(False)
    return reader, sent


def _parse_utc(stamp: str) -> float:
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


# ---- measurements -------------------------------------------------------------------


def agent_alone(count: int, batch: int, stats: Path) -> dict[str, Any]:
    """The agent's own rate: its stdout read by a plain os.read loop, counting lines."""
    proc = subprocess.Popen(
        agent_argv(count, batch, stats),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        # Started and ready first: the answer to initialize is the first line it writes.
        proc.stdin.write(_request(1, "initialize", {"protocolVersion": 1}))
        proc.stdin.flush()
        proc.stdout.readline()
        prompt = {"prompt": [{"type": "text", "text": json.dumps({"count": count})}]}
        sent = time.monotonic_ns()
        proc.stdin.write(_request(2, "session/prompt", prompt))
        proc.stdin.flush()
        fd = proc.stdout.fileno()
        lines = 0
        while True:
            data = os.read(fd, RECEIVE_SIZE)
            if not data:
                raise RuntimeError("the agent closed its stdout during the prompt")
            lines += data.count(b"\n")
            if data.endswith(b"\n") and lines == count + 1:
                break
        answered = time.monotonic_ns()
        proc.stdin.close()
        proc.wait(STOP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with stats.open() as file:
        agent = json.loads(file.readlines()[-1])
    seconds = (answered - sent) / 1e9
    return {
        "updates": lines - 1,
        "seconds": seconds,
        "rate": count / seconds,
        "agent_cpu_s": agent["cpu_s"],
        "bytes": agent["bytes"],
    }


def acp_baseline(count: int, batch: int, stats: Path) -> dict[str, Any]:
    """The same agent read by a bare ACP client (bench/stream_baseline.py)."""
    argv = [sys.executable, str(BASELINE), str(count), "--", *agent_argv(count, batch, stats)]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its agent too: the whole group is ours to stop
    )
    try:
        out, err = proc.communicate(timeout=CALL_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the ACP baseline failed: {err.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(out)
    if result["updates"] != count or result["out_of_order"]:
        raise RuntimeError(f"the ACP baseline lost or reordered updates: {result}")
    with stats.open() as file:
        result["agent_cpu_s"] = json.loads(file.readlines()[-1])["cpu_s"]
    result["rate"] = count / result["seconds"]
    return result


def new_session(daemon: Daemon, title: str) -> tuple[str, int]:
    """A session with its agent started and ready: (id, agent pid)."""
    session = daemon.call("session.create", {"project": PROJECT, "title": title})
    resumed = daemon.call("session.resume", {"session": session["id"]})
    pid = int(resumed["agent_state"]["pid"])
    daemon.agent_pids.add(pid)
    return str(session["id"]), pid


def stored(database: Path, session_id: str) -> dict[str, Any]:
    """What the database holds for the session (read-only, while the daemon runs)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        count, low, high = db.execute(
            "SELECT count(*), min(seq), max(seq) FROM events WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        updates, first, last = db.execute(
            "SELECT count(*), min(created_at), max(created_at) FROM events"
            " WHERE session_id = ? AND kind = 'update'",
            (session_id,),
        ).fetchone()
    return {
        "events": count,
        "min_seq": low,
        "max_seq": high,
        "updates": updates,
        "first_update_created_at": first,
        "last_update_created_at": last,
    }


def turn(
    daemon: Daemon,
    session_id: str,
    agent_pid: int,
    subscribers: int,
    options: dict[str, Any],
    stats: Path,
) -> dict[str, Any]:
    """One prompt with ``subscribers`` live readers; everything measured about it."""
    count = int(options["count"])
    readers = [subscribe(daemon, {"session": session_id})[0] for _ in range(subscribers)]
    control = _connect(daemon.socket_path)
    poller = select.epoll()
    try:
        by_fd = {r.sock.fileno(): r for r in readers}
        for fd in by_fd:
            poller.register(fd, select.EPOLLIN)
        prompt = {"session": session_id, "text": json.dumps(options)}
        daemon_cpu = daemon.cpu_ns()
        agent_cpu = _process_cpu_s(agent_pid)
        bench_cpu = time.process_time()
        sent = time.monotonic_ns()
        control.sendall(_request(1, "session.prompt", prompt))
        control.setblocking(False)
        poller.register(control.fileno(), select.EPOLLIN)
        answer = b""
        answered = 0
        result: dict[str, Any] | None = None
        last_seq = 0  # the session's newest stored seq once the turn has ended
        while not last_seq or any(r.last_seq < last_seq for r in readers):
            events = poller.poll(STALL_TIMEOUT_S)
            if not events:
                raise RuntimeError(
                    f"nothing from mimird for {STALL_TIMEOUT_S}s:\n{daemon.log_tail()}"
                )
            for fd, _ in events:
                reader = by_fd.get(fd)
                if reader is None:
                    answer += control.recv(RECEIVE_SIZE)
                    if answer.endswith(b"\n"):
                        answered = time.monotonic_ns()
                        result = _result("session.prompt", answer)
                        poller.unregister(fd)
                        last_seq = stored(daemon.database, session_id)["max_seq"]
                    continue
                data = reader.sock.recv(RECEIVE_SIZE)
                if not data:
                    raise RuntimeError(f"mimird closed a subscriber:\n{daemon.log_tail()}")
                reader.feed(data, time.monotonic_ns())
        delivered = time.monotonic_ns()
        bench_cpu = time.process_time() - bench_cpu
        daemon_cpu = daemon.cpu_ns() - daemon_cpu
        agent_cpu = _process_cpu_s(agent_pid) - agent_cpu
    finally:
        poller.close()
        control.close()
        for r in readers:
            r.sock.close()
    assert result is not None
    with stats.open() as file:
        agent = json.loads(file.readlines()[-1])
    problems = {i: p for i, r in enumerate(readers) if (p := r.check(last_seq, count))}
    database = stored(daemon.database, session_id)
    seconds = (answered - sent) / 1e9
    # created_at is stamped once per batch, as the writer starts it (its commit follows).
    first_commit = _parse_utc(database["first_update_created_at"])
    last_commit = _parse_utc(database["last_update_created_at"])
    latencies = sorted(ns for r in readers for ns in r.latencies)
    return {
        "session": session_id,
        "options": options,
        "subscribers": subscribers,
        "updates": count,
        "prompt_seq": result["prompt_seq"],
        "end_seq": result["end_seq"],
        "stop_reason": result["stop_reason"],
        "prompt_to_answer_s": seconds,
        "durable_rate": count / seconds,
        "commit_span_s": last_commit - first_commit,
        "commit_span_rate": (count - 1) / (last_commit - first_commit)
        if last_commit > first_commit
        else float("nan"),
        "agent_write_span_s": (agent["last_write_ns"] - agent["first_write_ns"]) / 1e9,
        "delivered_s": (delivered - sent) / 1e9,
        "last_seq": last_seq,
        "events_per_subscriber": [r.events for r in readers],
        "kinds": readers[0].kinds if readers else {},
        "latency_p50_ms": percentile(latencies, 0.50) / 1e6,
        "latency_p99_ms": percentile(latencies, 0.99) / 1e6,
        "latency_max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        "latency_samples": len(latencies),
        "cpu_us_per_update": {
            "mimird": daemon_cpu / count / 1e3,
            "agent": agent_cpu / count * 1e6,
            "bench_readers": bench_cpu / count * 1e6,
        },
        "verified": not problems
        and database["updates"] == count
        and database["min_seq"] == 1
        and database["max_seq"] == database["events"],
        "problems": {str(i): p for i, p in problems.items()},
        "database": database,
    }


def replay(daemon: Daemon, session_id: str, last_seq: int) -> dict[str, Any]:
    """A new subscriber from ``after_seq: 0``, timed until it has event ``last_seq``."""
    daemon_cpu = daemon.cpu_ns()
    bench_cpu = time.process_time()
    reader, sent = subscribe(daemon, {"session": session_id, "after_seq": 0})
    reader.sock.setblocking(True)
    try:
        while reader.last_seq < last_seq:
            data = reader.sock.recv(RECEIVE_SIZE)
            if not data:
                raise RuntimeError(f"mimird closed the replay:\n{daemon.log_tail()}")
            reader.feed(data, time.monotonic_ns())
        done = reader.last_read_ns
    finally:
        reader.sock.close()
    bench_cpu = time.process_time() - bench_cpu
    daemon_cpu = daemon.cpu_ns() - daemon_cpu
    seconds = (done - sent) / 1e9
    ok = reader.events == reader.last_seq and not reader.seq_errors and not reader.foreign
    return {
        "events": reader.events,
        "seconds": seconds,
        "rate": reader.events / seconds,
        "verified": ok,
        "cpu_us_per_event": {
            "mimird": daemon_cpu / reader.events / 1e3,
            "bench_reader": bench_cpu / reader.events * 1e6,
        },
    }


# ---- output -----------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float]) -> str:
    return f"({min(values):,.0f}..{max(values):,.0f})" if values else ""


def render(report: dict[str, Any]) -> str:
    cfg = report["config"]
    s = report["summary"]
    machine = report["machine"]
    lines = [
        f"Mimir stream bench, {report['started_at']}  ({machine['cpus']} CPUs, "
        f"load {machine['load_before'][0]:.2f} before, {machine['load_after'][0]:.2f} after)",
        f"{cfg['rounds']} rounds; a turn is {cfg['count']:,} agent_message_chunk updates of "
        f"{s['update_bytes']:.0f} B (the agent writes up to {cfg['batch']} per write); "
        f"{cfg['subscribers']} live subscribers per mimird turn",
        "",
        f"{'':<44} {'events/s':>10} {'(min..max)':>22}",
    ]
    rows = [
        ("agent alone (os.read of its pipe)", s["agent_alone_rates"]),
        ("bare ACP reader (AcpConnection, no journal)", s["baseline_rates"]),
        ("mimird durable (prompt sent -> answered)", s["durable_rates"]),
        ("mimird first -> last update commit", s["commit_span_rates"]),
        (f"replay, subscribe after_seq 0 ({s['replay_events']:,} events)", s["replay_rates"]),
    ]
    for label, values in rows:
        lines.append(f"{label:<44} {_median(values):>10,.0f} {_spread(values):>22}")
    ratio = s["durable_over_baseline"]
    durable = _median(s["durable_rates"])
    replay_rate = _median(s["replay_rates"])
    lines += [
        "",
        f"mimird durable / bare ACP: {ratio:.2f} (medians; per round "
        + ", ".join(f"{r:.2f}" for r in s["durable_over_baseline_rounds"])
        + ")",
        f"target durable >= {DURABLE_TARGET:,.0f}/s: "
        + ("met" if durable >= DURABLE_TARGET else "MISSED"),
        f"target replay >= {REPLAY_TARGET:,.0f}/s: "
        + ("met" if replay_rate >= REPLAY_TARGET else "MISSED"),
        "",
        "latency, agent's stamp -> subscriber's read (all subscribers' updates):",
        f"  {'':<40} {'p50':>9} {'p99':>9} {'max':>9}",
    ]
    for label, lat in s["latencies"].items():
        lines.append(
            f"  {label:<40} {lat['p50_ms']:>7.2f}ms {lat['p99_ms']:>7.2f}ms {lat['max_ms']:>7.1f}ms"
        )
    cpu = s["cpu_us_per_update"]
    lines += [
        "",
        "CPU per update in a saturated mimird turn (medians): "
        f"mimird {cpu['mimird']:.1f} µs, agent {cpu['agent']:.1f} µs, "
        f"bench readers {cpu['bench_readers']:.1f} µs ({cfg['subscribers']} subscribers)",
        f"CPU per event of a replay: mimird {s['replay_cpu_us']['mimird']:.1f} µs, "
        f"reader {s['replay_cpu_us']['bench_reader']:.1f} µs",
        "",
        "verification: " + s["verification"],
    ]
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=100_000, help="updates per turn")
    parser.add_argument("--batch", type=int, default=64, help="lines per agent write at most")
    parser.add_argument("--subscribers", type=int, default=8, help="live subscribers")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each: agent, ACP, mimird)")
    parser.add_argument("--replays", type=int, default=2, help="replays per round")
    parser.add_argument("--paced-rate", type=float, default=10_000, help="updates/s, 0 to skip")
    parser.add_argument("--paced-count", type=int, default=50_000, help="updates when paced")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    # SIGTERM becomes SystemExit, so that the finally blocks stop the daemon.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    paced: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="mimir-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        stats = root / "agent-stats.jsonl"
        make_repository(root / "repo")
        config = root / "config.toml"
        write_config(config, agent_argv(args.count, args.batch, stats))
        with running_mimird(root, config) as daemon:
            daemon.call("project.add", {"path": str(root / "repo"), "name": PROJECT})
            for round_no in range(args.rounds):
                print(f"round {round_no + 1}/{args.rounds}: agent alone ...", flush=True)
                alone = agent_alone(args.count, args.batch, stats)
                print("  bare ACP reader ...", flush=True)
                baseline = acp_baseline(args.count, args.batch, stats)
                print(f"  mimird with {args.subscribers} subscribers ...", flush=True)
                session_id, pid = new_session(daemon, f"stream round {round_no}")
                measured = turn(
                    daemon, session_id, pid, args.subscribers, {"count": args.count}, stats
                )
                print(f"  {args.replays} replays ...", flush=True)
                head = stored(daemon.database, session_id)["max_seq"]
                replays = [replay(daemon, session_id, head) for _ in range(args.replays)]
                daemon.call("session.stop", {"session": session_id})
                rounds.append(
                    {
                        "round": round_no,
                        "agent_alone": alone,
                        "acp_baseline": baseline,
                        "mimird": measured,
                        "replays": replays,
                    }
                )
            if args.paced_rate > 0:
                print(f"paced turn: {args.paced_count:,} updates at {args.paced_rate:,.0f}/s ...")
                session_id, pid = new_session(daemon, "stream paced")
                options = {"count": args.paced_count, "rate": args.paced_rate}
                paced = turn(daemon, session_id, pid, args.subscribers, options, stats)
                daemon.call("session.stop", {"session": session_id})

    durable = [r["mimird"]["durable_rate"] for r in rounds]
    baseline_rates = [r["acp_baseline"]["rate"] for r in rounds]
    replays = [p for r in rounds for p in r["replays"]]
    turns = [r["mimird"] for r in rounds] + ([paced] if paced else [])
    failures = [t for t in turns if not t["verified"]] + [p for p in replays if not p["verified"]]
    total_events = sum(sum(t["events_per_subscriber"]) for t in turns)
    verification = (
        f"{len(turns)} turns x {args.subscribers} subscribers ({total_events:,} deliveries) and "
        f"{len(replays)} replays: every event exactly once, seqs contiguous and in order, "
        f"every update's index 0..N-1 in order; the database holds seqs 1..last, no gap"
        if not failures
        else f"FAILED in {len(failures)} turn(s)/replay(s): "
        + "; ".join(json.dumps(f.get("problems", f)) for f in failures)
    )
    latencies = {
        f"saturated ({args.count:,} as fast as possible)": {
            "p50_ms": _median([r["mimird"]["latency_p50_ms"] for r in rounds]),
            "p99_ms": _median([r["mimird"]["latency_p99_ms"] for r in rounds]),
            "max_ms": max(r["mimird"]["latency_max_ms"] for r in rounds),
        },
        "bare ACP reader, saturated": {
            "p50_ms": _median([r["acp_baseline"]["latency_p50_us"] / 1e3 for r in rounds]),
            "p99_ms": _median([r["acp_baseline"]["latency_p99_us"] / 1e3 for r in rounds]),
            "max_ms": max(r["acp_baseline"]["latency_max_us"] / 1e3 for r in rounds),
        },
    }
    if paced is not None:
        latencies[f"paced ({args.paced_count:,} at {args.paced_rate:,.0f}/s)"] = {
            "p50_ms": paced["latency_p50_ms"],
            "p99_ms": paced["latency_p99_ms"],
            "max_ms": paced["latency_max_ms"],
        }
    summary = {
        "update_bytes": rounds[0]["agent_alone"]["bytes"] / args.count,
        "agent_alone_rates": [r["agent_alone"]["rate"] for r in rounds],
        "baseline_rates": baseline_rates,
        "durable_rates": durable,
        "commit_span_rates": [r["mimird"]["commit_span_rate"] for r in rounds],
        "replay_rates": [p["rate"] for p in replays],
        "replay_events": replays[0]["events"] if replays else 0,
        "durable_over_baseline": _median(durable) / _median(baseline_rates),
        "durable_over_baseline_rounds": [
            d / b for d, b in zip(durable, baseline_rates, strict=True)
        ],
        "latencies": latencies,
        "cpu_us_per_update": {
            key: _median([r["mimird"]["cpu_us_per_update"][key] for r in rounds])
            for key in ("mimird", "agent", "bench_readers")
        },
        "replay_cpu_us": {
            key: _median([p["cpu_us_per_event"][key] for p in replays])
            for key in ("mimird", "bench_reader")
        },
        "verification": verification,
        "verified": not failures,
    }
    report: dict[str, Any] = {
        "bench": "stream",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version,
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "config": {
            "count": args.count,
            "batch": args.batch,
            "subscribers": args.subscribers,
            "rounds": args.rounds,
            "replays": args.replays,
            "paced_rate": args.paced_rate,
            "paced_count": args.paced_count,
            "readers": "one epoll loop in the bench process: raw non-blocking Unix sockets, "
            "recv of up to 1 MiB, lines decoded with typed msgspec structs",
        },
        "targets": {"durable_rate_min": DURABLE_TARGET, "replay_rate_min": REPLAY_TARGET},
        "summary": summary,
        "rounds": rounds,
        "paced": paced,
    }
    write_report(report, render(report), args.out, "stream", started)
    if failures:
        print("error: some subscriber missed, repeated or reordered events", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
