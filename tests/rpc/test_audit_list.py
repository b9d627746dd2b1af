"""``audit.list`` and ``mimirctl audit``: the audit log read back through the API,
newest first, paged and filtered; who called (uid, pid, client name); calls refused
for their params recorded too, their hostile params masked and bounded; reads not
recorded; the human output safe for a terminal.

One real mimird process serves the module; each test looks only at the rows it made
(the ids after the newest one it found).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest

from mimird.rpc.audit import MAX_PARAMS_CHARS, MAX_REJECTED_DECODE_BYTES, process_name
from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    DaemonDirs,
    blocking_call,
    module_daemon_fixtures,
    rpc,
    run_mimirctl,
)

ctl_dirs, mimird_process, dirs = module_daemon_fixtures()

SECRET: Final = "hunter2-very-secret-value"


def newest(dirs: DaemonDirs) -> int:
    entries = rpc(dirs, "audit.list", {"limit": 1})["entries"]
    return entries[0]["id"] if entries else 0


def rows_after(dirs: DaemonDirs, after: int, **filters: Any) -> list[dict[str, Any]]:
    """Every row written after id ``after`` (newest first), through audit.list's pages."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000, **filters}
    while True:
        page = rpc(dirs, "audit.list", params)
        found += [e for e in page["entries"] if e["id"] > after]
        if page["next_cursor"] is None or page["entries"][-1]["id"] <= after:
            return found
        params["cursor"] = page["next_cursor"]


