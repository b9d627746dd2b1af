"""Session ids and unique prefixes.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    TrioClient,
)
from tests.support.sessions import (
    all_sessions,
    call,
    create,
    error_of,
    stored,
)

pytestmark = pytest.mark.timeout(60)


# ---- ids and prefixes ------------------------------------------------------------------------


async def test_a_unique_six_character_prefix_finds_the_session(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    got = await call(client, "session.get", {"session": session["id"][:6]})
    assert got["id"] == session["id"]
    upper = await call(client, "session.get", {"session": session["id"][:6].upper()})
    assert upper["id"] == session["id"]


async def test_an_ambiguous_prefix_is_invalid_params_naming_the_matches(
    client: TrioClient, project: dict[str, Any]
) -> None:
    first = await create(client, project, workspace="in_place")
    second = await create(client, project, workspace="in_place")
    common = ""
    for a, b in zip(first["id"], second["id"], strict=True):
        if a != b:
            break
        common += a
    assert len(common) >= 4  # ids made a moment apart share their time prefix
    before = await stored(client, first)
    for method in ("session.get", "session.archive", "session.delete"):
        error = await error_of(client, method, {"session": common})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == "session"
        assert first["id"] in error["message"]
        assert second["id"] in error["message"]
    assert await stored(client, first) == before


async def test_an_unknown_id_is_not_found(client: TrioClient, project: dict[str, Any]) -> None:
    await create(client, project, workspace="in_place")
    for ref in ("zzzzzzzzzzzzzzzzzzzzzzzzzz", "zzzz"):
        error = await error_of(client, "session.get", {"session": ref})
        assert error["code"] == ErrorCode.NOT_FOUND
        assert error["data"]["id"] == ref


async def test_a_prefix_shorter_than_four_characters_is_invalid_params(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project, workspace="in_place")
    error = await error_of(client, "session.get", {"session": session["id"][:3]})
    assert error["code"] == ErrorCode.INVALID_PARAMS


async def test_create_in_an_unknown_project_is_not_found_and_makes_nothing(
    client: TrioClient,
) -> None:
    error = await error_of(client, "session.create", {"project": "nope"})
    assert error["code"] == ErrorCode.NOT_FOUND
    assert await all_sessions(client, include_deleted=True) == []


async def test_create_in_an_archived_project_is_invalid_state(
    client: TrioClient, project: dict[str, Any]
) -> None:
    await call(client, "project.update", {"project": project["id"], "archived": True})
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert await all_sessions(client, include_deleted=True) == []


async def test_an_unknown_param_is_invalid_params(
    client: TrioClient, project: dict[str, Any]
) -> None:
    error = await error_of(
        client, "session.create", {"project": project["id"], "worktree": "in_place"}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert await all_sessions(client, include_deleted=True) == []
