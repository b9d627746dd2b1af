"""Search benchmark: ``search`` latency over 100,000 indexed chunk-sized texts.

Run as ``.venv/bin/python bench/search.py`` (or ``make bench-search``). What it does:

1. makes a database with the real migrations (``Store.open``) in a temporary directory and
   fills it, in transactions of 1,000, with N events (default 100,000) spread over 10 projects of
   10 sessions each. Each event's text is chunk-sized, like the pieces an agent streams: 5 to
   60 words drawn from a vocabulary of 20,000 made-up words with Zipf-like frequencies (so a few
   words are in a third of all texts and most are rare), sprinkled with identifiers
   (``snake_case``, ``dotted.names``). Events are inserted as ``journal.append`` stores them and
   indexed with ``search.index`` in the same transaction, as the journal's writer does;
2. times ``mimird.journal.search.search`` in this process, on a connection opened like the daemon's
   readers, for query classes from cheap to dear: a rare word, a word in ~1 % of texts, a word in
   ~30 % (bm25 ranks every match), two words, a phrase, a prefix, the common word filtered to one
   project and to one session. Each class runs R rounds (default 200) of queries, interleaved
   across classes, each query a fresh word of its class (no result cache can help);
3. starts a real ``mimird`` on that database (``--log-level warning``) and times the same
   classes through the socket (one request at a time, the answer complete at its newline), so
   the figure includes the RPC path.

Prints p50/p95 per class (ms) and the index's share of the database file. Absolute figures
depend on the machine and its load; compare figures of one run (see DESIGN.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
import trio
from common import installed, mimir_env, percentile

from mimird.config import DatabaseSection
from mimird.ids import IdGenerator
from mimird.journal import search
from mimird.store import Store, schema
from mimird.store.engine import connector, make_engine

PROJECTS: Final = 10
SESSIONS_PER_PROJECT: Final = 10
VOCABULARY: Final = 20_000
BATCH: Final = 1000
READY_TIMEOUT_S: Final = 30.0
NOW: Final = "2026-01-01T00:00:00.000000Z"


def word(i: int) -> str:
    """A made-up, pronounceable word for rank ``i`` (distinct for distinct i)."""
    syllables = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "du", "sa", "fo")
    out = []
    i += 1
    while i:
        i, r = divmod(i, len(syllables))
        out.append(syllables[r])
    return "".join(out) + "x"


class Corpus:
    """Zipf-like texts, and the words that fall in each frequency class."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = [word(i) for i in range(VOCABULARY)]
        weights = [1.0 / (rank + 1) for rank in range(VOCABULARY)]
        total = sum(weights)
        self.cumulative: list[float] = []
        acc = 0.0
        for w in weights:
            acc += w / total
            self.cumulative.append(acc)

    def text(self) -> str:
        count = self.rng.randint(5, 60)
        picks = self.rng.choices(self.words, cum_weights=self.cumulative, k=count)
        if self.rng.random() < 0.2:
            a, b = self.rng.sample(self.words[:2000], 2)
            picks.append(self.rng.choice([f"{a}_{b}", f"{a}.{b}()"]))
        return " ".join(picks)


