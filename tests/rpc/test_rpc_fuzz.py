"""Fuzzing the frame decoder of a real mimird process (DESIGN.md, Invariant 7).

Each example opens a connection, sends one frame, half-closes and reads to EOF,
so the number of responses is exact: one line for every frame that is not a
notification (or a batch of only notifications), none otherwise, and every line
a well-formed JSON-RPC 2.0 response for the right id. Requests to mutating
methods always carry an unknown params field, so none can succeed: after the
run the daemon still answers and nothing stored has changed.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimird.wire.errors import ErrorCode
from tests.support.helpers import DaemonDirs, DaemonProcess, blocking_call, daemon_process

DEADLINE_S: Final = 10.0
EXAMPLES: Final = 300
FUZZ_SETTINGS: Final = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
#: Added to the params of every mutating call so that none of them can succeed.
POISON_FIELD: Final = "fuzz_unknown_field"
#: Method names one typo away from real ones, or attribute-like (never dispatched by name).
NEAR_MISSES: Final = (
    "project.delete",
    "Project.list",
    "daemon.status ",
    "daemon.status.x",
    "daemon",
    "",
    "__init__",
    "register",
    "_call",
)
ENVELOPE: Final = frozenset({"jsonrpc", "method", "params", "id"})
RESPONSE_FIELDS: Final = frozenset({"jsonrpc", "id", "result", "error"})
#: Blank lines are skipped; JSON's own whitespace, less the newline that ends a frame.
BLANK: Final = b" \t\r"


class _Absent:
    """Marks an envelope or params field that is left out."""


ABSENT: Final = _Absent()


@dataclass(frozen=True)
class MethodInfo:
    name: str
    mutating: bool
    params: tuple[str, ...]


@dataclass(frozen=True)
class FuzzTarget:
    daemon: DaemonProcess
    methods: tuple[MethodInfo, ...]
    project_path: Path
    state_before: tuple[Any, int]

    @property
    def socket(self) -> Path:
        return self.daemon.dirs.socket


def stored_state(dirs: DaemonDirs) -> tuple[Any, int]:
    """Everything a bad call could change: the projects and the audit log (but for
    the rows of calls refused for their params: those are recorded by design)."""
    projects = blocking_call(dirs.socket, "project.list", {"include_archived": True})["result"]
    with contextlib.closing(sqlite3.connect(f"file:{dirs.database}?mode=ro", uri=True)) as db:
        (audited,) = db.execute(
            "SELECT count(*) FROM audit_log WHERE error_code IS NOT ?",
            (int(ErrorCode.INVALID_PARAMS),),
        ).fetchone()
    return projects, audited


@pytest.fixture
def target(dirs: DaemonDirs) -> Iterator[FuzzTarget]:
    """A real mimird process with one project and the method table from rpc.discover."""
    with daemon_process(dirs) as daemon:
        project_path = dirs.root / "project"
        project_path.mkdir()
        added = blocking_call(dirs.socket, "project.add", {"path": str(project_path)})
        assert "result" in added, added
        document = blocking_call(dirs.socket, "rpc.discover")["result"]
        methods = tuple(
            MethodInfo(
                name=method["name"],
                mutating=method["x-mutating"],
                params=tuple(param["name"] for param in method["params"]),
            )
            for method in document["methods"]
        )
        assert any(m.mutating for m in methods)
        assert any(not m.mutating for m in methods)
        yield FuzzTarget(
            daemon=daemon,
            methods=methods,
            project_path=project_path,
            state_before=stored_state(dirs),
        )


def assert_daemon_unharmed(target: FuzzTarget) -> None:
    """Still the same process, still answering, and nothing stored has changed."""
    status = blocking_call(target.socket, "daemon.status")
    assert status["result"]["pid"] == target.daemon.proc.pid
    assert stored_state(target.daemon.dirs) == target.state_before


# ---- strategies -----------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def param_objects(method: MethodInfo, target: FuzzTarget) -> st.SearchStrategy[dict[str, Any]]:
    """Params objects made mostly of the method's own field names and plausible values."""
    values = (
        st.booleans()
        | st.text(max_size=10)
        | st.sampled_from([str(target.project_path), "/", "relative/path", "project"])
        | json_values
    )
    if not method.params:
        return st.just({}) | st.dictionaries(st.text(max_size=8), values, max_size=2)
    own = st.dictionaries(st.sampled_from(method.params), values, max_size=len(method.params))
    return own | own | st.dictionaries(st.text(max_size=8), values, max_size=3)


def mostly(draw: st.DrawFn, valid: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> Any:
    """A valid value three times out of four, so that most requests get past the envelope."""
    return draw(wrong if draw(st.integers(0, 3)) == 0 else valid)


@st.composite
def request_objects(draw: st.DrawFn, target: FuzzTarget) -> dict[str, Any]:
    """JSON objects shaped like requests, right or wrong in every envelope field."""
    by_name = {method.name: method for method in target.methods}
    fields: dict[str, Any] = {
        "jsonrpc": mostly(draw, st.just("2.0"), st.sampled_from([ABSENT, "1.0", 2.0, None, "2"])),
        "method": mostly(
            draw,
            st.sampled_from(sorted(by_name)),
            st.sampled_from(NEAR_MISSES) | st.text(max_size=16) | json_values | st.just(ABSENT),
        ),
        # Absent makes a notification; null is a valid id.
        "id": mostly(
            draw,
            st.just(ABSENT) | st.none() | st.integers() | st.text(max_size=8),
            st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | json_values,
        ),
    }
    method = by_name.get(fields["method"]) if isinstance(fields["method"], str) else None
    if method is not None and method.mutating:
        params: Any = draw(param_objects(method, target))
        params[POISON_FIELD] = draw(json_values)
    elif method is not None:
        params = mostly(
            draw, st.just(ABSENT) | st.none() | param_objects(method, target), json_values
        )
    else:
        params = draw(st.just(ABSENT) | json_values)
    fields["params"] = params
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.text(max_size=8))] = draw(json_values)
    return {key: value for key, value in fields.items() if value is not ABSENT}


