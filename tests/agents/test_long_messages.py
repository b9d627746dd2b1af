"""An agent's message beyond ``[supervision] message_piece_bytes`` is journaled in
pieces as it streams: no stored row (nor event frame) holds more than the bound, the
pieces joined are the whole message, search finds text from any of them, and no
secret is cut in two by a piece's end (where neither piece's masking would find it)."""

from __future__ import annotations

import json
from typing import Any, Final

import pytest

from mimird.wire.events import decode_event
from tests.support.agents import Client, agent_world, new_session
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

#: The smallest bound the config allows: the test's messages stay small.
PIECE_BYTES: Final = 1024
#: Room for the rest of a message event's data (role, piece, continued, the keys).
DATA_OVERHEAD: Final = 100


def chunk(text: str, kind: str = "agent_message_chunk") -> dict[str, Any]:
    update = {"sessionUpdate": kind, "content": {"type": "text", "text": text}}
    return {"do": "update", "update": update}


async def all_events(c: Client, session_id: str) -> list[dict[str, Any]]:
    result = await c.call("session.events", {"session": session_id, "limit": 10_000})
    events: list[dict[str, Any]] = result["events"]
    return events


def messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["kind"] == "message"]


def chunk_texts(events: list[dict[str, Any]]) -> str:
    return "".join(
        e["data"]["update"]["content"]["text"]
        for e in events
        if e["kind"] == "update" and e["data"]["update"]["sessionUpdate"] == "agent_message_chunk"
    )


async def test_a_message_far_beyond_the_bound_is_journaled_in_bounded_whole_pieces(
    dirs: DaemonDirs,
) -> None:
    # About 40 KB of words in 1,000 chunks, with a word found nowhere else near the
    # start, one in the middle and one at the end.
    words = [f"word{i:04d} " for i in range(1000)]
    words[3] = "firstquokka "
    words[500] = "middlequokka "
    words[999] = "lastquokka "
    steps = [chunk(word * 4) for word in words] + [{"do": "tool_call"}]
    supervision = {"message_piece_bytes": PIECE_BYTES}
    async with (
        agent_world(dirs, {"prompts": [steps]}, supervision=supervision) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await c.call("subscribe", {"session": session_id, "after_seq": 0})
        await c.call("session.prompt", {"session": session_id, "text": "talk"})
        events = await all_events(c, session_id)

        pieces = messages(events)
        whole = "".join(word * 4 for word in words)
        assert len(pieces) > len(whole) // PIECE_BYTES
        assert "".join(p["text"] for p in pieces) == whole
        assert [p["piece"] for p in pieces] == list(range(1, len(pieces) + 1))
        assert all(p["continued"] is True for p in pieces[:-1])
        assert "continued" not in pieces[-1]
        for p in pieces:
            assert len(json.dumps(p["text"], ensure_ascii=False).encode()) - 2 <= PIECE_BYTES
        # Each piece ends after a space (no word is cut in two), but the last.
        assert all(p["text"].endswith(" ") for p in pieces[:-1])
        # Every piece comes after the updates that carry its text.
        message_seqs = [e["seq"] for e in events if e["kind"] == "message"]
        for n, seq in enumerate(message_seqs, start=1):
            streamed = chunk_texts([e for e in events if e["seq"] < seq])
            assert streamed.startswith("".join(p["text"] for p in pieces[:n]))
        # No stored row, nor the frame that carried it, is much more than the bound.
        for e in events:
            if e["kind"] == "message":
                assert len(json.dumps(e["data"]).encode()) <= PIECE_BYTES + DATA_OVERHEAD
        await c.wait_for(lambda e: e["kind"] == "message" and "continued" not in e["data"])
        framed = [n["event"] for n in c.events if n["event"]["kind"] == "message"]
        assert [e["data"] for e in framed] == pieces
        for word in ("firstquokka", "middlequokka", "lastquokka"):
            hits = (await c.call("search", {"query": word, "session": session_id}))["hits"]
            assert [h["kind"] for h in hits] == ["message"], word
        # Clients decode the pieces with the wire's typed events.
        typed = decode_event(json.dumps(next(e for e in events if e["kind"] == "message")))
        assert typed.data.piece == 1
        assert typed.data.continued is True


async def test_a_message_within_the_bound_is_one_event_as_before(dirs: DaemonDirs) -> None:
    steps = [chunk("short "), chunk("message")]
    supervision = {"message_piece_bytes": PIECE_BYTES}
    async with (
        agent_world(dirs, {"prompts": [steps]}, supervision=supervision) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "talk"})
        assert messages(await all_events(c, session_id)) == [
            {"role": "agent", "text": "short message"}
        ]


