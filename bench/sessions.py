"""Sessions benchmark: session.list/get at 100, 1,000 and 10,000 sessions, and
session.create against a plain ``git worktree add -b``, in one run.

Run as ``.venv/bin/python bench/sessions.py`` (or ``make bench-sessions``). What it does:

1. makes a git repository of ~2,000 small files in a temporary directory, starts a real
   ``mimird`` there (``--log-level warning``), registers the repository as a project and
   creates two real sessions through the API (one with uncommitted work in its worktree);
2. brings the database to 100, then 1,000, then 10,000 sessions by inserting rows
   straight into its SQLite file while the daemon runs (WAL mode: one ``BEGIN
   IMMEDIATE`` transaction per batch, as any second writer may), with the column values
   ``session.create`` writes. The bulk rows' worktrees are gone (``workspace_state``
   ``removed``, as after a delete), so reading one runs no git;
3. at each size, times over the socket (one request at a time, the answer complete at its
   newline, nothing decoded in the timed part) ``session.list`` (the default page of 100;
   a page of 1, for the cost of a call apart from its rows; filtered by status, by
   project, by text; with a cursor 90 % down the list),
   ``session.get`` of a bulk row and ``session.get`` of the real session (which runs git
   status and diff stats in its worktree). The calls run in interleaved blocks (order
   rotating per round) and the daemon's CPU time (its threads and the git processes it
   waited for) is read per block. For each list it also times, in this process,
   ``mimird.sessions.records.list_wire_page`` (its query, rows to wire structs), that plus the
   JSON encoding, and the very SQL it ran alone through ``sqlite3``, with SQLite's plan, to
   show where the time goes;
4. with 10,000 sessions in the database, times ``session.create`` against ``git worktree
   add -b`` of the same repository, interleaved (order alternating), the same number of
   each; every worktree is removed after it is measured, outside the timed part
   (``session.delete`` with force and delete_branch; ``git worktree remove --force`` and
   ``git branch -D``), and the disk is synced before each timed add.

It prints a table and writes everything to ``bench/results/sessions-<timestamp>.json``.
Absolute figures depend on the machine and its load; compare the figures of one run
(see DESIGN.md, "Tests and measurements").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from common import (
    git,
    log_tail,
    mimir_env,
    mimird_process,
    percentile,
    threads_cpu_ns,
    wait_ready,
    write_report,
)

from mimird.sessions import records as session_db
from mimird.sessions.records import ListFilter
from mimird.wire.types import SessionList

BENCH_DIR: Final = Path(__file__).resolve().parent
RESULTS_DIR: Final = BENCH_DIR / "results"

PROJECT: Final = "bench"
SCALES: Final = (100, 1_000, 10_000)
PAGE: Final = 100
#: Where in the list (a fraction of the sessions, newest first) the deep cursor points.
DEEP_CURSOR_AT: Final = 0.9
LIST_TARGET_MS: Final = 1.0
CREATE_RATIO_TARGET: Final = 1.5
RECEIVE_SIZE: Final = 256 * 1024
READY_TIMEOUT_S: Final = 60.0
CALL_TIMEOUT_S: Final = 120.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
#: Environment variables of the caller that must not leak into the daemon under test.
_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"

#: Bulk rows: statuses in these proportions (archived and deleted are hidden by default).
STATUS_MIX: Final = (
    ("stopped", 40),
    ("idle", 10),
    ("created", 10),
    ("failed", 10),
    ("interrupted", 5),
    ("archived", 15),
    ("deleted", 10),
)
TITLES: Final = (
    "Fix the login bug in the session middleware",
    "Add rate limiting to /v1/users",
    "Refactor the billing export job",
    "Upgrade the ORM and fix deprecations",
    "Write tests for the invoice parser",
    "Speed up the search endpoint",
    "Document the webhook retry policy",
    "Remove the legacy CSV importer",
    "Make the CLI print JSON with --json",
    "Investigate flaky test_payment_timeout",
)
TEXT_FILTER: Final = "login"
REAL_GET: Final = "get real session"
FILTER_STATUS: Final = "failed"


# ---- the environment: repository, daemon ---------------------------------------------


def make_repository(repo: Path, files: int) -> int:
    """A git repository of ``files`` small text files in directories of 50; one commit."""
    per_dir = 50
    repo.mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "bench"\nversion = "0.1.0"\n')
    for i in range(files - 1):
        directory = repo / "src" / f"pkg{i // per_dir:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"mod{i % per_dir:02d}.py").write_text(
            f'"""Module {i}."""\n\n\ndef f{i}(x: int) -> int:\n    return x * {i} + {i % 7}\n'
        )
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", "bench repository")
    return int(git(repo, "ls-files", "-z").count("\0"))


class RpcError(Exception):
    pass


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    socket_path: Path
    database: Path
    log_path: Path
    sock: socket.socket | None = None
    next_id: int = 0

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def cpu_ns(self) -> int:
        """CPU time of the daemon's threads (nanoseconds, from each thread's schedstat)
        plus that of the children it has waited for (git; clock ticks, from its stat)."""
        threads = threads_cpu_ns(self.proc.pid)
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        # cutime and cstime are fields 16 and 17 of proc(5); fields[0] here is field 3.
        children = (int(fields[13]) + int(fields[14])) * 1_000_000_000 // CLOCK_TICKS
        return threads + children

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CALL_TIMEOUT_S)
        sock.connect(os.fspath(self.socket_path))
        self.sock = sock

    def request(self, method: str, params: dict[str, Any]) -> bytes:
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        return msgspec.json.encode(message) + b"\n"

    def exchange(self, request: bytes) -> bytes:
        """Send one request, return the whole answer line (undecoded)."""
        if self.sock is None:
            self.connect()
            assert self.sock is not None
        self.sock.sendall(request)
        chunks = [self.sock.recv(RECEIVE_SIZE)]
        while chunks[-1][-1:] != b"\n":
            chunk = self.sock.recv(RECEIVE_SIZE)
            if not chunk:
                raise RuntimeError(f"mimird closed the connection:\n{self.log_tail()}")
            chunks.append(chunk)
        return b"".join(chunks)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        answer = msgspec.json.decode(self.exchange(self.request(method, params or {})))
        if "error" in answer:
            raise RpcError(f"{method}: {answer['error']}")
        return answer["result"]


@contextlib.contextmanager
def running_mimird(root: Path) -> Iterator[Daemon]:
    (root / "home").mkdir()
    log_path = root / "mimird.log"
    with mimird_process(mimir_env(root), log_path) as proc:
        daemon = Daemon(
            proc=proc,
            socket_path=root / "run" / "mimird.sock",
            database=root / "data" / "mimir.db",
            log_path=log_path,
        )
        try:
            wait_ready(daemon, READY_TIMEOUT_S)
            yield daemon
        finally:
            if daemon.sock is not None:
                daemon.sock.close()


# ---- bulk rows ------------------------------------------------------------------------


def make_id(ms: int, rng: random.Random) -> str:
    """An id of mimird's shape (mimird/ids.py): 48 bits of milliseconds, 80 random bits,
    26 lower-case Crockford base32 characters; ids sort by creation time."""
    value = (ms << 80) | rng.getrandbits(80)
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _timestamp(ms: float) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _slug(title: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())[:40]


@dataclass
class BulkTemplate:
    """What the bulk rows copy from a real session made by session.create."""

    project_id: str
    worktrees_dir: Path
    base_ref: str
    base_commit: str
    agent: str


def bulk_insert(database: Path, template: BulkTemplate, count: int, rng: random.Random) -> float:
    """Insert ``count`` sessions into the daemon's database while it runs; seconds taken.

    Ids (and created_at) are spread over the 60 days before now, so that the real
    sessions, made just now, stay the newest."""
    if count <= 0:
        return 0.0
    now_ms = int(time.time() * 1000) - 60_000
    span_ms = 60 * 24 * 3600 * 1000
    statuses = [status for status, weight in STATUS_MIX for _ in range(weight)]
    rows = []
    for _ in range(count):
        ms = now_ms - rng.randrange(span_ms)
        session_id = make_id(ms, rng)
        short_id = session_id[-8:]
        title = f"{rng.choice(TITLES)} (#{rng.randrange(10_000)})"
        slug = _slug(title)
        status = rng.choice(statuses)
        snapshot = f"{rng.getrandbits(160):040x}"
        rows.append(
            {
                "id": session_id,
                "project_id": template.project_id,
                "title": title,
                "task": f"{title}. Keep the public API as it is and add tests for the change.",
                "agent": template.agent,
                "config": '{"tool_policy":{"execute":"allow"}}' if rng.random() < 0.2 else "{}",
                "status": status,
                "workspace_kind": "worktree",
                "workspace_path": str(template.worktrees_dir / PROJECT / f"{slug}-{short_id}"),
                # Their worktrees are gone (as after a delete): reading one runs no git.
                "workspace_state": "removed",
                "branch": f"mimir/{slug}-{short_id}",
                "base_ref": template.base_ref,
                "base_commit": template.base_commit,
                "snapshot_ref": f"refs/mimir/snapshots/{session_id}",
                "snapshot_commit": snapshot,
                "failure": "setup command exited with 1:\nnpm ERR! network"
                if status == "failed"
                else None,
                "last_seq": 6,
                "created_at": _timestamp(ms),
                "updated_at": _timestamp(ms + rng.randrange(3 * 3600 * 1000)),
            }
        )
    columns = list(rows[0])
    sql = (
        f"INSERT INTO sessions ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)})"
    )
    started = time.perf_counter()
    conn = sqlite3.connect(database, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - started


def session_count(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        count: int = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    return count


def newest_first_ids(database: Path, hidden: Sequence[str]) -> list[str]:
    marks = ", ".join("?" for _ in hidden)
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        return [
            row[0]
            for row in conn.execute(
                f"SELECT id FROM sessions WHERE status NOT IN ({marks}) ORDER BY id DESC", hidden
            )
        ]


# ---- measuring reads --------------------------------------------------------------------


@dataclass
class Op:
    name: str
    method: str
    params: dict[str, Any]
    calls: int
    #: For session.list: the same query as mimird.sessions.records.ListFilter, for the breakdown.
    list_filter: ListFilter | None = None
    latencies_ns: list[int] = field(default_factory=list, repr=False)
    cpu_ns: int = 0
    rows: int = 0
    response_bytes: int = 0


def check_op(daemon: Daemon, op: Op) -> None:
    """One untimed call, decoded: the op works and returns what it should."""
    answer = msgspec.json.decode(daemon.exchange(daemon.request(op.method, op.params)))
    if "error" in answer:
        raise RpcError(f"{op.name}: {answer['error']}")
    result = answer["result"]
    op.response_bytes = len(msgspec.json.encode(answer)) + 1
    if op.method == "session.list":
        op.rows = len(result["sessions"])
        if not op.rows:
            raise RuntimeError(f"{op.name} returned no sessions")
    else:
        op.rows = 1
        if op.name == REAL_GET and result["git"] is None:
            raise RuntimeError("session.get of the real session has no git status")


def measure_reads(daemon: Daemon, ops: list[Op], rounds: int, warmup: int) -> None:
    """Each op's calls in ``rounds`` blocks, the ops' order rotating per round; the
    daemon's CPU time is read around each block."""
    for op in ops:
        check_op(daemon, op)
        request = daemon.request(op.method, op.params)
        for _ in range(warmup):
            daemon.exchange(request)
    clock = time.perf_counter_ns
    for round_no in range(rounds):
        shift = round_no % len(ops)
        for op in ops[shift:] + ops[:shift]:
            block = math.ceil(op.calls / rounds)
            request = daemon.request(op.method, op.params)
            cpu = daemon.cpu_ns()
            for _ in range(block):
                start = clock()
                answer = daemon.exchange(request)
                op.latencies_ns.append(clock() - start)
                if b'"error":' in answer[:64]:
                    raise RpcError(f"{op.name}: {answer[:500]!r}")
            op.cpu_ns += daemon.cpu_ns() - cpu


