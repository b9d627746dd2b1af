"""The audit log covers exactly the methods that change state (README: every mutating
call is written, with its outcome; calls refused for their params too).

Every method ``rpc.discover`` marks ``x-mutating`` is called once, with valid params,
in a world where each can run (a project, a session whose agent is the scripted fake
ACP agent, a turn that asks a permission, a worktree): each leaves one row naming
the caller (uid, pid), the method, its target and its outcome. The list of methods
known to change state is written out here, so a method that stops being marked
mutating (and so stops being audited) fails; and every method that is *not* marked
is called too, and must leave the database exactly as it was.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sqlite3
from typing import Any, Final

import pytest
import trio

from mimird.wire.errors import ErrorCode
from tests.agents.test_agent_install import binary_manifest, http_server, tar_gz, write_registry
from tests.rpc.test_audit import audit_rows
from tests.support.agents import Client, agent_world
from tests.support.helpers import DaemonDirs, make_repo

pytestmark = pytest.mark.timeout(90)

DEADLINE_S: Final = 30.0

#: The methods that change what is stored or on disk: these, and only these, must be
#: marked ``x-mutating`` (and so audited).
CHANGES_STATE: Final = frozenset(
    {
        "project.add",
        "project.update",
        "project.remove",
        "session.create",
        "session.update",
        "session.archive",
        "session.delete",
        "session.restore",
        "session.repair",
        "session.prompt",
        "session.submit",
        "session.cancel",
        "session.stop",
        "session.resume",
        "session.set_model",
        "session.set_mode",
        "session.complete",
        "permission.respond",
        "session.attach_client",
        "session.detach_client",
        "worktree.prune",
        "db.backup",
        "db.optimize",
        "db.vacuum",
        "run.create",
        "run.cancel",
        "run.pick",
        "run.resume",
        "run.integrate",
        "run.delete",
        "agent.install",
        "agent.update",
        "agent.remove",
        "import.records",
        "import.end",
    }
)
#: The header of an export file, and a project record to import.
HEADER: Final = {"format": "mimir-export", "version": 1, "schema": "x", "exported_at": "now"}
PROJECT_RECORD: Final = {
    "type": "project",
    "id": "01kaaaaaaaaaaaaaaaaaaaaaaa",
    "name": "imported",
    "path": "/nonexistent/mimir-audit-import",
    "project_type": "unknown",
    "is_git": True,
    "description": "",
    "config": {},
    "archived": False,
    "created_at": "2026-01-02T03:04:05.000006Z",
    "updated_at": "2026-01-02T03:04:05.000006Z",
}
#: Mutating methods whose call with valid params is refused in this world, and why:
#: their row says error all the same.
REFUSED_HERE: Final = {
    "run.resume": "only a run a restart interrupted resumes",
    "run.cancel": "the run was completed by run.integrate before",
}
#: Mutating methods that no call with valid params can make fail here (only a
#: database that refuses, or a full disk, does: tests/store/test_db_maintenance.py).
NO_ERROR_HERE: Final = {
    "db.optimize": "takes no params and acts on the database only",
    "db.vacuum": "refused only for a lack of free disk",
}
#: A run's members: the permission their agent asks is allowed by the tool policy.
RUN_CONFIG: Final = {"tool_policy": {"other": "allow"}}

ASK: Final = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [
            {"optionId": "yes", "name": "Allow", "kind": "allow_once"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ],
    },
}
#: The first turn asks a permission; later ones just end. The agent offers models and modes.
SCENARIO: Final = {"prompts": [[ASK]], "models": ["small", "large"], "modes": ["ask", "code"]}


Row = tuple[str, str | None, str, int | None]


def database_dump(dirs: DaemonDirs) -> list[str]:
    """Everything the database holds, as SQL (WAL mode: safe beside the daemon)."""
    with contextlib.closing(sqlite3.connect(f"file:{dirs.database}?mode=ro", uri=True)) as db:
        return list(db.iterdump())


async def discovered(c: Client) -> dict[str, bool]:
    """Every method the daemon has: name -> its ``x-mutating``."""
    document = await c.call("rpc.discover")
    return {method["name"]: method["x-mutating"] for method in document["methods"]}


class Recorder:
    """Calls, each with the audit row it must leave (method, target, outcome, code)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.expected: list[Row] = []

    async def call(self, method: str, params: dict[str, Any], target: str | None) -> Any:
        """The call's result, or its error; its row must name ``target``."""
        with trio.fail_after(DEADLINE_S):
            response = await self.client.call_raw(method, params)
        if "error" in response:
            code = response["error"]["code"]
            self.expected.append((method, target, "error", code))
            return response["error"]
        self.expected.append((method, target, "ok", None))
        return response["result"]

    async def make(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A call that makes an object: its row names the new object's id."""
        with trio.fail_after(DEADLINE_S):
            made: dict[str, Any] = await self.client.call(method, params)
        self.expected.append((method, made["id"], "ok", None))
        return made

    def assert_written(self, rows: list[dict[str, Any]], mutating: set[str]) -> None:
        """``rows`` are the rows the calls must have left, one per method marked mutating."""
        assert collections.Counter(method for method, *_ in self.expected) == dict.fromkeys(
            mutating, 1
        )
        # Concurrent calls (the prompt and the permission's answer) end in either order.
        got = [(row["method"], row["target"], row["outcome"], row["error_code"]) for row in rows]
        assert sorted(got, key=repr) == sorted(self.expected, key=repr)
        assert {(row["uid"], row["pid"]) for row in rows} == {(os.geteuid(), os.getpid())}
        assert all(row["at"] for row in rows)


async def test_every_method_marked_mutating_is_exactly_the_set_that_changes_state(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as c:
        mutating = {name for name, marked in (await discovered(c)).items() if marked}
    assert mutating == CHANGES_STATE


async def test_every_mutating_call_with_valid_params_writes_one_row_with_caller_target_and_outcome(
    dirs: DaemonDirs,
) -> None:
    other = make_repo(dirs.root / "other")
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as c:
        mutating = {name for name, marked in (await discovered(c)).items() if marked}
        before = len(audit_rows(dirs))
        r = Recorder(c)
        added = await r.make("project.add", {"path": str(other), "name": "other"})
        await r.call("project.update", {"project": added["id"], "description": "d"}, added["id"])
        sid = (await r.make("session.create", {"project": world.project, "title": "t"}))["id"]
        await r.call("session.update", {"session": sid, "title": "t2"}, sid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(r.call, "session.prompt", {"session": sid, "text": "go"}, sid)
            with trio.fail_after(DEADLINE_S):
                listed = await c.until("permission.list", {}, lambda found: found["permissions"])
            permission = listed["permissions"][0]["id"]
            answered = await r.call(
                "permission.respond", {"permission": permission, "kind": "allow_once"}, permission
            )
            assert answered["option_id"] == "yes"
        await r.call("session.attach_client", {"session": sid, "fs": {"read": True}}, sid)
        await r.call("session.detach_client", {"session": sid}, sid)
        await r.call("session.submit", {"session": sid, "text": "again"}, sid)
        await r.call("session.cancel", {"session": sid}, sid)
        await r.call("session.stop", {"session": sid}, sid)
        await r.call("session.resume", {"session": sid}, sid)
        await r.call("session.set_model", {"session": sid, "model": "large"}, sid)
        await r.call("session.set_mode", {"session": sid, "mode": "code"}, sid)
        await r.call("session.complete", {"session": sid, "note": "done"}, sid)
        await r.call("session.archive", {"session": sid}, sid)
        await r.call("session.restore", {"session": sid}, sid)
        await r.call("session.repair", {"session": sid}, sid)
        await r.call("session.delete", {"session": sid}, sid)
        await r.call("worktree.prune", {"project": world.project}, world.project)
        await r.call("db.backup", {}, None)
        await r.call("db.optimize", {}, None)
        await r.call("db.vacuum", {}, None)
        await r.call("project.remove", {"project": added["id"]}, added["id"])
        run = await r.make(
            "run.create",
            {"project": world.project, "task": "t", "agent": "fake", "n": 2, "merge": "manual"}
            | {"config": RUN_CONFIG},
        )
        rid = run["id"]
        with trio.fail_after(DEADLINE_S):
            await c.until("run.get", {"run": rid}, lambda got: got["status"] == "deciding")
        await r.call("run.pick", {"run": rid, "slot": 1}, rid)
        with trio.fail_after(DEADLINE_S):
            await c.until("run.get", {"run": rid}, lambda got: got["status"] == "decided")
        await r.call("run.integrate", {"run": rid}, rid)
        await r.call("run.cancel", {"run": rid}, rid)
        await r.call("run.resume", {"run": rid}, rid)
        await r.call("run.delete", {"run": rid}, rid)
        served = dirs.root / "served"
        sha = tar_gz(served / "a.tar.gz", {"bin/agent": (b"#!/bin/sh\n", 0o755)})
        with http_server(served) as base:
            registry = write_registry(
                dirs.root / "registry.json",
                binary_manifest("tiny-bin", "1.0.0", f"{base}/a.tar.gz", sha),
            )
            await r.call("agent.install", {"name": "tiny-bin", "registry": registry}, None)
        await r.call("agent.update", {"name": "tiny-bin"}, None)
        await r.call("agent.remove", {"name": "tiny-bin"}, "tiny-bin")
        await c.call("import.begin", {"header": HEADER})  # not mutating: no row
        await r.call("import.records", {"records": [PROJECT_RECORD]}, None)
        await r.call("import.end", {}, None)
        rows = audit_rows(dirs)[before:]
    not_ok = {method for method, _, outcome, _ in r.expected if outcome != "ok"}
    assert not_ok == set(REFUSED_HERE), r.expected
    r.assert_written(rows, mutating)


async def test_every_mutating_call_that_fails_after_its_params_are_valid_writes_an_error_row(
    dirs: DaemonDirs,
) -> None:
    ghost = "0" * 26  # a well-formed id no object has
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as c:
        mutating = {name for name, marked in (await discovered(c)).items() if marked}
        backup = (await c.call("db.backup", {}))["path"]
        before = len(audit_rows(dirs))
        r = Recorder(c)
        await r.call("project.add", {"path": str(world.repo)}, None)  # already a project
        await r.call("project.update", {"project": "ghost", "description": "d"}, "ghost")
        await r.call("project.remove", {"project": "ghost", "force": True}, "ghost")
        await r.call("session.create", {"project": "ghost", "title": "t"}, "ghost")
        await r.call("session.update", {"session": ghost, "title": "t"}, ghost)
        for method in (
            "session.archive",
            "session.delete",
            "session.restore",
            "session.repair",
            "session.cancel",
            "session.stop",
            "session.resume",
            "session.complete",
            "session.attach_client",
            "session.detach_client",
        ):
            await r.call(method, {"session": ghost}, ghost)
        await r.call("session.prompt", {"session": ghost, "text": "go"}, ghost)
        await r.call("session.submit", {"session": ghost, "text": "go"}, ghost)
        await r.call("session.set_model", {"session": ghost, "model": "large"}, ghost)
        await r.call("session.set_mode", {"session": ghost, "mode": "code"}, ghost)
        await r.call("permission.respond", {"permission": "ghost", "kind": "allow_once"}, "ghost")
        await r.call("worktree.prune", {"project": "ghost"}, "ghost")
        await r.call("db.backup", {"path": backup}, None)  # the file exists
        await r.call("run.create", {"project": "ghost", "task": "t", "n": 1}, "ghost")
        for method in ("run.cancel", "run.resume", "run.integrate", "run.delete"):
            await r.call(method, {"run": ghost}, ghost)
        await r.call("run.pick", {"run": ghost, "slot": 1}, ghost)
        unreachable = binary_manifest("tiny-bin", "1.0.0", "http://127.0.0.1:9/a.tar.gz", None)
        registry = write_registry(dirs.root / "registry.json", unreachable)
        await r.call("agent.install", {"name": "tiny-bin", "registry": registry}, None)
        await r.call("agent.update", {"name": "ghost"}, None)
        await r.call("agent.remove", {"name": "ghost"}, None)
        await r.call("import.records", {"records": []}, None)  # no import under way
        await r.call("import.end", {}, None)
        rows = audit_rows(dirs)[before:]
    assert all(outcome == "error" for _, _, outcome, _ in r.expected), r.expected
    r.assert_written(rows, mutating - set(NO_ERROR_HERE))


async def test_a_mutating_call_refused_for_invalid_params_writes_an_invalid_params_row(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call("session.create", {"project": world.project, "title": "t"})
        methods = await discovered(c)
        recorded = audit_rows(dirs)
        refused: list[tuple[str, Any]] = []
        for method in sorted(name for name, marked in methods.items() if marked):
            refused += [(method, {"no_such_field": 1}), (method, ["positional"])]
        # Params that decode, but that the method refuses as invalid.
        refused += [
            ("session.prompt", {"session": session["id"], "text": "a", "content": []}),
            ("permission.respond", {"permission": "p", "option_id": "yes", "kind": "allow_once"}),
            ("project.update", {"project": world.project, "name": "a/b"}),
            ("db.backup", {"path": "relative/copy.db"}),
        ]
        for method, params in refused:
            with trio.fail_after(DEADLINE_S):
                response = await c.call_raw(method, params)
            assert response.get("error", {}).get("code") == ErrorCode.INVALID_PARAMS, (
                method,
                params,
                response,
            )
        rows = audit_rows(dirs)
        assert rows[: len(recorded)] == recorded
        got = [(row["method"], row["outcome"], row["error_code"]) for row in rows[len(recorded) :]]
        assert got == [(method, "error", ErrorCode.INVALID_PARAMS) for method, _ in refused]


async def test_methods_not_marked_mutating_leave_the_database_as_it_was(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCENARIO) as world, Client.connect(world.daemon.socket) as c:
        session = await c.call("session.create", {"project": world.project, "title": "t"})
        sid = session["id"]
        run = await c.call(
            "run.create",
            {"project": world.project, "task": "t", "agent": "fake", "n": 1, "config": RUN_CONFIG},
        )
        rid = run["id"]
        with trio.fail_after(DEADLINE_S):
            await c.until("run.get", {"run": rid}, lambda got: got["status"] == "deciding")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": sid, "text": "go"})
            with trio.fail_after(DEADLINE_S):
                listed = await c.until("permission.list", {}, lambda found: found["permissions"])
            # Left pending: permission.list has one to list. The turn stays parked.
            pending = listed["permissions"][0]["id"]
            # The status change that journals the request commits just after it is listed.
            await c.until(
                "session.get", {"session": sid}, lambda s: s["status"] == "awaiting_permission"
            )
            dump = database_dump(dirs)
            called: list[str] = []

            async def read(method: str, params: dict[str, Any]) -> Any:
                called.append(method)
                with trio.fail_after(DEADLINE_S):
                    return await c.call(method, params)

            await read("daemon.status", {})
            await read("daemon.metrics", {})
            await read("rpc.discover", {})
            await read("project.list", {"include_archived": True})
            await read("project.get", {"project": world.project})
            await read("session.list", {})
            await read("session.get", {"session": sid})
            await read("session.diff", {"session": sid, "patch": True})
            await read("session.config", {"session": sid})
            await read("session.events", {"session": sid})
            await read("session.logs", {"session": sid})
            await read("permission.list", {"session": sid})
            # Answers a request forwarded to an attached client; none is waiting here.
            called.append("client_request.respond")
            answered = await c.call_raw("client_request.respond", {"id": 1, "result": None})
            assert answered["error"]["code"] == ErrorCode.NOT_FOUND
            subscribed = await read("subscribe", {"session": sid, "after_seq": 0})
            await read("unsubscribe", {"subscription": subscribed["subscription"]})
            await read("worktree.list", {})
            await read("agent.list", {})
            await read("search", {"query": "go"})
            await read("template.list", {"session": sid})
            await read("db.check", {"full": True})
            await read("audit.list", {"failed": True})
            await read("agent.probe", {"kind": "fake", "timeout_s": 10})
            await read("run.get", {"run": rid})
            await read("run.list", {})
            await read("run.events", {"run": rid})
            await read("run.compare", {"run": rid, "files": True})
            run_subscribed = await read("run.subscribe", {"run": rid, "after": 0})
            await c.call("unsubscribe", {"subscription": run_subscribed["subscription"]})
            await read("export.page", {})
            await read("import.begin", {"header": HEADER})
            assert database_dump(dirs) == dump
            await c.call("permission.respond", {"permission": pending, "kind": "allow_once"})
        methods = await discovered(c)
    assert sorted(called) == sorted(name for name, marked in methods.items() if not marked)
