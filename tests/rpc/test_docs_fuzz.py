"""Fuzzing a real mimird with the requests documented in docs/api.md (DESIGN.md, Invariant 7).

Every ``>>>`` example of the API reference is parsed and sent again, mutated:
values replaced (wrong types, huge integers, NUL bytes, over-long names, deep
nesting), params dropped or added, ids and methods changed, requests batched,
and now and then a few frames pipelined on one connection. The daemon runs as a
real process, with real git projects where the examples' paths point and a
scripted ACP agent, so that many requests succeed and reach the code behind the
params. Whatever is sent, each frame gets exactly the responses JSON-RPC
specifies (matched by id: concurrent methods answer out of order), none of them
-32603, on a connection that is not dropped; afterwards the daemon is the same
process and its database passes ``db.check`` with ``full``.

The daemon runs as root in CI containers: every path a request could make it
write to or copy from is confined to the test's directory (``confine``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import sys
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
from tests.rpc.test_rpc_fuzz import BLANK, check_response, expected_response
from tests.support.helpers import DaemonDirs, DaemonProcess, blocking_call, daemon_process, git

#: The whole run takes about a minute on a loaded two-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_DOC: Final = Path(__file__).parents[2] / "docs" / "api.md"
FAKE_AGENT: Final = Path(__file__).parents[1] / "support" / "fake_acp_agent.py"
#: Where the examples' projects and backups live, replaced by the test's directories.
DOC_ROOT: Final = "/tmp/mimir-docs"
DOC_HOME: Final = "/home/me"
#: Ids as the examples show them: a session's, or a prefix of one (at least 4 characters).
DOC_ID: Final = re.compile(r'"(01m80[0-9a-z]{3,21})"')
EXAMPLES: Final = int(os.environ.get("MIMIR_FUZZ_EXAMPLES", "2500"))
#: A create with a setup command, a diff or a prompt to the scripted agent takes far less.
DEADLINE_S: Final = 60.0
FUZZ_SETTINGS: Final = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Frames sent together nest less deeply than this (far below the daemon's limit).
PIPELINE_MAX_DEPTH: Final = 300
#: Responses between two heals.
HEAL_EVERY: Final = 50
#: Sessions made before fuzzing, which the examples' session ids are mapped to.
POOL_SESSIONS: Final = 4
#: Setup commands the fuzzer may leave in a config: anything else is replaced by the first.
SAFE_COMMANDS: Final = ("echo fuzz", "echo installing; echo no network >&2; exit 3")
#: Integers just inside and outside what params and SQLite take.
EDGE_INTEGERS: Final = (
    -1,
    0,
    1,
    64,
    65,
    1000,
    1001,
    (1 << 31),
    (1 << 63) - 1,
    1 << 63,
    1 << 64,
    -(1 << 63) - 1,
    10**30,
)


def documented_frames() -> list[str]:
    """The ``>>>`` lines of docs/api.md, less the one standing for a 16 MiB frame."""
    frames = []
    for line in API_DOC.read_text().splitlines():
        if line.startswith(">>> ") and "…" not in line:
            frames.append(line.removeprefix(">>> "))
    return frames


@dataclass(frozen=True, repr=False, eq=False)
class World:
    daemon: DaemonProcess
    root: Path
    #: Where project.add may point: the examples' projects, under the test's directory.
    docs: Path
    home: Path
    #: The examples, each session id in them a slot of the pool (``fill`` puts the ids in).
    templates: tuple[str, ...]
    methods: tuple[str, ...]
    param_names: tuple[str, ...]
    #: Sessions the examples name; ``heal`` replaces those fuzzing deleted for good.
    pool: list[str]
    #: The id of the project named api (the one at docs/src/api), as ``heal`` left it.
    api_id: list[str]

    # Hypothesis prints dataclasses field by field; a failure report needs only this.
    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        return f"World({self.root})"

    @property
    def socket(self) -> Path:
        return self.daemon.dirs.socket

    def fill(self, template: str) -> str:
        return SLOT.sub(lambda m: self.pool[int(m["slot"])][: int(m["length"])], template)

    def refs(self) -> tuple[str, ...]:
        """Ids and names that exist (as of the last heal); always REF_COUNT of them."""
        return (*self.pool, *(s[:12] for s in self.pool), self.api_id[0], "api", "web")

    def requests(self) -> list[Any]:
        """The examples that are single requests, decoded."""
        return [
            msgspec.json.decode(self.fill(t))
            for t in self.templates
            if t.startswith("{") and t.endswith("}")
        ]


#: A session id in a template: ``@@<slot>:<length>@@`` (a prefix when shorter than an id).
SLOT: Final = re.compile(r"@@(?P<slot>\d+):(?P<length>\d+)@@")
REF_COUNT: Final = 2 * POOL_SESSIONS + 3


def write_config(dirs: DaemonDirs) -> None:
    """A config whose default agent is the scripted one, answering every prompt at once."""
    scenario = dirs.root / "scenario.json"
    scenario.write_text("{}")
    dirs.config.write_text(
        "\n".join(
            [
                "[supervision]",
                "max_restarts = 1",
                "backoff_initial_s = 0.05",
                "backoff_max_s = 0.1",
                "start_timeout_s = 10",
                "cancel_grace_s = 0.5",
                "stop_grace_s = 0.5",
                "[defaults]",
                'agent = "fake"',
                "[agents.fake]",
                f"command = {json.dumps(sys.executable)}",
                f"args = [{json.dumps(str(FAKE_AGENT))}, {json.dumps(str(scenario))}]",
            ]
        )
        + "\n"
    )


def make_projects(docs: Path) -> None:
    """The examples' projects: api (with a subdirectory pkg and an ignored .env) and web."""
    for name, files in (
        ("api", {"pyproject.toml": "[project]\n", "pkg/__init__.py": "", ".gitignore": ".env\n"}),
        ("web", {"package.json": "{}\n"}),
    ):
        path = docs / "src" / name
        for file, text in files.items():
            (path / file).parent.mkdir(parents=True, exist_ok=True)
            (path / file).write_text(text)
        git(path, "init", "-q", "-b", "main")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
    (docs / "src" / "api" / ".env").write_text("TOKEN=1\n")


