"""``daemon.metrics`` / ``mimirctl metrics``: the Prometheus text exposition (0.0.4),
read by a strict parser written here, and its figures moving as a scripted session
runs against a real daemon and the scripted fake agent."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
import trio

from mimird import journal
from mimird.metrics import Gauges, Metrics, exposition
from tests.journal.test_search import add_project, add_session, open_store
from tests.support.agents import Client, agent_world, new_session
from tests.support.helpers import DaemonDirs

_NAME: Final = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME: Final = r"[a-zA-Z_][a-zA-Z0-9_]*"
_LABEL: Final = re.compile(rf'({_LABEL_NAME})="((?:[^"\\\n]|\\[\\"n])*)"')
_SAMPLE: Final = re.compile(rf"^({_NAME})(\{{[^\n]*\}})? (\S+)$")
_HELP: Final = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE: Final = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
_SUFFIXES: Final = {"histogram": ("_bucket", "_sum", "_count")}
Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    kind: str
    help: str
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), value)


def _labels(text: str | None) -> Labels:
    if not text:
        return ()
    inner = text[1:-1]
    found = []
    position = 0
    while position < len(inner):
        match = _LABEL.match(inner, position)
        assert match, f"bad label set {text!r} at {inner[position:]!r}"
        found.append((match[1], _unescape(match[2])))
        position = match.end()
        if position < len(inner):
            assert inner[position] == ",", f"bad label separator in {text!r}"
            position += 1
    names = [name for name, _ in found]
    assert len(set(names)) == len(names), f"label repeated in {text!r}"
    return tuple(sorted(found))


def parse(text: str) -> dict[str, Family]:
    """The families of a text exposition, checked strictly: HELP then TYPE before
    the samples of each family, each family once, sample names of their family
    (with a histogram's suffixes), no duplicate series, numbers that parse, a
    histogram's buckets cumulative and ending in +Inf equal to its _count."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    current: str | None = None
    helped: str | None = None
    for line in text[:-1].split("\n"):
        assert line, "no empty lines"
        if match := _HELP.match(line):
            assert match[1] not in families, f"family {match[1]} twice"
            helped = match[1]
            help_text = match[2]
            continue
        if match := _TYPE.match(line):
            assert helped == match[1], f"TYPE of {match[1]} without its HELP first"
            current = match[1]
            families[current] = Family(match[2], help_text)
            continue
        assert not line.startswith("#"), f"unexpected comment {line!r}"
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        assert current is not None, f"sample before any TYPE: {line!r}"
        family = families[current]
        name = match[1]
        allowed = [current + s for s in _SUFFIXES.get(family.kind, ("",))]
        assert name in allowed, f"sample {name} inside family {current}"
        value = float(match[3])  # accepts +Inf, NaN
        key = (name, _labels(match[2]))
        assert key not in family.samples, f"duplicate series {line!r}"
        family.samples[key] = value
    for name, family in families.items():
        if family.kind == "histogram":
            _check_histogram(name, family)
    return families


def _check_histogram(name: str, family: Family) -> None:
    series: dict[Labels, list[tuple[float, float]]] = {}
    for (sample, labels), value in family.samples.items():
        if sample.endswith("_bucket"):
            le = dict(labels)["le"]
            rest = tuple(p for p in labels if p[0] != "le")
            series.setdefault(rest, []).append((float(le), value))
    for rest, buckets in series.items():
        buckets.sort()
        counts = [count for _, count in buckets]
        assert counts == sorted(counts), f"{name}{rest}: buckets not cumulative"
        assert math.isinf(buckets[-1][0]), f"{name}{rest}: no +Inf bucket"
        assert family.samples[(name + "_count", rest)] == buckets[-1][1]
        assert (name + "_sum", rest) in family.samples


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    """A sample's value; 0 for a counter series not yet present."""
    family_name = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
    family = families[family_name]
    return family.samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def metrics(client: Client) -> dict[str, Family]:
    result = await client.call("daemon.metrics")
    assert result["content_type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(result["text"])


PERMISSION: Final = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [{"optionId": "yes", "name": "Allow once", "kind": "allow_once"}],
    },
}


