"""RPC benchmark: mimird against a bare trio JSON-RPC server, side by side in one run.

Run as ``.venv/bin/python bench/rpc.py`` (or ``make bench``). What it does:

1. starts ``bench/echo_server.py`` (trio, NDJSON, msgspec decode of each request,
   answer ``{"jsonrpc":"2.0","id":..,"result":{}}``) and a real ``mimird`` (in a
   temporary directory, ``--log-level warning``), each as its own process;
2. drives both with the same client (one epoll loop in this process, pre-encoded
   request bytes, a response is complete at its newline, nothing is decoded in the
   timed loop), with 1 and with N concurrent connections, one request outstanding
   per connection, calling ``daemon.status``; the measurements are interleaved
   round by round (server order alternating) so that drift hits both servers alike,
   and each also reads the CPU time server and client used per request;
3. times ``mimirctl status`` against the running mimird, and ``python -c pass`` the
   same way, alternating, and reads mimird's VmRSS after the load and after a few
   seconds idle.

It prints a table and writes everything to ``bench/results/rpc-<timestamp>.json``.
Absolute figures depend on the machine and its load; the ratios measured here in
one run are the point (see DESIGN.md, "Tests and measurements").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import msgspec
from common import installed, mimir_env, percentile, write_report

BENCH_DIR: Final = Path(__file__).resolve().parent
RESULTS_DIR: Final = BENCH_DIR / "results"
ECHO_SERVER: Final = BENCH_DIR / "echo_server.py"

METHOD: Final = "daemon.status"
RECEIVE_SIZE: Final = 64 * 1024
READY_TIMEOUT_S: Final = 30.0
#: A poll that sees nothing for this long means the server is stuck or gone.
STALL_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 10.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
THROUGHPUT_TARGET: Final = 0.7
MIMIRCTL_TARGET_MS: Final = 50.0

# ---- servers ------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    description: str
    socket_path: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (all its threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        # utime and stime are fields 14 and 15 of proc(5); fields[0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) from /proc, in KiB."""
        found: dict[str, int] = {}
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0])
        return found


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the bench reaches the servers only through us
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, a bounded wait, then SIGKILL; always reaps the process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def _call_once(path: Path, method: str, timeout: float = 2.0) -> dict[str, Any]:
    request = {"jsonrpc": "2.0", "id": 0, "method": method}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(msgspec.json.encode(request) + b"\n")
        with sock.makefile("rb") as answers:
            response: dict[str, Any] = msgspec.json.decode(answers.readline())
    return response