def summarize(op: Op) -> dict[str, Any]:
    latencies = sorted(op.latencies_ns)
    return {
        "name": op.name,
        "method": op.method,
        "params": op.params,
        "calls": len(latencies),
        "rows": op.rows,
        "response_bytes": op.response_bytes,
        "p50_ms": percentile(latencies, 0.50) / 1e6,
        "p99_ms": percentile(latencies, 0.99) / 1e6,
        "min_ms": latencies[0] / 1e6,
        "mean_ms": statistics.fmean(latencies) / 1e6,
        "server_cpu_us": op.cpu_ns / len(latencies) / 1e3,
    }


def breakdown(database: Path, ops: list[Op], runs: int) -> dict[str, dict[str, Any]]:
    """Each list op, in this process: ``mimird.sessions.records.list_wire_page`` (query,
    rows to wire structs), that plus the JSON encoding mimird does, and the very SQL it ran
    (captured at the DBAPI cursor) alone through ``sqlite3``, rows as tuples. Medians in ms,
    and SQLite's plan for that SQL."""
    uri = f"file:{database}?mode=ro"
    raw = sqlite3.connect(uri, uri=True)
    captured: list[tuple[str, Any]] = []

    class Cursor(sqlite3.Cursor):
        """Records every statement, whether SQLAlchemy or list_page's own code runs it."""

        def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
            captured.append((sql, parameters))
            return super().execute(sql, parameters)

    class Connection(sqlite3.Connection):
        def cursor(self, factory: Any = Cursor) -> Any:
            return super().cursor(factory)

    engine = sa.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, factory=Connection)
    )
    encoder = msgspec.json.Encoder()
    clock = time.perf_counter_ns
    found: dict[str, dict[str, Any]] = {}
    try:
        with engine.connect() as conn:
            for op in ops:
                if op.list_filter is None:
                    continue
                captured.clear()
                session_db.list_wire_page(conn, op.list_filter)
                conn.rollback()
                sql, parameters = next(c for c in reversed(captured) if "FROM sessions" in c[0])
                samples: dict[str, list[int]] = {"sql": [], "list_page": [], "encoded": []}
                for timed in [False] * 5 + [True] * runs:
                    start = clock()
                    raw.execute(sql, parameters).fetchall()
                    middle = clock()
                    page, cursor = session_db.list_wire_page(conn, op.list_filter)
                    end = clock()
                    encoder.encode(SessionList(sessions=page, next_cursor=cursor))
                    done = clock()
                    conn.rollback()
                    if timed:
                        samples["sql"].append(middle - start)
                        samples["list_page"].append(end - middle)
                        samples["encoded"].append(done - middle)
                found[op.name] = {
                    **{
                        f"{name}_p50_ms": statistics.median(values) / 1e6
                        for name, values in samples.items()
                    },
                    "sql": sql,
                    "parameters": list(parameters),
                    "query_plan": [
                        row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, parameters)
                    ],
                }
    finally:
        raw.close()
        engine.dispose()
    return found