def call(world_socket: Path, method: str, params: Any) -> Any:
    response = blocking_call(world_socket, method, params, timeout=DEADLINE_S)
    assert "result" in response, response
    return response["result"]


def templates(documented: list[str], docs: Path, home: Path) -> tuple[str, ...]:
    """The examples with their paths under the test's directory and their session ids
    (and prefixes) as slots of the pool, spread over it."""
    doc_ids = sorted({i for frame in documented for i in DOC_ID.findall(frame) if len(i) == 26})
    slots = {doc_id: n % POOL_SESSIONS for n, doc_id in enumerate(doc_ids)}
    result = []
    for frame in documented:
        for doc_id in DOC_ID.findall(frame):
            # A prefix stands for the documented id it starts.
            full = next((i for i in doc_ids if i.startswith(doc_id)), doc_id)
            frame = frame.replace(f'"{doc_id}"', f'"@@{slots.get(full, 0)}:{len(doc_id)}@@"')
        result.append(frame.replace(DOC_ROOT, str(docs)).replace(DOC_HOME, str(home)))
    return tuple(result)


def heal(world: World) -> None:
    """Bring back what fuzzing took away for good, so that the examples keep reaching
    real objects: the projects api and web (registered, named so, not archived), and
    sessions in the pool's slots whose session is gone or deleted."""
    for name in ("api", "web"):
        path = str(world.docs / "src" / name)
        found = blocking_call(world.socket, "project.get", {"project": name})
        if "result" in found and found["result"]["path"] != path:
            # Another project took the name: give it back.
            moved = {
                "project": found["result"]["id"],
                "name": f"was-{name}-{found['result']['id']}",
            }
            call(world.socket, "project.update", moved)
            found = {}
        if "result" not in found:
            added = blocking_call(world.socket, "project.add", {"path": path, "name": name})
            project_id = (
                added["result"]["id"] if "result" in added else added["error"]["data"]["id"]
            )
            found = {
                "result": call(
                    world.socket, "project.update", {"project": project_id, "name": name}
                )
            }
        if found["result"]["archived"]:
            call(world.socket, "project.update", {"project": name, "archived": False})
        if name == "api":
            world.api_id[0] = found["result"]["id"]
    for slot, session_id in enumerate(world.pool):
        got = blocking_call(world.socket, "session.get", {"session": session_id})
        if "error" in got or got["result"]["status"] == "deleted":
            params = {"project": "api", "title": f"pool {slot}"}
            created = blocking_call(world.socket, "session.create", params, timeout=DEADLINE_S)
            # Not when the checkout is in a state that refuses it: the next heal tries again.
            if "result" in created:
                world.pool[slot] = created["result"]["id"]


