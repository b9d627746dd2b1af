"""JSON-RPC 2.0 conformance over a real Unix socket (DESIGN.md, Wire API and Invariant 7).

Every test talks to a real in-process daemon through a real socket. JSON-RPC lets
responses on one connection arrive in any order, so tests that send more than one
request match responses by id; tests that must prove that *nothing* was answered
half-close the connection and read everything up to EOF.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec
import pytest
import trio
import trio.testing

from mimird.wire.errors import ErrorCode
from tests.support.helpers import DaemonDirs, InProcessDaemon, TrioClient, in_process_daemon

#: Upper bound for any single exchange with the daemon; no test waits on a clock.
DEADLINE_S: Final = 10.0
SMALL_FRAME_LIMIT: Final = 4096
STATUS: Final = {"jsonrpc": "2.0", "id": 1, "method": "daemon.status"}


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)


def padded_request(size: int) -> bytes:
    """A valid daemon.status request exactly ``size`` bytes long (JSON whitespace as padding)."""
    head, tail = b'{"jsonrpc":"2.0","id":1,"method":"daemon.status"', b"}"
    return head + b" " * (size - len(head) - len(tail)) + tail


async def exchange(client: TrioClient, frame: bytes) -> Any:
    """Send one frame, return the next response."""
    with trio.fail_after(DEADLINE_S):
        await client.send_line(frame)
        return await client.read_json()


async def responses_until_eof(client: TrioClient, data: bytes) -> list[Any]:
    """Send ``data``, half-close, and return every response the daemon sends before EOF."""
    with trio.fail_after(DEADLINE_S):
        await client.stream.send_all(data)
        await client.stream.send_eof()
        responses = []
        while (line := await client.read_line()) is not None:
            responses.append(msgspec.json.decode(line))
        return responses


def assert_error(response: Any, code: ErrorCode, *, id: Any = None) -> dict[str, Any]:
    """Check a response is error ``code`` for ``id``; return its ``error.data``."""
    assert response["jsonrpc"] == "2.0"
    assert "result" not in response
    assert response["id"] == id, response
    assert type(response["id"]) is type(id)
    error = response["error"]
    assert error["code"] == code, response
    assert error["message"]
    data: dict[str, Any] = error["data"]
    assert data["kind"] == code.kind
    return data


async def assert_still_answers(client: TrioClient) -> None:
    response = await exchange(client, encode({**STATUS, "id": "still-there"}))
    assert response["id"] == "still-there"
    assert "result" in response, response


@pytest.fixture
async def small_frames(dirs: DaemonDirs) -> AsyncIterator[InProcessDaemon]:
    """A daemon whose frame limit is 4096 bytes."""
    dirs.config.write_text(f"[rpc]\nmax_frame_bytes = {SMALL_FRAME_LIMIT}\n")
    async with in_process_daemon(dirs) as running:
        yield running


# ---- parse errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"{", id="unterminated-object"),
        pytest.param(b"not json", id="bare-words"),
        pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"daemon.status",}', id="trailing-comma"),
        pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"daemon.status"} {}', id="two-values"),
        pytest.param(b'[{"jsonrpc":"2.0","id":1,"method":"daemon.status"},', id="broken-batch"),
    ],
)
async def test_frame_that_is_not_json_is_a_parse_error_with_null_id(
    client: TrioClient, frame: bytes
) -> None:
    assert_error(await exchange(client, frame), ErrorCode.PARSE_ERROR, id=None)


_rng = random.Random(20240607)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(_rng.randbytes(2048).replace(b"\n", b""), id="random-binary"),
        pytest.param(b"\x00\x01\x02\xff\xfe\x80", id="control-and-high-bytes"),
        pytest.param(b"\x0c", id="form-feed-only"),
        pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"daemon.\xff"}', id="bad-utf8-in-method"),
        pytest.param(b'{"jsonrpc":"2.0","id":"\xc3","method":"x"}', id="truncated-utf8-in-id"),
        pytest.param(b'"\xff"', id="bad-utf8-in-bare-string"),
        pytest.param(
            b'{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":{"x":"\xc0\xaf"}}',
            id="overlong-utf8-in-params",
        ),
        pytest.param(
            b'[{"jsonrpc":"2.0","id":1,"method":"project.get","params":{"project":"\xed\xa0\x80"}}]',
            id="encoded-surrogate-in-batch",
        ),
    ],
)
async def test_garbage_is_a_parse_error_and_the_connection_keeps_working(
    client: TrioClient, frame: bytes
) -> None:
    assert_error(await exchange(client, frame), ErrorCode.PARSE_ERROR, id=None)
    await assert_still_answers(client)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-batch"),
        pytest.param(
            b'{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":'
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            id="nested-params",
        ),
    ],
)
async def test_deeply_nested_json_is_a_parse_error_and_the_connection_keeps_working(
    client: TrioClient, frame: bytes
) -> None:
    assert_error(await exchange(client, frame), ErrorCode.PARSE_ERROR, id=None)
    await assert_still_answers(client)


# ---- invalid requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "salvaged_id", "field"),
    [
        pytest.param("daemon.status", None, None, id="string-not-object"),
        pytest.param(42, None, None, id="number-not-object"),
        pytest.param(None, None, None, id="null-not-object"),
        pytest.param({"id": 7, "method": "daemon.status"}, 7, "jsonrpc", id="missing-jsonrpc"),
        pytest.param(
            {"jsonrpc": "1.0", "id": 7, "method": "daemon.status"}, 7, "jsonrpc", id="jsonrpc-1.0"
        ),
        pytest.param(
            {"jsonrpc": 2.0, "id": "a", "method": "daemon.status"},
            "a",
            "jsonrpc",
            id="jsonrpc-number",
        ),
        pytest.param({"jsonrpc": "2.0", "id": 7}, 7, "method", id="missing-method"),
        pytest.param({"jsonrpc": "2.0", "id": 7, "method": 5}, 7, "method", id="method-number"),
        pytest.param(
            {"jsonrpc": "2.0", "id": 7, "method": ["daemon.status"]},
            7,
            "method",
            id="method-array",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": 1.5, "method": "daemon.status"}, None, "id", id="id-float"
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": 1.0, "method": "daemon.status"},
            None,
            "id",
            id="id-integral-float",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": True, "method": "daemon.status"}, None, "id", id="id-bool"
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": {"n": 1}, "method": "daemon.status"},
            None,
            "id",
            id="id-object",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": "abc", "method": "daemon.status", "extra": 1},
            "abc",
            "extra",
            id="unknown-envelope-field",
        ),
    ],
)
async def test_invalid_request_is_rejected_with_the_id_salvaged_when_valid(
    client: TrioClient, request_: Any, salvaged_id: Any, field: str | None
) -> None:
    data = assert_error(
        await exchange(client, encode(request_)), ErrorCode.INVALID_REQUEST, id=salvaged_id
    )
    assert data.get("field") == field


async def test_null_id_is_a_request_and_is_answered_with_null_id(client: TrioClient) -> None:
    response = await exchange(client, encode({**STATUS, "id": None}))
    assert response["id"] is None
    assert "result" in response


async def test_unknown_method_is_an_error_naming_the_method_field(client: TrioClient) -> None:
    request = {"jsonrpc": "2.0", "id": 3, "method": "daemon.explode"}
    data = assert_error(await exchange(client, encode(request)), ErrorCode.METHOD_NOT_FOUND, id=3)
    assert data["field"] == "method"


# ---- invalid params -------------------------------------------------------------------


async def test_unknown_field_in_params_is_named_in_the_error(client: TrioClient) -> None:
    request = {
        "jsonrpc": "2.0",
        "id": 4,
        "method": "project.list",
        "params": {"include_archived": True, "include_deleted": True},
    }
    data = assert_error(await exchange(client, encode(request)), ErrorCode.INVALID_PARAMS, id=4)
    assert data["field"] == "include_deleted"


async def test_param_of_the_wrong_type_is_named_in_the_error(client: TrioClient) -> None:
    request = {
        "jsonrpc": "2.0",
        "id": 4,
        "method": "project.list",
        "params": {"include_archived": "yes"},
    }
    data = assert_error(await exchange(client, encode(request)), ErrorCode.INVALID_PARAMS, id=4)
    assert data["field"] == "include_archived"


async def test_missing_required_param_is_named_in_the_error(client: TrioClient) -> None:
    request = {"jsonrpc": "2.0", "id": 4, "method": "project.get", "params": {}}
    data = assert_error(await exchange(client, encode(request)), ErrorCode.INVALID_PARAMS, id=4)
    assert data["field"] == "project"


@pytest.mark.parametrize(
    "params", [pytest.param([], id="array"), pytest.param(["x"], id="array-of-one"), "x", 1]
)
async def test_params_that_are_not_an_object_are_rejected_naming_params(
    client: TrioClient, params: Any
) -> None:
    request = {"jsonrpc": "2.0", "id": 5, "method": "project.get", "params": params}
    data = assert_error(await exchange(client, encode(request)), ErrorCode.INVALID_PARAMS, id=5)
    assert data["field"] == "params"


async def test_null_params_are_accepted_as_empty(client: TrioClient) -> None:
    response = await exchange(client, encode({**STATUS, "params": None}))
    assert response["id"] == 1
    assert response["result"]["protocol_version"] == 1


# ---- batches --------------------------------------------------------------------------


async def test_a_lone_surrogate_escape_is_read_as_the_replacement_character(
    client: TrioClient,
) -> None:
    # What JSON.stringify writes for a string cut inside an emoji (an editor plugin
    # slicing the user's text): read as a UTF-16 decoder reads it, as agents' lines
    # are, not refused as "frame is not valid JSON".
    frame = b'{"jsonrpc":"2.0","id":1,"method":"project.get","params":{"project":"ab\\ud83dcd"}}'
    response = await exchange(client, frame)
    assert assert_error(response, ErrorCode.NOT_FOUND, id=1)["field"] == "project"
    assert "ab\ufffdcd" in response["error"]["message"]
    [answer] = await exchange(client, b"[" + frame.replace(b'"id":1', b'"id":2') + b"]")
    assert assert_error(answer, ErrorCode.NOT_FOUND, id=2)["field"] == "project"
    pair = b'{"jsonrpc":"2.0","id":3,"method":"project.get","params":{"project":"\\ud83d\\ude00"}}'
    assert "\U0001f600" in (await exchange(client, pair))["error"]["message"]


async def test_batch_answers_every_request_with_its_own_id(client: TrioClient) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "daemon.status"},
        {"jsonrpc": "2.0", "id": "two", "method": "no.such_method"},
        {"jsonrpc": "2.0", "method": "daemon.status"},  # a notification: no answer
        {"jsonrpc": "2.0", "id": 3, "method": "project.list", "params": {"bogus": True}},
        {"id": 4, "method": "daemon.status"},
        7,
    ]
    responses = await exchange(client, encode(batch))
    assert isinstance(responses, list)
    assert len(responses) == 5
    by_id = {response["id"]: response for response in responses}
    assert by_id.keys() == {1, "two", 3, 4, None}
    assert by_id[1]["result"]["protocol_version"] == 1
    assert_error(by_id["two"], ErrorCode.METHOD_NOT_FOUND, id="two")
    assert assert_error(by_id[3], ErrorCode.INVALID_PARAMS, id=3)["field"] == "bogus"
    assert_error(by_id[4], ErrorCode.INVALID_REQUEST, id=4)
    assert_error(by_id[None], ErrorCode.INVALID_REQUEST, id=None)


@pytest.mark.parametrize("frame", [b"[]", b" [ ] "])
async def test_empty_batch_is_an_invalid_request(client: TrioClient, frame: bytes) -> None:
    assert_error(await exchange(client, frame), ErrorCode.INVALID_REQUEST, id=None)


async def test_batch_of_only_notifications_gets_no_response(client: TrioClient) -> None:
    batch = [
        {"jsonrpc": "2.0", "method": "daemon.status"},
        {"jsonrpc": "2.0", "method": "no.such_method"},
    ]
    probe = {**STATUS, "id": "probe"}
    responses = await responses_until_eof(client, encode(batch) + b"\n" + encode(probe) + b"\n")
    assert [response["id"] for response in responses] == ["probe"]


# ---- notifications --------------------------------------------------------------------


@pytest.mark.parametrize(
    "notification",
    [
        pytest.param({"jsonrpc": "2.0", "method": "daemon.status"}, id="known-method"),
        pytest.param({"jsonrpc": "2.0", "method": "no.such_method"}, id="unknown-method"),
        pytest.param(
            {"jsonrpc": "2.0", "method": "project.get", "params": {"bogus": 1}},
            id="invalid-params",
        ),
    ],
)
async def test_notification_gets_no_response(client: TrioClient, notification: Any) -> None:
    probe = {**STATUS, "id": "probe"}
    responses = await responses_until_eof(
        client, encode(notification) + b"\n" + encode(probe) + b"\n"
    )
    assert [response["id"] for response in responses] == ["probe"]


# ---- framing --------------------------------------------------------------------------


async def test_crlf_line_endings_are_accepted(client: TrioClient) -> None:
    data = encode({**STATUS, "id": 1}) + b"\r\n" + encode({**STATUS, "id": 2}) + b"\r\n"
    responses = await responses_until_eof(client, data)
    assert sorted(response["id"] for response in responses) == [1, 2]
    assert all("result" in response for response in responses)


async def test_blank_lines_are_ignored(client: TrioClient) -> None:
    data = b"\n\n   \n\t\r\n" + encode(STATUS) + b"\n\r\n\n"
    responses = await responses_until_eof(client, data)
    assert [response["id"] for response in responses] == [1]


async def test_two_requests_in_one_write_are_both_answered(client: TrioClient) -> None:
    with trio.fail_after(DEADLINE_S):
        await client.stream.send_all(
            encode({**STATUS, "id": "a"}) + b"\n" + encode({**STATUS, "id": "b"}) + b"\n"
        )
        responses = [await client.read_json(), await client.read_json()]
    assert sorted(response["id"] for response in responses) == ["a", "b"]
    assert all("result" in response for response in responses)


async def test_request_split_across_writes_is_answered(client: TrioClient) -> None:
    frame = encode({**STATUS, "id": "split"}) + b"\n"
    with trio.fail_after(DEADLINE_S):
        for start in range(0, len(frame), 7):
            await client.stream.send_all(frame[start : start + 7])
            await trio.testing.wait_all_tasks_blocked()  # let the daemon read each piece
        response = await client.read_json()
    assert response["id"] == "split"
    assert "result" in response


async def test_last_frame_without_newline_is_answered_after_half_close(
    client: TrioClient,
) -> None:
    responses = await responses_until_eof(client, encode({**STATUS, "id": "last"}))
    assert [response["id"] for response in responses] == ["last"]
    assert "result" in responses[0]


# ---- oversized frames -----------------------------------------------------------------


async def test_frame_at_the_limit_is_accepted(small_frames: InProcessDaemon) -> None:
    async with TrioClient.connect(small_frames.socket) as client:
        response = await exchange(client, padded_request(SMALL_FRAME_LIMIT))
    assert response["id"] == 1
    assert "result" in response


async def test_frame_over_the_limit_gets_one_error_then_the_connection_closes(
    small_frames: InProcessDaemon,
) -> None:
    async with TrioClient.connect(small_frames.socket) as client:
        with trio.fail_after(DEADLINE_S):
            await client.send_line(padded_request(SMALL_FRAME_LIMIT + 1))
        lines = await client.lines_until_closed()
    assert len(lines) == 1
    data = assert_error(msgspec.json.decode(lines[0]), ErrorCode.INVALID_REQUEST, id=None)
    assert data["detail"] == {"limit": SMALL_FRAME_LIMIT, "reason": "frame_too_large"}


async def test_daemon_answers_a_new_connection_after_an_oversized_frame(
    small_frames: InProcessDaemon,
) -> None:
    async with TrioClient.connect(small_frames.socket) as client:
        with trio.fail_after(DEADLINE_S):
            await client.send_line(padded_request(5 * SMALL_FRAME_LIMIT))
        await client.lines_until_closed()
    async with TrioClient.connect(small_frames.socket) as client:
        await assert_still_answers(client)


async def test_endless_frame_without_newline_is_rejected_before_it_ends(
    small_frames: InProcessDaemon,
) -> None:
    chunk = b"x" * 65536

    async def send_until_disconnected(client: TrioClient) -> None:
        try:
            while True:
                await client.stream.send_all(chunk)
        except trio.BrokenResourceError:
            pass

    async with (
        TrioClient.connect(small_frames.socket) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(send_until_disconnected, client)
        lines = await client.lines_until_closed()
        nursery.cancel_scope.cancel()
    assert len(lines) == 1
    data = assert_error(msgspec.json.decode(lines[0]), ErrorCode.INVALID_REQUEST, id=None)
    assert data["detail"]["reason"] == "frame_too_large"


# ---- slow readers ---------------------------------------------------------------------

#: How far ahead of the daemon the never-reading client gets before the other starts.
FLOOD_HEAD_START: Final = 2000
FLOOD_CHUNK: Final = 100


async def flood_without_reading(
    client: TrioClient, head_start: trio.Event, disconnected: trio.Event
) -> None:
    """Send daemon.status requests forever and never read; return once disconnected."""
    sent = 0
    # Ids repeat from chunk to chunk: nobody reads the answers.
    chunk = b"".join(encode({**STATUS, "id": n}) + b"\n" for n in range(FLOOD_CHUNK))
    try:
        while True:
            await client.stream.send_all(chunk)
            sent += FLOOD_CHUNK
            if sent >= FLOOD_HEAD_START:
                head_start.set()
    except trio.BrokenResourceError:
        disconnected.set()


async def test_client_that_never_reads_does_not_hold_up_another_client(
    daemon: InProcessDaemon,
) -> None:
    head_start, disconnected = trio.Event(), trio.Event()
    async with (
        TrioClient.connect(daemon.socket) as flooder,
        TrioClient.connect(daemon.socket) as other,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(flood_without_reading, flooder, head_start, disconnected)
        with trio.fail_after(DEADLINE_S):
            await head_start.wait()
        for _ in range(50):
            with trio.fail_after(DEADLINE_S):
                status = await other.call("daemon.status")
            assert status["counts"]["connections"] == 2
        assert not disconnected.is_set()  # the default stall timeout is far away
        nursery.cancel_scope.cancel()


async def test_stalled_client_is_disconnected_while_another_keeps_working(
    dirs: DaemonDirs,
) -> None:
    dirs.config.write_text("[rpc]\nwrite_stall_timeout_s = 0.5\n")
    head_start, disconnected = trio.Event(), trio.Event()
    async with (
        in_process_daemon(dirs) as daemon,
        TrioClient.connect(daemon.socket) as flooder,
        TrioClient.connect(daemon.socket) as other,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(flood_without_reading, flooder, head_start, disconnected)
        with trio.fail_after(DEADLINE_S):
            await head_start.wait()
        with trio.fail_after(DEADLINE_S):
            while not disconnected.is_set():
                await other.call("daemon.status")
        with trio.fail_after(DEADLINE_S):
            status = await other.call("daemon.status")
    assert status["counts"]["connections"] == 1