# ---- measuring create --------------------------------------------------------------------


def measure_create(daemon: Daemon, repo: Path, plain_dir: Path, rounds: int) -> dict[str, Any]:
    """session.create and `git worktree add -b`, interleaved; the disk synced before each
    timed add and every worktree removed after it, neither of them timed."""
    plain_dir.mkdir()
    samples: dict[str, list[float]] = {"session.create": [], "git worktree add -b": []}
    clock = time.perf_counter
    for round_no in range(rounds):
        order = ["session.create", "git worktree add -b"]
        if round_no % 2:
            order.reverse()
        for name in order:
            os.sync()
            if name == "session.create":
                start = clock()
                session = daemon.call(
                    "session.create", {"project": PROJECT, "title": f"bench create {round_no}"}
                )
                samples[name].append(clock() - start)
                if session["status"] != "created" or session["workspace"]["kind"] != "worktree":
                    raise RuntimeError(f"session.create made {session}")
                daemon.call(
                    "session.delete",
                    {"session": session["id"], "force": True, "delete_branch": True},
                )
            else:
                path = plain_dir / f"wt-{round_no}"
                branch = f"bench/plain-{round_no}"
                start = clock()
                git(repo, "worktree", "add", "--quiet", "-b", branch, str(path), "HEAD")
                samples[name].append(clock() - start)
                git(repo, "worktree", "remove", "--force", str(path))
                git(repo, "branch", "-D", "--quiet", branch)
    result: dict[str, Any] = {
        name: {
            "p50_ms": statistics.median(values) * 1e3,
            "min_ms": min(values) * 1e3,
            "max_ms": max(values) * 1e3,
            "runs": len(values),
            "samples_ms": [v * 1e3 for v in values],
        }
        for name, values in samples.items()
    }
    base = result["git worktree add -b"]["p50_ms"]
    result["ratio_p50"] = result["session.create"]["p50_ms"] / base if base else float("nan")
    return result