async def test_metrics_move_as_a_scripted_session_runs(dirs: DaemonDirs) -> None:
    hostile = 'evil"\\\n{x="1"}\x1b[2J'
    scenario: dict[str, Any] = {
        "prompts": [
            [{"do": "chunks", "count": 3, "text": "a"}],
            [{"do": "stop_reason", "value": "refusal"}],
            [{"do": "stop_reason", "value": hostile}],
            [{"do": "crash", "exit_code": 3}],
        ]
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        before = await metrics(c)
        assert value(before, "mimir_up") == 1
        assert value(before, "mimir_turns_started_total") == 0
        # Every status and stop reason has its series from the start, at 0.
        statuses = {dict(labels)["status"] for _, labels in before["mimir_sessions"].samples}
        assert {"created", "idle", "running", "awaiting_permission", "failed"} <= statuses
        assert "deleted" not in statuses
        ended = before["mimir_turns_ended_total"].samples
        assert ("mimir_turns_ended_total", (("stop_reason", "other"),)) in ended
        assert value(before, "mimir_agents_running") == 0
        assert value(before, "mimir_process_resident_memory_bytes") > 0
        events_before = value(before, "mimir_journal_events_total")

        session_id = await new_session(world, c)
        await c.call("subscribe", {})
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        await c.call("session.prompt", {"session": session_id, "text": "two"})
        await c.call("session.prompt", {"session": session_id, "text": "three"})
        await c.error("session.get", {"session": "nope-does-not-exist"})
        await c.error("session.get", {"bogus": 1})
        during = await metrics(c)
        assert value(during, "mimir_sessions", status="idle") == 1
        assert value(during, "mimir_turns_started_total") == 3
        assert value(during, "mimir_turns_ended_total", stop_reason="end_turn") == 1
        assert value(during, "mimir_turns_ended_total", stop_reason="refusal") == 1
        # An agent's made-up stop reason is one fixed label value, not a new series.
        assert value(during, "mimir_turns_ended_total", stop_reason="other") == 1
        assert value(during, "mimir_agents_running") == 1
        assert value(during, "mimir_subscribers") == 1
        assert value(during, "mimir_journal_events_total") > events_before + 6
        assert value(during, "mimir_journal_lag_events") >= 0
        prompts = ("mimir_rpc_calls_total", {"method": "session.prompt", "outcome": "ok"})
        assert value(during, prompts[0], **prompts[1]) == 3
        assert value(during, "mimir_rpc_calls_total", method="session.get", outcome="not_found")
        assert value(
            during, "mimir_rpc_calls_total", method="session.get", outcome="invalid_params"
        )
        assert value(during, "mimir_rpc_duration_seconds_count", method="session.prompt") == 3
        assert value(during, "mimir_rpc_duration_seconds_sum", method="session.prompt") > 0

        # The fourth prompt's agent crashes: the host restarts it.
        await c.error("session.prompt", {"session": session_id, "text": "four"})
        restarted = await c.until(
            "daemon.metrics", {}, lambda r: 'mimir_agent_restarts_total{kind="fake"} 1' in r["text"]
        )
        after = parse(restarted["text"])
        assert value(after, "mimir_turns_ended_total", stop_reason="error") == 1
        assert value(after, "mimir_uptime_seconds") >= value(during, "mimir_uptime_seconds")
        counted = value(after, "mimir_rpc_calls_total", method="daemon.metrics", outcome="ok")
        assert counted >= 2  # this call is counted once it is answered
        assert "evil" not in (await c.call("daemon.metrics"))["text"]


async def test_a_subscriber_that_falls_behind_counts_a_catch_up(dirs: DaemonDirs) -> None:
    # One subscriber whose socket nobody reads, while an agent writes many events: its
    # queue overflows and it is caught up from the database.
    scenario = {"prompts": [[{"do": "chunks", "count": 6000, "text": "x" * 200}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        stuck = await trio.open_unix_socket(str(world.daemon.socket))
        async with stuck:
            await stuck.send_all(b'{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{}}\n')
            await c.until("daemon.metrics", {}, lambda r: "mimir_subscribers 1" in r["text"])
            await c.call("session.prompt", {"session": session_id, "text": "go"})
            found = await metrics(c)
            assert value(found, "mimir_subscriber_catch_ups_total") >= 1
        after = await c.until("daemon.metrics", {}, lambda r: "mimir_subscribers 0" in r["text"])
        # The count stays once the subscription ends.
        assert value(parse(after["text"]), "mimir_subscriber_catch_ups_total") >= 1


def test_the_parser_refuses_what_is_not_the_format() -> None:
    good = '# HELP a_total x\n# TYPE a_total counter\na_total{k="v\\"\\n"} 1\n'
    assert value(parse(good), "a_total", k='v"\n') == 1
    for bad in (
        "a_total 1\n",  # no TYPE
        "# HELP a x\n# TYPE a counter\na 1",  # no final newline
        '# HELP a x\n# TYPE a counter\na{k="v"} 1\na{k="v"} 2\n',  # duplicate
        '# HELP a x\n# TYPE a counter\na{k="v\nw"} 1\n',  # raw newline in a label
        "# HELP a x\n# TYPE a counter\nb 1\n",  # sample outside its family
        '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
        "h_sum 1\nh_count 1\n",  # not cumulative
    ):
        try:
            parse(bad)
        except (AssertionError, ValueError):
            continue
        raise AssertionError(f"accepted {bad!r}")


async def test_mimirctl_metrics_prints_the_exposition(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world:
        done = await trio.run_process(
            [sys.executable, "-m", "mimirctl", "metrics"],
            env=dirs.env(),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert world.daemon.socket.exists()
    assert done.returncode == 0, done.stderr
    families = parse(done.stdout.decode())
    assert value(families, "mimir_up") == 1
    assert families["mimir_rpc_duration_seconds"].kind == "histogram"


def test_label_values_are_escaped_and_read_back_exactly() -> None:
    counters = Metrics()
    hostile = 'a"b\\c\nd'
    counters.agent_restarted(hostile)
    counters.rpc_called("session.get", "ok", 0.002)
    gauges = Gauges(
        sessions_by_status={"idle": 2},
        events_journaled=5,
        journal_lag=0,
        subscribers=0,
        subscriber_catch_ups=0,
        agents_running=0,
        uptime_s=1.0,
        rss_bytes=None,
    )
    families = parse(exposition(counters, gauges))
    assert value(families, "mimir_agent_restarts_total", kind=hostile) == 1
    assert value(families, "mimir_sessions", status="idle") == 2
    assert "mimir_process_resident_memory_bytes" not in families
    assert (
        value(families, "mimir_rpc_duration_seconds_bucket", method="session.get", le="0.001") == 0
    )
    assert (
        value(families, "mimir_rpc_duration_seconds_bucket", method="session.get", le="0.0025") == 1
    )


async def test_journal_lag_counts_events_submitted_until_they_are_committed(
    dirs: DaemonDirs,
) -> None:
    async with open_store(dirs) as store:

        def setup(conn: sa.Connection) -> str:
            return add_session(conn, add_project(conn, "api"))

        session_id = await store.write(setup)
        async with journal.Journal.open(store) as jr:
            # Queued without a checkpoint: the writer has not run yet.
            for n in range(5):
                await jr.submit(session_id, journal.Verbatim("update", {"n": n}))
            assert (jr.lag, jr.committed) == (5, 0)
            await jr.flush()
            assert (jr.lag, jr.committed) == (0, 5)