def fill(path: Path, events: int, rng: random.Random) -> dict[str, Any]:
    """The database, made by the real migrations; returns the projects' and sessions' ids."""
    corpus = Corpus(rng)
    ids = IdGenerator()

    async def create() -> None:
        async with Store.open(
            path, key=None, options=DatabaseSection(), backup_dir=path.parent / "backups"
        ):
            pass

    trio.run(create)
    engine = writer(path)
    projects: list[str] = []
    sessions: list[tuple[str, str]] = []
    with engine.begin() as conn:
        for p in range(PROJECTS):
            project_id = ids.new()
            projects.append(project_id)
            conn.execute(
                sa.insert(schema.projects).values(
                    id=project_id,
                    name=f"project-{p}",
                    path=f"/nowhere/project-{p}",
                    type="unknown",
                    is_git=False,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            for _ in range(SESSIONS_PER_PROJECT):
                session_id = ids.new()
                sessions.append((project_id, session_id))
                conn.execute(
                    sa.insert(schema.sessions).values(
                        id=session_id,
                        project_id=project_id,
                        status="stopped",
                        workspace_kind="in_place",
                        workspace_path=f"/nowhere/project-{p}",
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
    seqs = dict.fromkeys((s for _, s in sessions), 0)
    event_id = 0
    for start in range(0, events, BATCH):
        rows, texts = [], []
        for _ in range(min(BATCH, events - start)):
            event_id += 1
            _, session_id = rng.choice(sessions)
            seqs[session_id] += 1
            text = corpus.text()
            rows.append(
                {
                    "id": event_id,
                    "session_id": session_id,
                    "seq": seqs[session_id],
                    "kind": "agent_message_chunk",
                    "data": json.dumps({"text": text}),
                    "created_at": NOW,
                }
            )
            texts.append((event_id, text))
        with engine.begin() as conn:
            conn.execute(sa.insert(schema.events), rows)
            search.index(conn, texts)
    with engine.begin() as conn:
        for session_id, last in seqs.items():
            conn.execute(
                sa.update(schema.sessions)
                .where(schema.sessions.c.id == session_id)
                .values(last_seq=last)
            )
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO events_fts (events_fts) VALUES ('optimize')")
        conn.commit()
    engine.dispose()
    return {"projects": projects, "sessions": sessions, "corpus": corpus}


def writer(path: Path) -> sa.Engine:
    connect = connector(path, None, busy_timeout_ms=10_000, synchronous="normal")
    return make_engine(connect, None, pool_size=1, writer=True)


def document_frequencies(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, 'events_fts', 'row')"
        )
        rows = conn.exec_driver_sql("SELECT term, doc FROM temp.vocab").all()
        conn.rollback()
    return {term: doc for term, doc in rows}


def query_classes(
    frequencies: dict[str, int], events: int, made: dict[str, Any], rng: random.Random
) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each class: a function making one fresh query's params."""

    def near(fraction: float, spread: float) -> list[str]:
        target = fraction * events
        found = [t for t, n in frequencies.items() if target / spread <= n <= target * spread]
        return found or [min(frequencies, key=lambda t: abs(frequencies[t] - target))]

    rare = [t for t, n in frequencies.items() if 3 <= n <= 30]
    medium = near(0.01, 1.5)
    common = near(0.30, 1.5)
    corpus: Corpus = made["corpus"]
    project_id = made["projects"][0]
    session_id = made["sessions"][0][1]

    def phrase() -> str:
        text = corpus.text().split()
        i = rng.randrange(max(1, len(text) - 1))
        return '"' + " ".join(text[i : i + 2]) + '"'

    return {
        "rare word": lambda: {"query": rng.choice(rare)},
        "1% word": lambda: {"query": rng.choice(medium)},
        "30% word": lambda: {"query": rng.choice(common)},
        "two words": lambda: {"query": f"{rng.choice(medium)} {rng.choice(common)}"},
        "phrase": lambda: {"query": phrase()},
        "prefix (3 chars)": lambda: {"query": rng.choice(medium)[:3] + "*"},
        "30% word, 1 project": lambda: {"query": rng.choice(common), "project": project_id},
        "30% word, 1 session": lambda: {"query": rng.choice(common), "session": session_id},
    }


def time_in_process(
    path: Path, classes: dict[str, Callable[[], dict[str, Any]]], rounds: int
) -> dict[str, list[float]]:
    connect = connector(path, None, busy_timeout_ms=10_000, synchronous="normal")
    engine = make_engine(connect, None, pool_size=1, writer=False)
    samples: dict[str, list[float]] = {name: [] for name in classes}
    try:
        with engine.connect() as conn:
            for _ in range(rounds):
                for name, make in classes.items():
                    params = make()
                    kwargs = {
                        "query": params["query"],
                        "project_id": params.get("project"),
                        "session_id": params.get("session"),
                    }
                    start = time.perf_counter()
                    search.search(conn, limit=20, **kwargs)
                    samples[name].append(time.perf_counter() - start)
                conn.rollback()
    finally:
        engine.dispose()
    return samples


@contextlib.contextmanager
def mimird(root: Path) -> Iterator[Path]:
    env = mimir_env(root)
    (root / "home").mkdir(exist_ok=True)
    socket_path = root / "run" / "mimird.sock"
    log = (root / "mimird.log").open("wb")
    proc = subprocess.Popen(
        [*installed("mimird"), "--log-level", "warning"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mimird exited: {(root / 'mimird.log').read_text()}")
            with contextlib.suppress(OSError):
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(os.fspath(socket_path))
                break
            if time.monotonic() > deadline:
                raise RuntimeError("mimird did not start")
            time.sleep(0.05)
        yield socket_path
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def time_over_rpc(
    socket_path: Path, classes: dict[str, Callable[[], dict[str, Any]]], rounds: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in classes}
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(os.fspath(socket_path))
        reader = sock.makefile("rb")
        request_id = 0
        for _ in range(rounds):
            for name, make in classes.items():
                request_id += 1
                request = json.dumps(
                    {"jsonrpc": "2.0", "id": request_id, "method": "search", "params": make()}
                ).encode()
                start = time.perf_counter()
                sock.sendall(request + b"\n")
                line = reader.readline()
                samples[name].append(time.perf_counter() - start)
                if b'"error"' in line[:200] and b'"result"' not in line[:200]:
                    raise RuntimeError(f"search failed: {line[:300]!r}")
    return samples


def report(title: str, samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    print(f"\n{title}")
    print(f"  {'query':<22} {'p50 ms':>8} {'p95 ms':>8}")
    out = {}
    for name, values in samples.items():
        ordered = sorted(values)
        p50, p95 = percentile(ordered, 0.5) * 1000, percentile(ordered, 0.95) * 1000
        out[name] = {"p50_ms": p50, "p95_ms": p95}
        print(f"  {name:<22} {p50:>8.2f} {p95:>8.2f}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-rpc", action="store_true", help="skip the daemon round")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="mimir-bench-search-", dir="/tmp") as scratch:
        root = Path(scratch)
        path = root / "data" / "mimir.db"
        path.parent.mkdir(parents=True)
        start = time.perf_counter()
        made = fill(path, args.events, rng)
        fill_s = time.perf_counter() - start
        engine = writer(path)
        frequencies = document_frequencies(engine)
        with engine.connect() as conn:
            page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            fts_pages = conn.exec_driver_sql(
                "SELECT count(*) FROM dbstat WHERE name LIKE 'events_fts%'"
            ).scalar()
            conn.rollback()
        engine.dispose()
        db_bytes = path.stat().st_size
        print(
            f"{args.events:,} events indexed in {fill_s:.1f} s; database "
            f"{db_bytes / 2**20:.1f} MiB, of which the index "
            f"{(fts_pages or 0) * page_size / 2**20:.1f} MiB; {len(frequencies):,} terms"
        )
        classes = query_classes(frequencies, args.events, made, rng)
        results = {
            "in_process": report(
                "mimird.journal.search.search in process (limit 20)",
                time_in_process(path, classes, args.rounds),
            )
        }
        if not args.no_rpc:
            with mimird(root) as socket_path:
                results["rpc"] = report(
                    "the search method through mimird's socket (limit 20)",
                    time_over_rpc(socket_path, classes, args.rounds),
                )
    print(json.dumps({"events": args.events, "rounds": args.rounds, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