@pytest.fixture
def world(dirs: DaemonDirs) -> Iterator[World]:
    dirs.root.mkdir(parents=True, exist_ok=True)
    write_config(dirs)
    docs, home = dirs.root / "docs", dirs.root / "home"
    home.mkdir()
    make_projects(docs)
    with daemon_process(dirs) as daemon:
        document = call(dirs.socket, "rpc.discover", None)
        methods = tuple(method["name"] for method in document["methods"])
        param_names = tuple(
            sorted({p["name"] for method in document["methods"] for p in method["params"]})
        )
        world = World(
            daemon=daemon,
            root=dirs.root,
            docs=docs,
            home=home,
            templates=templates(documented_frames(), docs, home),
            methods=methods,
            param_names=param_names,
            pool=[""] * POOL_SESSIONS,
            api_id=[""],
        )
        heal(world)
        yield world


# ---- keeping a root daemon inside the test's directory ---------------------------------------


def _inside(path: str, directory: Path) -> bool:
    if path == "~" or path.startswith("~/"):
        path = str(directory.parent / "home") + path[1:]
    normal = os.path.normpath(path)
    return normal == str(directory) or normal.startswith(f"{directory}/")


def _confine_request(request: Any, world: World) -> None:
    if not isinstance(request, dict) or not isinstance(params := request.get("params"), dict):
        return
    path = params.get("path")
    if isinstance(path, str) and path.startswith(("/", "~")):
        # project.add reads (and a private workspace copies) the directory; db.backup
        # writes (not into a project, which would make its checkout dirty).
        allowed = world.docs if request.get("method") == "project.add" else world.home
        if not _inside(path, allowed):
            params["path"] = str(world.docs / "nowhere")
    config = params.get("config")
    if isinstance(config, dict):
        command = config.get("setup_command")
        if isinstance(command, str) and command not in SAFE_COMMANDS:
            config["setup_command"] = SAFE_COMMANDS[0]
        location = config.get("worktree_location")
        if isinstance(location, str) and location.startswith(("/", "~")):
            del config["worktree_location"]


def confine(value: Any, world: World) -> Any:
    """``value`` with every path a request could make the daemon touch kept under the
    test's directory, and setup commands limited to harmless ones."""
    for request in value if isinstance(value, list) else [value]:
        _confine_request(request, world)
    return value


# ---- strategies ---------------------------------------------------------------------------


def nested(value: Any, depth: int, as_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def ref_values(world: World) -> st.SearchStrategy[str]:
    """An id or name that exists (as of the last heal)."""
    return st.integers(0, REF_COUNT - 1).map(lambda index: world.refs()[index])


def leaf_values(world: World) -> st.SearchStrategy[Any]:
    paths = [str(world.docs / "src" / "api"), str(world.docs / "src" / "api" / "pkg")]
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from(EDGE_INTEGERS),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=16),
        ref_values(world),
        st.sampled_from(paths),
        st.sampled_from(paths).map(lambda p: p + "\0"),
        st.sampled_from(paths).map(lambda p: f"{p}/{'x' * 300}"),
        st.sampled_from(
            [
                "",
                "\0",
                "x" * 300,
                "x" * 5000,
                "~",
                "~nosuchuser/x",
                "relative/path",
                ".",
                "..",
                "*",
                "**",
                "a**",
                "-x",
                "main",
                "HEAD~1",
                "@{-1}",
                "2026-11-22T10:00:00Z",
                "2026-13-45",
                "01m80mw6x197j0w44666p8g1dn",
                "zzzzzzzzzzzzzzzzzzzzzzzzzz",
                '"quoted',
                "NEAR(a b)",
                "é" * 200,
                "\ud7ff\ue000",
            ]
        ),
    )