# ---- output -------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    machine, config = report["machine"], report["config"]
    scales = report["scales"]
    lines = [
        f"Mimir sessions bench, {report['started_at']}  ({machine['cpus']} CPUs, "
        f"load {machine['load_before'][0]:.2f} before, {machine['load_after'][0]:.2f} after)",
        f"repository of {report['repository']['files']:,} files; one request at a time over "
        f"the socket; {config['calls']} calls per cell ({config['git_calls']} for "
        f"{REAL_GET!r}) in {config['rounds']} interleaved blocks",
        "",
        "latency p50 / p99 in ms, (server CPU per call in µs), [rows returned]",
    ]
    row = "{:<22}" + " {:>30}" * len(scales) + "  {:>8}"
    lines.append(row.format("", *[f"{s['sessions']:,} sessions" for s in scales], "p50 grew"))
    for index, op in enumerate(scales[0]["ops"]):
        cells = []
        for scale in scales:
            s = scale["ops"][index]
            cells.append(
                f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ({s['server_cpu_us']:,.0f}) [{s['rows']}]"
            )
        first, last = op["p50_ms"], scales[-1]["ops"][index]["p50_ms"]
        lines.append(row.format(op["name"], *cells, f"{last / first:.2f}x"))
    lines += [
        "",
        "where the time of a list goes, p50 ms: SQL alone (sqlite3) / list_wire_page (+ building",
        "the query, rows to wire structs) / + JSON encoding, in this process; then over the socket",
    ]
    for name in scales[0]["breakdown"]:
        cells = []
        for scale in scales:
            b = scale["breakdown"][name]
            rpc = next(o for o in scale["ops"] if o["name"] == name)["p50_ms"]
            cells.append(
                f"{b['sql_p50_ms']:.2f} / {b['list_page_p50_ms']:.2f} / "
                f"{b['encoded_p50_ms']:.2f}; {rpc:.2f}"
            )
        lines.append(row.format(name, *cells, ""))
    lines.append("SQLite's plans at the largest size:")
    for name, b in scales[-1]["breakdown"].items():
        lines.append(f"  {name:<20} {' / '.join(b['query_plan'])}")
    page = scales[-1]["ops"][0]
    verdict = "met" if page["p50_ms"] < LIST_TARGET_MS else "MISSED"
    lines += [
        "",
        f"{page['name']} at {scales[-1]['sessions']:,} sessions: p50 {page['p50_ms']:.2f} ms "
        f"(target < {LIST_TARGET_MS:g} ms: {verdict})",
    ]
    create = report["create"]
    verdict = "met" if create["ratio_p50"] < CREATE_RATIO_TARGET else "MISSED"
    lines += [
        "",
        f"session.create against git worktree add -b ({create['session.create']['runs']} each, "
        f"interleaved, {create['sessions_in_database']:,} sessions in the database):",
    ]
    for name in ("session.create", "git worktree add -b"):
        c = create[name]
        lines.append(
            f"  {name:<20} p50 {c['p50_ms']:8.1f} ms  (min {c['min_ms']:.1f}, "
            f"max {c['max_ms']:.1f})"
        )
    lines.append(
        f"  ratio of the p50s {create['ratio_p50']:.2f}  "
        f"(target < {CREATE_RATIO_TARGET:g}: {verdict})"
    )
    return "\n".join(lines)