def _wait_ready(server: Server, check: str) -> dict[str, Any]:
    """Poll until ``check`` answers without an error; the first answer is returned."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode} before it was ready:\n"
                + server.log_tail()
            )
        try:
            response = _call_once(server.socket_path, check)
        except (OSError, msgspec.DecodeError):
            time.sleep(0.05)
            continue
        if "result" not in response:
            raise RuntimeError(f"{server.name} answered {check} with {response}")
        return response
    raise RuntimeError(f"{server.name} not ready after {READY_TIMEOUT_S}s:\n{server.log_tail()}")


@contextlib.contextmanager
def echo_server(root: Path) -> Iterator[Server]:
    socket_path = root / "echo.sock"
    log_path = root / "echo.log"
    proc = _spawn([sys.executable, str(ECHO_SERVER), str(socket_path)], dict(os.environ), log_path)
    server = Server(
        name="echo",
        description="trio + msgspec: read a line, decode it, answer {} (bench/echo_server.py)",
        socket_path=socket_path,
        proc=proc,
        log_path=log_path,
    )
    try:
        _wait_ready(server, METHOD)
        yield server
    finally:
        _stop(proc)


@contextlib.contextmanager
def mimird_server(root: Path) -> Iterator[Server]:
    (root / "home").mkdir()
    log_path = root / "mimird.log"
    proc = _spawn([*installed("mimird"), "--log-level", "warning"], mimir_env(root), log_path)
    server = Server(
        name="mimird",
        description=f"the real daemon, method {METHOD}",
        socket_path=root / "run" / "mimird.sock",
        proc=proc,
        log_path=log_path,
    )
    try:
        status = _wait_ready(server, METHOD)
        if status["result"]["pid"] != proc.pid:
            raise RuntimeError(f"another mimird answers on {server.socket_path}")
        yield server
    finally:
        _stop(proc)


# ---- the client ---------------------------------------------------------------------


@dataclass
class Run:
    """One measurement: one server, one concurrency, one round."""

    server: str
    clients: int
    round: int
    requests: int
    seconds: float
    errors: int
    #: CPU time per answered request (warm-up and drain included), in µs.
    server_cpu_us: float
    client_cpu_us: float
    latencies_ns: list[int] = field(repr=False)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def request_bytes(request_id: int) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": request_id, "method": METHOD}) + b"\n"


def drive(server: Server, clients: int, warmup_s: float, duration_s: float, round_no: int) -> Run:
    """Keep one request outstanding on each of ``clients`` connections to ``server``.

    Responses completed during the ``duration_s`` after ``warmup_s`` are counted
    and timed; CPU time is measured over the whole call, for server and client."""
    socks: list[socket.socket] = []
    poller = select.epoll()
    try:
        for _ in range(clients):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(sock)
            sock.connect(os.fspath(server.socket_path))
            sock.setblocking(False)
        by_fd = {sock.fileno(): i for i, sock in enumerate(socks)}
        requests = [request_bytes(i + 1) for i in range(clients)]
        pending = [b""] * clients
        sent_at = [0] * clients
        latencies: list[int] = []
        record = latencies.append
        clock = time.perf_counter_ns
        count = errors = answered = 0
        server_cpu = server.cpu_seconds()
        client_cpu = time.process_time()
        start = clock()
        measure_from = start + int(warmup_s * 1e9)
        measure_to = measure_from + int(duration_s * 1e9)
        for i, sock in enumerate(socks):
            poller.register(sock.fileno(), select.EPOLLIN)
            sent_at[i] = clock()
            sock.send(requests[i])
        open_connections = clients
        while open_connections:
            events = poller.poll(STALL_TIMEOUT_S)
            if not events:
                raise RuntimeError(f"no answer from {server.name} for {STALL_TIMEOUT_S}s")
            for fd, _ in events:
                i = by_fd[fd]
                data = socks[i].recv(RECEIVE_SIZE)
                if not data:
                    raise RuntimeError(f"{server.name} closed a connection")
                if pending[i]:
                    data = pending[i] + data
                if data[-1:] != b"\n":
                    pending[i] = data
                    continue
                pending[i] = b""
                answered += 1
                now = clock()
                if measure_from <= now < measure_to:
                    record(now - sent_at[i])
                    count += 1
                    if b'"error":' in data:
                        errors += 1
                if now >= measure_to:
                    poller.unregister(fd)
                    open_connections -= 1
                    continue
                sent_at[i] = now
                if socks[i].send(requests[i]) != len(requests[i]):
                    raise RuntimeError("a request did not fit the socket buffer")
        client_cpu = time.process_time() - client_cpu
        server_cpu = server.cpu_seconds() - server_cpu
    finally:
        poller.close()
        for sock in socks:
            sock.close()
    return Run(
        server=server.name,
        clients=clients,
        round=round_no,
        requests=count,
        seconds=duration_s,
        errors=errors,
        server_cpu_us=server_cpu / answered * 1e6,
        client_cpu_us=client_cpu / answered * 1e6,
        latencies_ns=latencies,
    )


@dataclass
class Summary:
    server: str
    clients: int
    rate_median: float
    rate_min: float
    rate_max: float
    p50_us: float
    p99_us: float
    server_cpu_us: float
    client_cpu_us: float
    requests: int
    errors: int


def summarize(runs: list[Run]) -> Summary:
    rates = [r.rate for r in runs]
    latencies = sorted(ns for r in runs for ns in r.latencies_ns)
    return Summary(
        server=runs[0].server,
        clients=runs[0].clients,
        rate_median=statistics.median(rates),
        rate_min=min(rates),
        rate_max=max(rates),
        p50_us=percentile(latencies, 0.50) / 1e3,
        p99_us=percentile(latencies, 0.99) / 1e3,
        server_cpu_us=statistics.median(r.server_cpu_us for r in runs),
        client_cpu_us=statistics.median(r.client_cpu_us for r in runs),
        requests=sum(r.requests for r in runs),
        errors=sum(r.errors for r in runs),
    )


# ---- process start-up ---------------------------------------------------------------


def time_commands(
    commands: dict[str, list[str]], env: dict[str, str], runs: int
) -> dict[str, dict[str, Any]]:
    """Wall time of each command, ``runs`` times, alternating; one untimed run first,
    which also writes Python's bytecode cache as a user's first run does, even where
    ``PYTHONDONTWRITEBYTECODE`` is set (otherwise every timed run would measure the
    compiler on each module changed since the cache was last written)."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    failures: dict[str, str] = {}
    first_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for timed in [False] + [True] * runs:
        for name, argv in commands.items():
            start = time.perf_counter()
            done = subprocess.run(
                argv, env=env if timed else first_env, capture_output=True, check=False
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                failures[name] = f"exit {done.returncode}: {done.stderr.decode(errors='replace')}"
            if timed:
                samples[name].append(elapsed * 1e3)
    if failures:
        raise RuntimeError(f"commands failed: {failures}")
    return {
        name: {
            "argv": commands[name],
            "median_ms": statistics.median(values),
            "min_ms": min(values),
            "max_ms": max(values),
            "runs": len(values),
        }
        for name, values in samples.items()
    }


# ---- output -------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def render(report: dict[str, Any]) -> str:
    lines = [
        f"Mimir RPC bench, {report['started_at']}  ({report['machine']['cpus']} CPUs, "
        f"load {report['machine']['load_before'][0]:.2f} before, "
        f"{report['machine']['load_after'][0]:.2f} after)",
        f"method {METHOD}; {report['config']['rounds']} interleaved rounds of "
        f"{report['config']['duration_s']:g} s per cell; one request outstanding per connection",
        "servers:",
    ]
    for name, server in report["servers"].items():
        lines.append(f"  {name:<7} {server['description']} (response {server['response_bytes']} B)")
    row = "{:<8} {:>7} {:>9} {:>16} {:>9} {:>9} {:>11} {:>11}  {}"
    header = ("server", "clients", "req/s", "(min..max)", "p50", "p99", "server CPU", "client CPU")
    lines += ["", row.format(*header, "errors")]
    for s in report["summaries"]:
        spread = f"({s['rate_min']:,.0f}..{s['rate_max']:,.0f})"
        lines.append(
            row.format(
                s["server"],
                s["clients"],
                f"{s['rate_median']:,.0f}",
                spread,
                f"{s['p50_us']:.0f}µs",
                f"{s['p99_us']:.0f}µs",
                f"{s['server_cpu_us']:.0f}µs/req",
                f"{s['client_cpu_us']:.0f}µs/req",
                s["errors"],
            )
        )
    lines += ["", "mimird / echo (throughput: median of the rounds' paired ratios):"]
    for clients, r in report["ratios"].items():
        verdict = "met" if r["throughput"] >= THROUGHPUT_TARGET else "MISSED"
        lines.append(
            f"  {clients:>2} client(s): throughput {r['throughput']:.2f} "
            f"({r['throughput_min']:.2f}..{r['throughput_max']:.2f}; "
            f"target >= {THROUGHPUT_TARGET}: {verdict}; of the medians "
            f"{r['throughput_of_medians']:.2f}), "
            f"latency p50 {r['p50']:.2f}x, p99 {r['p99']:.2f}x, "
            f"server CPU per request {r['server_cpu_per_request']:.2f}x"
        )
    startup = report["startup"]
    ctl = startup["mimirctl status"]
    base = startup["python -c pass"]
    verdict = "met" if ctl["median_ms"] < MIMIRCTL_TARGET_MS else "MISSED"
    lines += [
        "",
        f"start-up (median of {ctl['runs']} runs, wall):",
        f"  mimirctl status   {ctl['median_ms']:6.1f} ms  "
        f"(min {ctl['min_ms']:.1f}; target < {MIMIRCTL_TARGET_MS:g} ms: {verdict})",
        f"  python -c pass    {base['median_ms']:6.1f} ms  (min {base['min_ms']:.1f})",
        f"  difference        {ctl['median_ms'] - base['median_ms']:6.1f} ms",
        "",
        "memory (VmRSS):",
    ]
    for label, rss in report["rss_kib"].items():
        mib, peak = rss["VmRSS"] / 1024, rss["VmHWM"] / 1024
        lines.append(f"  {label:<24} {mib:6.1f} MiB  (peak {peak:.1f})")
    return "\n".join(lines)


# ---- main ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per cell")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, default=0.3, help="seconds discarded per cell")
    parser.add_argument("--startup-runs", type=int, default=20, help="runs of each command")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before last RSS")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    # SIGTERM becomes SystemExit, so that the finally blocks stop the servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    concurrency = [1, args.clients]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="mimir-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        with echo_server(root) as echo, mimird_server(root) as mimird:
            servers = (echo, mimird)
            response_bytes = {
                s.name: len(msgspec.json.encode(_call_once(s.socket_path, METHOD))) + 1
                for s in servers
            }
            rss: dict[str, dict[str, int]] = {"mimird after start": mimird.rss_kib()}
            print(f"warming up, then {len(concurrency) * len(servers) * args.rounds} cells ...")
            for server in servers:
                drive(server, args.clients, 0.0, 1.0, -1)
            for round_no in range(args.rounds):
                for clients in concurrency:
                    order = servers if round_no % 2 == 0 else servers[::-1]
                    for server in order:
                        runs.append(drive(server, clients, args.warmup, args.duration, round_no))
            rss["mimird after load"] = mimird.rss_kib()
            rss["echo after load"] = echo.rss_kib()
            print("timing mimirctl status ...")
            startup = time_commands(
                {
                    "mimirctl status": [*installed("mimirctl"), "status"],
                    "python -c pass": [sys.executable, "-c", "pass"],
                },
                mimir_env(root),
                args.startup_runs,
            )
            time.sleep(args.idle)
            rss[f"mimird after {args.idle:g} s idle"] = mimird.rss_kib()
            descriptions = {s.name: s.description for s in servers}

    summaries = [
        summarize([r for r in runs if r.server == name and r.clients == clients])
        for clients in concurrency
        for name in ("echo", "mimird")
    ]
    by_cell = {(s.server, s.clients): s for s in summaries}
    # Paired: each round's mimird against the echo measured next to it, so that a burst
    # of load from elsewhere (this is a shared 2-core machine) counts in one ratio, not
    # in one server's median.
    rate_of = {(r.server, r.clients, r.round): r.rate for r in runs}
    paired = {
        clients: [
            _ratio(rate_of["mimird", clients, n], rate_of["echo", clients, n])
            for n in range(args.rounds)
        ]
        for clients in concurrency
    }
    ratios = {
        str(clients): {
            "throughput": statistics.median(paired[clients]),
            "throughput_min": min(paired[clients]),
            "throughput_max": max(paired[clients]),
            "throughput_of_medians": _ratio(
                by_cell["mimird", clients].rate_median, by_cell["echo", clients].rate_median
            ),
            "p50": _ratio(by_cell["mimird", clients].p50_us, by_cell["echo", clients].p50_us),
            "p99": _ratio(by_cell["mimird", clients].p99_us, by_cell["echo", clients].p99_us),
            "server_cpu_per_request": _ratio(
                by_cell["mimird", clients].server_cpu_us, by_cell["echo", clients].server_cpu_us
            ),
        }
        for clients in concurrency
    }
    report: dict[str, Any] = {
        "bench": "rpc",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "config": {
            "method": METHOD,
            "clients": concurrency,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "startup_runs": args.startup_runs,
            "idle_s": args.idle,
            "client": "one epoll loop in the bench process, pre-encoded requests, "
            "one request outstanding per connection",
        },
        "servers": {
            name: {"description": descriptions[name], "response_bytes": response_bytes[name]}
            for name in descriptions
        },
        "summaries": [asdict(s) for s in summaries],
        "ratios": ratios,
        "targets": {
            "throughput_ratio_min": THROUGHPUT_TARGET,
            "mimirctl_status_ms_max": MIMIRCTL_TARGET_MS,
        },
        "startup": startup,
        "rss_kib": rss,
        "runs": [
            {f.name: getattr(r, f.name) for f in fields(r) if f.name != "latencies_ns"}
            | {"rate": r.rate}
            for r in runs
        ],
    }
    write_report(report, render(report), args.out, "rpc", started)
    errors = sum(s.errors for s in summaries)
    if errors:
        print(f"error: {errors} requests were answered with an error", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