@functools.cache
def json_values(world: World) -> st.SearchStrategy[Any]:
    """Any JSON value, leaning to the edges of what params take (built once: costly)."""
    return st.recursive(
        leaf_values(world),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.text(max_size=8) | st.sampled_from(world.param_names), children, max_size=4
            )
        ),
        max_leaves=10,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside ``value`` (keys and indexes), itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_request(draw: st.DrawFn, request: Any, world: World) -> Any:
    """``request`` with one thing changed."""
    if not isinstance(request, dict):
        return draw(json_values(world))
    request = dict(request)
    params = request.get("params")
    op = draw(
        st.sampled_from(
            [
                "value",
                "value",
                "value",
                "ref",
                "add",
                "drop",
                "deepen",
                "id",
                "method",
                "notification",
            ]
        )
    )
    if op in ("value", "deepen") and params is not None:
        path = draw(st.sampled_from(list(_paths(params))))
        if op == "value":
            new = draw(json_values(world))
        else:
            depth = draw(st.sampled_from([1, 2, 30, 62, 63, 64, 65, 100, 500]))
            new = nested(_get(params, path), depth, draw(st.booleans()))
        request["params"] = _replace(params, path, new)
    elif op == "ref" and isinstance(params, dict):
        key = draw(st.sampled_from(["session", "project", "permission"]))
        request["params"] = {**params, key: draw(ref_values(world))}
    elif op == "add" and isinstance(params, dict):
        key = draw(st.sampled_from(world.param_names) | st.text(max_size=8))
        request["params"] = {**params, key: draw(json_values(world))}
    elif op == "drop" and isinstance(params, dict) and params:
        key = draw(st.sampled_from(sorted(params)))
        request["params"] = {k: v for k, v in params.items() if k != key}
    elif op == "id":
        request["id"] = draw(
            st.none()
            | st.integers()
            | st.sampled_from(EDGE_INTEGERS)
            | st.text(max_size=8)
            | json_values(world)
        )
    elif op == "method":
        request["method"] = draw(st.sampled_from(world.methods))
    elif op == "notification":
        request.pop("id", None)
    return request


@st.composite
def fuzzed_frames(draw: st.DrawFn, world: World) -> bytes:
    text = world.fill(draw(st.sampled_from(world.templates)))
    try:
        value: Any = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text.encode()  # the example of a malformed frame, as documented
    # A third of the frames unchanged or nearly, so that the state evolves as documented.
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 1, 1, 2, 2, 3]))):
        if isinstance(value, list) and value:
            index = draw(st.integers(0, len(value) - 1))
            value = [
                *value[:index],
                draw(mutated_request(value[index], world)),
                *value[index + 1 :],
            ]
        else:
            value = draw(mutated_request(value, world))
    if draw(st.integers(0, 9)) == 0:
        value = [value, *draw(st.lists(st.sampled_from(world.requests()), max_size=3))]
    try:
        return msgspec.json.encode(confine(value, world))
    except RecursionError:  # deepened past what the encoder takes: send the example as is
        return text.encode()


# ---- the oracle ------------------------------------------------------------------------------