def project_dir(dirs: DaemonDirs, name: str) -> Path:
    path = dirs.root / "projects" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def exchange(dirs: DaemonDirs, *frames: bytes) -> list[Any]:
    """Send ``frames`` on one connection, then a daemon.status that names no client;
    every response, the status's last."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(dirs.socket))
        sock.sendall(b"".join(f + b"\n" for f in frames))
        sock.sendall(b'{"jsonrpc":"2.0","id":"sync","method":"daemon.status"}\n')
        responses = []
        with sock.makefile("rb") as f:
            while True:
                response = msgspec.json.decode(f.readline())
                responses.append(response)
                if isinstance(response, dict) and response.get("id") == "sync":
                    return responses


def request(method: str, params: Any, request_id: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return msgspec.json.encode(message)


def test_entries_are_newest_first_and_paged_by_cursor(dirs: DaemonDirs) -> None:
    before = newest(dirs)
    for n in range(5):
        rpc(dirs, "project.add", {"path": str(project_dir(dirs, f"paged{n}"))})
    pages, params = [], {"limit": 2}
    while True:
        page = rpc(dirs, "audit.list", params)
        pages.append([e["id"] for e in page["entries"]])
        if page["next_cursor"] is None or page["entries"][-1]["id"] <= before + 1:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}
    ids = [i for page in pages for i in page if i > before]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 5
    assert all(len(page) <= 2 for page in pages)
    last = rpc(dirs, "audit.list", {"limit": 1000, "cursor": 1})
    assert last == {"entries": [], "next_cursor": None}


def test_filters_by_method_outcome_and_time(dirs: DaemonDirs) -> None:
    before = newest(dirs)
    made = rpc(dirs, "project.add", {"path": str(project_dir(dirs, "filtered"))})
    assert "error" in blocking_call(dirs.socket, "project.remove", {"project": "ghost"})
    assert "error" in blocking_call(dirs.socket, "project.add", {"path": "/no/such/dir"})
    rows = rows_after(dirs, before)
    assert [r["method"] for r in rows] == ["project.add", "project.remove", "project.add"]
    added = rows_after(dirs, before, method="project.add")
    assert [(r["outcome"], r["target"]) for r in added] == [("error", None), ("ok", made["id"])]
    failed = rows_after(dirs, before, failed=True)
    assert [(r["method"], r["error_kind"]) for r in failed] == [
        ("project.add", "invalid_params"),
        ("project.remove", "not_found"),
    ]
    assert failed[1]["error_code"] == ErrorCode.NOT_FOUND
    assert failed[1]["target"] == "ghost"
    first = rows[-1]["at"]
    assert rows_after(dirs, before, since=first) == rows
    assert rows_after(dirs, before, since="2999-01-01") == []
    assert rows_after(dirs, before, since="2000-01-01") == rows  # a date alone


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"method": "project.list"}, "method", id="not-audited"),
        pytest.param({"method": "no.such"}, "method", id="unknown-method"),
        pytest.param({"since": "2026-02-30"}, "since", id="no-such-date"),
        pytest.param({"since": "yesterday"}, "since", id="not-a-time"),
        pytest.param({"limit": 0}, "limit", id="limit-zero"),
        pytest.param({"limit": 1001}, "limit", id="limit-too-big"),
        pytest.param({"cursor": 0}, "cursor", id="cursor-zero"),
        pytest.param({"cursor": "abc"}, "cursor", id="cursor-not-int"),
        pytest.param({"colour": 1}, "colour", id="unknown-field"),
    ],
)
def test_bad_filters_are_invalid_params_naming_the_field(
    dirs: DaemonDirs, params: dict[str, Any], field: str
) -> None:
    response = blocking_call(dirs.socket, "audit.list", params)
    error = response["error"]
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == field
    if field == "method":
        assert "project.add" in error["message"]  # it says which methods are audited


def test_reads_are_not_audited(dirs: DaemonDirs) -> None:
    before = newest(dirs)
    for method, params in [
        ("audit.list", {}),
        ("audit.list", {"failed": True}),
        ("audit.list", {"method": "nope"}),  # refused, and still a read
        ("project.list", {}),
        ("daemon.status", {}),
    ]:
        blocking_call(dirs.socket, method, params)
    assert rows_after(dirs, before) == []


def test_the_caller_is_named_by_uid_pid_and_client_name(dirs: DaemonDirs) -> None:
    before = newest(dirs)
    named = exchange(
        dirs,
        request("daemon.status", {"client": "my-editor 1.2"}, "hello"),
        request("project.add", {"path": str(project_dir(dirs, "named"))}),
    )
    assert "result" in named[1], named
    rpc(dirs, "project.add", {"path": str(project_dir(dirs, "unnamed"))})
    unnamed, given = rows_after(dirs, before)
    assert given["client"] == "my-editor 1.2"
    # No name given: the process's own (this test's: /proc/PID/comm).
    assert unnamed["client"] == process_name(os.getpid())
    assert unnamed["client"]
    assert {(r["uid"], r["pid"]) for r in (given, unnamed)} == {(os.geteuid(), os.getpid())}
    bad = blocking_call(dirs.socket, "daemon.status", {"client": "evil\x1b[2J"})
    assert bad["error"]["data"]["field"] == "client"


def test_mimirctl_names_itself(dirs: DaemonDirs) -> None:
    before = newest(dirs)
    done = run_mimirctl(dirs, "project", "add", str(project_dir(dirs, "byctl")))
    assert done.returncode == 0, done.stderr
    [row] = rows_after(dirs, before)
    assert row["client"] == "mimirctl"
    assert row["pid"] != os.getpid()


def test_refused_calls_are_recorded_with_their_secrets_masked(dirs: DaemonDirs) -> None:
    project = rpc(
        dirs,
        "project.add",
        {
            "path": str(project_dir(dirs, "secretive")),
            "config": {"env": {"TOKEN": {"value": SECRET, "secret": True}}},
        },
    )
    before = newest(dirs)
    # Refused for an unknown field; the project's secret is also in a free text.
    refused = blocking_call(
        dirs.socket,
        "project.update",
        {"project": project["id"], "description": f"token is {SECRET}", "colour": "red"},
    )
    assert refused["error"]["data"]["field"] == "colour"
    # Refused with a new secret in its own config (and a wrong type elsewhere).
    new_secret = "another-secret-for-the-log"
    blocking_call(
        dirs.socket,
        "project.update",
        {
            "project": project["id"],
            "config": {"env": {"KEY": {"value": new_secret, "secret": True}}},
            "archived": "yes",
        },
    )
    second, first = rows_after(dirs, before)
    for row in (first, second):
        assert row["outcome"] == "error"
        assert row["error_kind"] == "invalid_params"
        assert row["target"] == project["id"]
        assert SECRET not in row["params"]
        assert new_secret not in row["params"]
        assert "***" in row["params"]
    assert first["error_message"] == refused["error"]["message"]
    assert json.loads(first["params"])["colour"] == "red"


def test_hostile_refused_params_are_bounded(dirs: DaemonDirs) -> None:
    before = newest(dirs)
    huge = "x" * (MAX_REJECTED_DECODE_BYTES + 10)
    long_name = "p" * 10_000
    responses = exchange(
        dirs,
        request("project.add", {"path": "/tmp", "junk": huge}),
        request("project.remove", {"project": long_name, "force": "yes"}),
        request("project.remove", ["positional", 1]),
        request("project.remove", {"project": "note", "force": 1}, request_id=None),
        b"["
        + request("project.remove", {"project": "batched", "force": 2}, 7)
        + b","
        + request("project.list", {"bad": 1}, 8)
        + b"]",
    )
    assert [r["error"]["code"] for r in responses[:3]] == [ErrorCode.INVALID_PARAMS] * 3
    assert [r["error"]["code"] for r in responses[3]] == [ErrorCode.INVALID_PARAMS] * 2
    rows = list(reversed(rows_after(dirs, before)))
    assert [(r["method"], r["target"]) for r in rows] == [
        ("project.add", None),
        ("project.remove", None),  # a target that long is not kept
        ("project.remove", None),
        ("project.remove", "note"),  # a notification is a call too
        ("project.remove", "batched"),  # project.list is a read: not recorded
    ]
    size = len(msgspec.json.encode({"path": "/tmp", "junk": huge}))
    assert json.loads(rows[0]["params"]) == {"unshown": f"params of {size} bytes, not stored"}
    assert len(rows[1]["params"]) <= MAX_PARAMS_CHARS
    assert json.loads(rows[2]["params"]) == ["positional", 1]


def test_mimirctl_audit_shows_rows_safely_and_as_json(dirs: DaemonDirs) -> None:
    before = newest(dirs)
    hostile = "\x1b]0;pwned\x07\x1b[31mred"
    blocking_call(dirs.socket, "project.remove", {"project": hostile, "force": True})
    done = run_mimirctl(dirs, "audit", "--failed", "-v", "--limit", "5")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert "\x07" not in done.stdout
    assert "^[]0;pwned^G^[[31mred" in done.stdout
    assert "project.remove" in done.stdout
    assert "not_found" in done.stdout
    listed = run_mimirctl(dirs, "audit", "--json", "--method", "project.remove", "--limit", "1")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)["entries"]
    assert entry["id"] > before
    assert entry["target"] == hostile
    refused = run_mimirctl(dirs, "audit", "--method", "project.list")
    assert refused.returncode == 2
    assert "not an audited method" in refused.stderr
    bad_time = run_mimirctl(dirs, "audit", "--since", "whenever")
    assert bad_time.returncode == 2