@pytest.mark.parametrize(
    ("secret", "escaped"),
    [
        pytest.param("s3cr3t-t0ken-4f9a-77", False, id="as-is"),
        # JSON-escaped inside the agent's text (tool arguments as JSON text): a form
        # of the secret that is masked too, so no piece may end inside it either.
        pytest.param('s3cr3t"t0ken\\4f9a-77', True, id="json-escaped"),
    ],
)
async def test_a_piece_never_ends_inside_a_secret(
    dirs: DaemonDirs, secret: str, escaped: bool
) -> None:
    """Text with no space to end a piece at, and a secret across where the bound
    would cut it: the piece ends before the secret, which is masked whole."""
    written = json.dumps(secret)[1:-1] if escaped else secret
    before = "x" * (PIECE_BYTES - 4)
    steps = [chunk(before + written[:10]), chunk(written[10:] + "y" * 2000)]
    supervision = {"message_piece_bytes": PIECE_BYTES}
    async with (
        agent_world(dirs, {"prompts": [steps]}, supervision=supervision) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        env = {"API_TOKEN": {"value": secret, "secret": True}}
        session = await c.call(
            "session.create", {"project": world.project, "title": "t", "config": {"env": env}}
        )
        await c.call("session.prompt", {"session": session["id"], "text": "talk"})
        events = await all_events(c, session["id"])
        pieces = messages(events)
        assert len(pieces) == 3
        assert pieces[0]["text"] == before
        assert "".join(p["text"] for p in pieces) == before + "***" + "y" * 2000
        assert secret[:4] not in json.dumps(events)


async def test_a_message_id_that_is_not_a_short_string_is_not_stored(dirs: DaemonDirs) -> None:
    """An agent's messageId is untrusted: an object or a huge string would be copied
    into every piece (and break clients that decode the typed event)."""
    steps = []
    for message_id in ({"not": "a string"}, "m" * 10_000, "msg-1"):
        update = {
            "sessionUpdate": "agent_message_chunk",
            "messageId": message_id,
            "content": {"type": "text", "text": "hello"},
        }
        steps.append({"do": "update", "update": update})
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "talk"})
        events = await all_events(c, session_id)
        assert messages(events) == [
            {"role": "agent", "text": "hello"},
            {"role": "agent", "text": "hello"},
            {"role": "agent", "text": "hello", "message_id": "msg-1"},
        ]
        for e in events:
            decode_event(json.dumps(e))


async def test_a_chunk_cut_inside_an_emoji_is_journaled_with_a_replacement_character(
    dirs: DaemonDirs,
) -> None:
    # An agent written in JavaScript that cuts its text with slice() in the middle of
    # an emoji sends a lone surrogate escape ("\ud83d"; the fake agent's json.dumps
    # writes it the same way). The whole update was refused as malformed JSON: the
    # text was lost and an agent_protocol_error journaled instead.
    steps = [chunk("smile \ud83d"), chunk(" done")]
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "talk"})
        events = await all_events(c, session_id)
        assert [e for e in events if e["kind"] == "agent_protocol_error"] == []
        assert messages(events) == [{"role": "agent", "text": "smile \ufffd done"}]
        assert chunk_texts(events) == "smile \ufffd done"