def exchange(world: World, frames: list[bytes]) -> list[bytes]:
    """Send ``frames`` on a new connection without waiting for answers, half-close, and
    return the response lines received before EOF (``event`` notifications left out)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DEADLINE_S)
        sock.connect(str(world.socket))
        sock.sendall(b"".join(frame + b"\n" for frame in frames))
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while data := sock.recv(65536):
            received += data
    assert not received or received.endswith(b"\n"), bytes(received[-200:])
    lines = bytes(received).split(b"\n")[:-1]
    return [line for line in lines if not line.startswith(b'{"jsonrpc":"2.0","method":"event"')]


def nesting(frame: bytes) -> int:
    """How deeply ``frame`` nests arrays and objects (0 when it is not JSON)."""
    try:
        stack = [(msgspec.json.decode(frame), 0)]
    except (msgspec.DecodeError, RecursionError):
        return 0
    deepest = 0
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth + 1)
            stack.extend(
                (item, depth + 1) for item in (value.values() if isinstance(value, dict) else value)
            )
    return deepest


def crash_reports(world: World) -> str:
    """What the daemon logged about handlers that crashed (for the failure message)."""
    return "\n".join(
        line for line in world.daemon.stderr.splitlines() if "rpc_handler_crashed" in line
    )[-4000:]


def response_to_a_too_deep_frame(response: Any) -> bool:
    return (
        isinstance(response, dict)
        and response.get("id") is None
        and response.get("error", {}).get("code") == ErrorCode.PARSE_ERROR
        and "too deeply" in response["error"]["message"]
    )


def assert_answered_without_internal_error(world: World, frames: list[bytes]) -> list[str]:
    """Send ``frames`` pipelined and check the answers: one line per frame that is owed
    one, each well-formed, for the ids sent, none -32603. Returns the kinds of the
    responses ("result" or the error's kind)."""
    lines = exchange(world, frames)
    # The daemon decodes on a deeper stack than this test: a frame this test could still
    # decode (even a notification) may be past the daemon's nesting limit, which is a
    # documented -32700.
    if len(frames) == len(lines) == 1 and response_to_a_too_deep_frame(
        msgspec.json.decode(lines[0])
    ):
        return ["parse_error"]
    owed = [e for frame in frames if frame.strip(BLANK) and (e := expected_response(frame))]
    assert len(lines) == len(owed), f"{len(lines)} responses to {frames!r:.600}: {lines}"
    ids = Counter(repr(request_id) for e in owed for request_id in e.ids)
    kinds = []
    for line in lines:
        # Concurrent methods answer out of order: responses are matched by id only.
        response = msgspec.json.decode(line)
        items = response if isinstance(response, list) else [response]
        for item in items:
            check_response(item, ids)
            code = item.get("error", {}).get("code")
            assert code != ErrorCode.INTERNAL_ERROR, (
                f"{frames!r:.600} got {item}\n{crash_reports(world)}"
            )
            kinds.append(item["error"]["data"]["kind"] if "error" in item else "result")
    return kinds


@st.composite
def pipelined_frames(draw: st.DrawFn, world: World) -> list[bytes]:
    """Mostly one frame; sometimes a few, sent without waiting (so concurrent methods
    overlap, and ids repeat), but never one so deep the daemon may refuse it as a frame."""
    frames = [draw(fuzzed_frames(world))]
    if draw(st.integers(0, 3)) == 0:
        more = draw(st.lists(fuzzed_frames(world), min_size=1, max_size=3))
        frames += [frame for frame in more if nesting(frame) < PIPELINE_MAX_DEPTH]
        frames = frames if nesting(frames[0]) < PIPELINE_MAX_DEPTH else frames[:1]
    return frames


# ---- the test ----------------------------------------------------------------------------------


def test_every_documented_request_mutated_gets_specified_answers_and_no_internal_error(
    world: World,
) -> None:
    outcomes: Counter[str] = Counter()
    healed = [0]

    @FUZZ_SETTINGS
    @given(frames=pipelined_frames(world))
    def check(frames: list[bytes]) -> None:
        outcomes.update(assert_answered_without_internal_error(world, frames))
        if sum(outcomes.values()) // HEAL_EVERY > healed[0]:
            healed[0] += 1
            heal(world)

    check()
    # For the record (pytest -s): how many requests succeeded, and which errors came back.
    print(f"responses by kind: {dict(outcomes.most_common())}")

    status = blocking_call(world.socket, "daemon.status")
    assert status["result"]["pid"] == world.daemon.proc.pid
    checked = blocking_call(world.socket, "db.check", {"full": True}, timeout=DEADLINE_S)
    assert checked["result"]["ok"], checked
    assert crash_reports(world) == ""