def json_frames(target: FuzzTarget) -> st.SearchStrategy[bytes]:
    requests = request_objects(target)
    return st.one_of(
        requests,
        requests,
        requests,
        st.lists(requests, min_size=1, max_size=6),
        st.lists(requests | json_values, max_size=6),
        json_values,
    ).map(msgspec.json.encode)


@st.composite
def mangled_requests(draw: st.DrawFn, target: FuzzTarget) -> bytes:
    """A valid-looking request, cut short or with a few bytes spliced in."""
    frame = msgspec.json.encode(draw(request_objects(target)))
    at = draw(st.integers(0, len(frame)))
    insert = draw(st.binary(max_size=3).map(lambda b: b.replace(b"\n", b"")))
    return frame[:at] + insert + (frame[at:] if draw(st.booleans()) else b"")


def binary_frames(target: FuzzTarget) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=512).map(lambda b: b.replace(b"\n", b"")) | mangled_requests(target)


# ---- the oracle -----------------------------------------------------------------------


def is_notification(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() <= ENVELOPE
        and "id" not in value
        and value.get("jsonrpc") == "2.0"
        and isinstance(value.get("method"), str)
    )


def expected_id(value: Any) -> Any:
    """The id a response to ``value`` must carry: its own when it is usable, else null."""
    if isinstance(value, dict):
        candidate = value.get("id")
        if type(candidate) in (int, str):
            return candidate
    return None


@dataclass(frozen=True)
class Expected:
    """One response line: a batch (an array, one entry per id) or a single response."""

    batch: bool
    ids: list[Any]


def expected_response(frame: bytes) -> Expected | None:
    """What the daemon must answer to ``frame``; None when it must not answer at all."""
    if not frame.strip(BLANK):
        return None  # a blank line
    try:
        frame.decode("utf-8")
        value = msgspec.json.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return Expected(batch=False, ids=[None])
    if isinstance(value, list) and value:
        ids = [expected_id(item) for item in value if not is_notification(item)]
        return Expected(batch=True, ids=ids) if ids else None
    if is_notification(value):
        return None
    return Expected(batch=False, ids=[expected_id(value)])


def check_response(response: Any, ids: Counter[str]) -> None:
    """A well-formed JSON-RPC 2.0 response whose id is one of those expected."""
    assert isinstance(response, dict), response
    assert response.keys() <= RESPONSE_FIELDS, response
    assert response["jsonrpc"] == "2.0"
    assert ("result" in response) != ("error" in response), response
    key = repr(response["id"])  # repr keeps 1 and "1" apart
    assert ids[key] > 0, f"unexpected id {key}: {response}"
    ids[key] -= 1
    if "error" in response:
        error = response["error"]
        assert isinstance(error["message"], str)
        assert error["message"]
        code = ErrorCode(error["code"])
        assert error["data"]["kind"] == code.kind


def send_one_frame(socket_path: Path, frame: bytes, *, newline: bool) -> list[bytes]:
    """Send ``frame``, half-close, and return every line received before EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DEADLINE_S)
        sock.connect(str(socket_path))
        sock.sendall(frame + b"\n" if newline else frame)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while data := sock.recv(65536):
            received += data
    assert not received or received.endswith(b"\n"), bytes(received[-200:])
    return bytes(received).split(b"\n")[:-1]


def assert_answered_as_specified(target: FuzzTarget, frame: bytes, *, newline: bool) -> None:
    lines = send_one_frame(target.socket, frame, newline=newline)
    expected = expected_response(frame)
    if expected is None:
        assert lines == [], lines
        return
    assert len(lines) == 1, lines
    response = msgspec.json.decode(lines[0])
    if expected.batch:
        assert isinstance(response, list), response
        assert len(response) == len(expected.ids), response
    items = response if expected.batch else [response]
    ids = Counter(repr(request_id) for request_id in expected.ids)
    for item in items:
        check_response(item, ids)


# ---- the tests ------------------------------------------------------------------------


@pytest.mark.slow
def test_arbitrary_bytes_get_exactly_one_wellformed_response_each(target: FuzzTarget) -> None:
    @FUZZ_SETTINGS
    @given(frame=binary_frames(target), newline=st.booleans())
    def check(frame: bytes, newline: bool) -> None:
        assert_answered_as_specified(target, frame, newline=newline)

    check()
    assert_daemon_unharmed(target)


@pytest.mark.slow
def test_request_shaped_json_gets_the_specified_responses_and_changes_nothing(
    target: FuzzTarget,
) -> None:
    @FUZZ_SETTINGS
    @given(frame=json_frames(target), newline=st.booleans())
    def check(frame: bytes, newline: bool) -> None:
        assert_answered_as_specified(target, frame, newline=newline)

    check()
    assert_daemon_unharmed(target)
