"""The sans-IO JSON-RPC peer, fed plain lines: events out, bytes to send back."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mimird.wire.jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    CancelRequested,
    ErrorResponse,
    JsonRpcPeer,
    Notification,
    Outgoing,
    ProtocolError,
    Request,
    Response,
)

CANCEL = "$/cancel_request"


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def sent(data: bytes) -> Any:
    assert data.endswith(b"\n"), "a whole line"
    assert data.count(b"\n") == 1, "one line"
    return json.loads(data)


def test_a_request_of_ours_gets_an_id_and_its_answer_is_an_event() -> None:
    peer = JsonRpcPeer()
    first, data = peer.request("initialize", {"protocolVersion": 1})
    second, _ = peer.request("session/new")
    assert (first, second) == (1, 2)
    assert sent(data) == {
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": 1},
        "jsonrpc": "2.0",
    }
    assert peer.pending == {1, 2}
    assert peer.receive(line({"jsonrpc": "2.0", "id": 1, "result": {"ok": True}})) == [
        Response(1, {"ok": True})
    ]
    error = {"code": -32000, "message": "auth required", "data": {"x": 1}}
    assert peer.receive(line({"jsonrpc": "2.0", "id": 2, "error": error})) == [
        ErrorResponse(2, -32000, "auth required", {"x": 1})
    ]
    assert peer.pending == set()


def test_requests_and_notifications_of_the_other_side_are_events() -> None:
    peer = JsonRpcPeer()
    request = {"jsonrpc": "2.0", "id": 0, "method": "fs/read_text_file", "params": {"path": "a"}}
    assert peer.receive(line(request)) == [Request(0, "fs/read_text_file", {"path": "a"})]
    update = {"jsonrpc": "2.0", "method": "session/update", "params": {"u": 1}}
    assert peer.receive(line(update)) == [Notification("session/update", {"u": 1})]
    assert sent(peer.answer(0, {"content": "x"})) == {
        "id": 0,
        "result": {"content": "x"},
        "jsonrpc": "2.0",
    }
    assert peer.handling == set()


def test_a_reused_id_is_answered_with_an_error_and_the_first_request_stays() -> None:
    peer = JsonRpcPeer()
    request = {"jsonrpc": "2.0", "id": "a", "method": "slow", "params": {}}
    assert peer.receive(line(request)) == [Request("a", "slow", {})]
    (again,) = peer.receive(line(request))
    assert isinstance(again, Outgoing)
    assert sent(again.data)["error"]["code"] == INVALID_REQUEST
    assert peer.handling == {"a"}
    assert sent(peer.answer_error("a", -32603, "failed"))["error"] == {
        "code": -32603,
        "message": "failed",
    }


def test_an_abandoned_request_is_cancelled_and_its_late_answer_dropped_quietly() -> None:
    peer = JsonRpcPeer(cancel_method=CANCEL)
    request_id, _ = peer.request("session/prompt")
    cancel = peer.abandon(request_id)
    assert cancel is not None
    assert sent(cancel) == {"method": CANCEL, "params": {"requestId": 1}, "jsonrpc": "2.0"}
    assert peer.abandon(request_id) is None, "once"
    assert peer.receive(line({"jsonrpc": "2.0", "id": 1, "result": {}})) == []
    # A second late answer is not expected any more.
    (stray,) = peer.receive(line({"jsonrpc": "2.0", "id": 1, "result": {}}))
    assert isinstance(stray, ProtocolError)
    assert "did not send" in stray.reason


def test_a_cancel_for_a_request_being_handled_is_an_event_others_are_ignored() -> None:
    peer = JsonRpcPeer(cancel_method=CANCEL)
    peer.receive(line({"jsonrpc": "2.0", "id": 7, "method": "session/request_permission"}))
    cancel = {"jsonrpc": "2.0", "method": CANCEL, "params": {"requestId": 7}}
    assert peer.receive(line(cancel)) == [CancelRequested(7)]
    unknown = {"jsonrpc": "2.0", "method": CANCEL, "params": {"requestId": 8}}
    assert peer.receive(line(unknown)) == []


def test_an_unreadable_request_is_reported_and_answered_with_an_error() -> None:
    peer = JsonRpcPeer()
    (error, answer) = peer.receive(b'{"jsonrpc": "2.0", "id": 5, "method": "x", "params": {')
    assert isinstance(error, ProtocolError)
    assert error.reason.startswith("not a JSON-RPC object")
    assert isinstance(answer, Outgoing)
    assert sent(answer.data)["id"] == 5
    assert sent(answer.data)["error"]["code"] == PARSE_ERROR


def test_an_unreadable_answer_fails_the_request_it_answers() -> None:
    peer = JsonRpcPeer()
    request_id, _ = peer.request("session/new")
    (error, failed) = peer.receive(b'{"jsonrpc": "2.0", "id": 1, "result": {"broken": ')
    assert isinstance(error, ProtocolError)
    assert isinstance(failed, ErrorResponse)
    assert (failed.id, failed.code) == (request_id, PARSE_ERROR)
    assert "unreadable" in failed.message
    assert peer.pending == set()


def test_a_line_too_long_is_reported_and_its_request_answered() -> None:
    peer = JsonRpcPeer()
    head = b'{"id": 3, "method": "fs/write_text_file", "params": {"content": "xxxx'
    (error, answer) = peer.receive_too_long(head, 64)
    assert isinstance(error, ProtocolError)
    assert error.reason == "line longer than 64 bytes, skipped"
    assert isinstance(answer, Outgoing)
    assert sent(answer.data)["error"]["code"] == INVALID_REQUEST


def test_blank_lines_and_shapeless_messages() -> None:
    peer = JsonRpcPeer()
    assert peer.receive(b"   ") == []
    (error,) = peer.receive(b'{"jsonrpc": "2.0"}')
    assert isinstance(error, ProtocolError)
    assert error.reason == "neither a request, a notification nor a response"
    request_id, _ = peer.request("x")
    assert peer.receive(line({"jsonrpc": "2.0", "id": request_id})) == [
        ErrorResponse(request_id, INVALID_REQUEST, "answer has neither result nor error")
    ]


# ---- lone surrogates ------------------------------------------------------------------


def utf16_replaced(text: str) -> str:
    """``text`` as a UTF-16 decoder makes it: each lone surrogate U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def test_a_lone_surrogate_escape_is_read_as_the_replacement_character() -> None:
    # JSON.stringify writes a string cut in the middle of an emoji so; msgspec refused
    # the whole line, and the agent's message was lost.
    peer = JsonRpcPeer()
    cut = "tool output \ud83d"  # "tool output 😀".slice(0, -1) in JavaScript
    text = {"type": "text", "text": "a\ud83d and \ude00b, 😀 whole, \\ud800 literal"}
    [event] = peer.receive(line({"jsonrpc": "2.0", "method": "session/update", "params": text}))
    assert event == Notification(
        "session/update",
        {"type": "text", "text": "a\ufffd and \ufffdb, 😀 whole, \\ud800 literal"},
    )
    [request] = peer.receive(line({"jsonrpc": "2.0", "id": 4, "method": "m", "params": [cut]}))
    assert request == Request(4, "m", ["tool output \ufffd"])


@given(
    st.lists(  # st.text() leaves surrogates out
        st.one_of(
            st.characters(),
            st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
            st.sampled_from(["\\", "u", "d", "8", "0"]),
        )
    ).map("".join)
)
def test_any_text_with_lone_surrogates_comes_through_as_utf16_would_read_it(text: str) -> None:
    peer = JsonRpcPeer()
    for ascii_only in (True, False):
        try:
            data = json.dumps(
                {"jsonrpc": "2.0", "method": "n", "params": [text]}, ensure_ascii=ascii_only
            ).encode()
        except UnicodeEncodeError:
            continue  # a raw surrogate cannot be UTF-8: only its escape travels
        [event] = peer.receive(data)
        assert event == Notification("n", [utf16_replaced(text)])


def test_a_line_broken_otherwise_is_still_a_protocol_error() -> None:
    peer = JsonRpcPeer()
    events = peer.receive(b'{"jsonrpc":"2.0","method":"n","params":["\\ud800"]')
    assert isinstance(events[0], ProtocolError)
    assert events[0].reason.startswith("not a JSON-RPC object")
