"""mimird.wire.events: Mimir's event kinds as wire types, decoded tolerantly."""

from __future__ import annotations

import msgspec
import pytest

from mimird.wire import events
from mimird.wire.types import Event


def _line(kind: str, data: object) -> bytes:
    return msgspec.json.encode(
        {"id": 7, "session_id": "s1", "seq": 3, "kind": kind, "data": data, "created_at": "t"}
    )


def test_a_known_kind_decodes_with_its_data_typed() -> None:
    event = events.decode_event(
        _line("status_changed", {"from": "idle", "to": "running", "reason": "prompt"})
    )
    assert isinstance(event.data, events.StatusChanged)
    assert (event.data.from_, event.data.to, event.data.reason) == ("idle", "running", "prompt")
    assert (event.id, event.session_id, event.seq) == (7, "s1", 3)


def test_members_a_client_does_not_know_are_skipped() -> None:
    event = events.decode_event(_line("file_read", {"path": "a.py", "chars": 3, "new": [1]}))
    assert event.data == events.FileRead(path="a.py", chars=3)


def test_a_kind_from_a_newer_daemon_decodes_untyped() -> None:
    event = events.decode_event(_line("brand_new_kind", {"x": 1}))
    assert isinstance(event, Event)
    assert event.kind == "brand_new_kind"
    assert msgspec.json.decode(event.data) == {"x": 1}


def test_a_known_kind_whose_data_does_not_fit_is_an_error() -> None:
    with pytest.raises(msgspec.ValidationError):
        events.decode_event(_line("file_read", {"path": 3}))


def test_verbatim_kinds_keep_everything_the_agent_sent() -> None:
    data = {"sessionId": "a", "update": {"sessionUpdate": "plan", "entries": []}, "_meta": {"x": 1}}
    assert events.decode_event(_line("update", data)).data == data


def test_data_leaves_out_only_defaulted_members() -> None:
    # What the journal stores as an event's data is the struct's encoding.
    assert msgspec.json.encode(events.SetupFinished(exit_code=None)) == b'{"exit_code":null}'
    assert msgspec.json.encode(events.TurnEnded(stop_reason="end_turn")) == (
        b'{"stop_reason":"end_turn"}'
    )


@pytest.mark.parametrize("kind", sorted(events.DATA_TYPES))
def test_every_kind_has_its_own_event_struct(kind: str) -> None:
    assert events.EVENT_TYPES[kind].__struct_config__.tag == kind
    assert kind == events.DATA_TYPES[kind].KIND