# ---- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=2000, help="files in the repository")
    parser.add_argument("--calls", type=int, default=400, help="timed calls per list/get cell")
    parser.add_argument(
        "--git-calls", type=int, default=40, help="timed calls of get on the real session"
    )
    parser.add_argument("--rounds", type=int, default=8, help="interleaved blocks per cell")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per cell first")
    parser.add_argument("--creates", type=int, default=15, help="creates (and git adds) timed")
    parser.add_argument(
        "--breakdown-runs", type=int, default=200, help="in-process runs of the page of 100"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the bulk rows")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON")
    args = parser.parse_args(argv)
    # SIGTERM becomes SystemExit, so that the finally blocks stop the daemon.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    rng = random.Random(args.seed)
    scales: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mimir-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        repo = root / "repo"
        print(f"making a repository of {args.files:,} files ...")
        files = make_repository(repo, args.files)
        head = git(repo, "rev-parse", "HEAD").strip()
        with running_mimird(root) as daemon:
            daemon.call("project.add", {"path": str(repo), "name": PROJECT})
            real = daemon.call("session.create", {"project": PROJECT, "title": "Fix the login bug"})
            worktree = Path(real["workspace"]["path"])
            (worktree / "src" / "pkg000" / "mod00.py").write_text("def f0(x):\n    return x\n")
            (worktree / "NOTES.md").write_text("work in progress\n")
            other = daemon.call("session.create", {"project": PROJECT, "title": "Idle session"})
            template = BulkTemplate(
                project_id=real["project_id"],
                worktrees_dir=worktree.parent.parent,
                base_ref=real["workspace"]["base_ref"],
                base_commit=real["workspace"]["base_commit"],
                agent=real["agent"],
            )
            for size in SCALES:
                missing = size - session_count(daemon.database)
                insert_s = bulk_insert(daemon.database, template, missing, rng)
                visible = newest_first_ids(daemon.database, ("archived", "deleted"))
                deep = visible[min(len(visible) - 1, int(len(visible) * DEEP_CURSOR_AT))]
                bulk_id = visible[len(visible) // 2]
                print(
                    f"{size:,} sessions ({missing:,} inserted in {insert_s:.2f} s): "
                    "timing list and get ..."
                )
                ops = [
                    Op(
                        "list page of 100",
                        "session.list",
                        {"limit": PAGE},
                        args.calls,
                        ListFilter(limit=PAGE),
                    ),
                    Op(
                        "list page of 1",
                        "session.list",
                        {"limit": 1},
                        args.calls,
                        ListFilter(limit=1),
                    ),
                    Op(
                        f"list status={FILTER_STATUS}",
                        "session.list",
                        {"limit": PAGE, "status": [FILTER_STATUS]},
                        args.calls,
                        ListFilter(limit=PAGE, statuses=(FILTER_STATUS,)),
                    ),
                    Op(
                        f"list project={PROJECT}",
                        "session.list",
                        {"limit": PAGE, "project": PROJECT},
                        args.calls,
                        ListFilter(limit=PAGE, project_id=template.project_id),
                    ),
                    Op(
                        f"list text={TEXT_FILTER}",
                        "session.list",
                        {"limit": PAGE, "text": TEXT_FILTER},
                        args.calls,
                        ListFilter(limit=PAGE, text=TEXT_FILTER),
                    ),
                    Op(
                        f"list cursor {DEEP_CURSOR_AT:.0%} down",
                        "session.list",
                        {"limit": PAGE, "cursor": deep},
                        args.calls,
                        ListFilter(limit=PAGE, cursor=deep),
                    ),
                    Op("get bulk row", "session.get", {"session": bulk_id}, args.calls),
                    Op(REAL_GET, "session.get", {"session": real["id"]}, args.git_calls),
                ]
                measure_reads(daemon, ops, args.rounds, args.warmup)
                scales.append(
                    {
                        "sessions": session_count(daemon.database),
                        "visible_sessions": len(visible),
                        "bulk_insert_s": insert_s,
                        "ops": [summarize(op) for op in ops],
                        "breakdown": breakdown(daemon.database, ops, args.breakdown_runs),
                    }
                )
            print(f"timing session.create and git worktree add -b, {args.creates} each ...")
            create = measure_create(daemon, repo, root / "plain-worktrees", args.creates)
            create["sessions_in_database"] = scales[-1]["sessions"]
            kept = daemon.call("session.get", {"session": other["id"]})
            if kept["workspace"]["state"] != "ok":
                raise RuntimeError(f"a real session's workspace is {kept['workspace']['state']}")

    report: dict[str, Any] = {
        "bench": "sessions",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version,
            "git": subprocess.run(
                ["git", "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "config": {
            "calls": args.calls,
            "git_calls": args.git_calls,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "creates": args.creates,
            "breakdown_runs": args.breakdown_runs,
            "seed": args.seed,
            "status_mix": dict(STATUS_MIX),
            "client": "one blocking connection, one request at a time, pre-encoded requests, "
            "answers complete at their newline and not decoded",
        },
        "repository": {"files": files, "head": head},
        "targets": {
            "list_page_p50_ms_max": LIST_TARGET_MS,
            "create_ratio_max": CREATE_RATIO_TARGET,
        },
        "scales": scales,
        "create": create,
    }
    write_report(report, render(report), args.out, "sessions", started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
