"""session.list: filters, order and pages.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    TrioClient,
    add_project,
    make_repo,
)
from tests.support.sessions import (
    all_sessions,
    call,
    create,
    error_of,
    get,
    without_git,
)

pytestmark = pytest.mark.timeout(60)


# ---- session.list ----------------------------------------------------------------------------


async def test_list_filters_by_project(client: TrioClient, tmp_path: Path) -> None:
    first = await add_project(client, make_repo(tmp_path / "first"))
    second = await add_project(client, make_repo(tmp_path / "second"))
    mine = await create(client, first, title="mine")
    await create(client, second, title="theirs")
    listed = await all_sessions(client, project=first["name"])
    assert [s["id"] for s in listed] == [mine["id"]]


async def test_list_of_an_unknown_project_is_not_found(client: TrioClient) -> None:
    error = await error_of(client, "session.list", {"project": "no-such-project"})
    assert error["code"] == ErrorCode.NOT_FOUND


async def test_list_filters_by_status(client: TrioClient, project: dict[str, Any]) -> None:
    kept = await create(client, project, workspace="in_place")
    archived = await create(client, project, workspace="in_place")
    await call(client, "session.archive", {"session": archived["id"]})
    assert [s["id"] for s in await all_sessions(client, status=["archived"])] == [archived["id"]]
    assert [s["id"] for s in await all_sessions(client, status=["created"])] == [kept["id"]]


async def test_list_filters_by_agent(client: TrioClient, project: dict[str, Any]) -> None:
    claude = await create(client, project, workspace="in_place", agent="claude")
    await create(client, project, workspace="in_place", agent="gemini")
    assert [s["id"] for s in await all_sessions(client, agent="claude")] == [claude["id"]]


async def test_list_filters_by_text_in_the_title_or_the_task(
    client: TrioClient, project: dict[str, Any]
) -> None:
    by_title = await create(client, project, workspace="in_place", title="Fix the Parser")
    by_task = await create(client, project, workspace="in_place", task="the parser chokes on %")
    await create(client, project, workspace="in_place", title="unrelated")
    found = await all_sessions(client, text="parser")
    assert {s["id"] for s in found} == {by_title["id"], by_task["id"]}
    # LIKE wildcards in the text are taken literally.
    assert [s["id"] for s in await all_sessions(client, text="%")] == [by_task["id"]]


async def test_list_filters_by_creation_time(client: TrioClient, project: dict[str, Any]) -> None:
    older = await create(client, project, workspace="in_place")
    newer = await create(client, project, workspace="in_place")
    assert older["created_at"] < newer["created_at"]
    assert [s["id"] for s in await all_sessions(client, created_before=newer["created_at"])] == [
        older["id"]
    ]
    assert [s["id"] for s in await all_sessions(client, created_after="2000-01-01")] == [
        newer["id"],
        older["id"],
    ]
    assert await all_sessions(client, created_after="2999-01-01T00:00:00Z") == []


async def test_list_created_after_a_sessions_own_time_leaves_that_session_out(
    client: TrioClient, project: dict[str, Any]
) -> None:
    older = await create(client, project, workspace="in_place")
    newer = await create(client, project, workspace="in_place")
    found = await all_sessions(client, created_after=older["created_at"])
    assert [s["id"] for s in found] == [newer["id"]]


async def test_list_filters_by_update_time(client: TrioClient, project: dict[str, Any]) -> None:
    touched = await create(client, project, workspace="in_place")
    untouched = await create(client, project, workspace="in_place")
    updated = await call(client, "session.update", {"session": touched["id"], "title": "again"})
    assert updated["updated_at"] > untouched["updated_at"]
    found = await all_sessions(client, updated_before=updated["updated_at"])
    assert [s["id"] for s in found] == [untouched["id"]]
    found = await all_sessions(client, updated_after="2000-01-01T00:00")
    assert {s["id"] for s in found} == {touched["id"], untouched["id"]}


async def test_list_hides_archived_and_deleted_sessions_unless_asked(
    client: TrioClient, project: dict[str, Any]
) -> None:
    live = await create(client, project, workspace="in_place")
    archived = await create(client, project, workspace="in_place")
    deleted = await create(client, project, workspace="in_place")
    await call(client, "session.archive", {"session": archived["id"]})
    await call(client, "session.delete", {"session": deleted["id"]})
    assert [s["id"] for s in await all_sessions(client)] == [live["id"]]
    assert [s["id"] for s in await all_sessions(client, include_archived=True)] == [
        archived["id"],
        live["id"],
    ]
    assert [s["id"] for s in await all_sessions(client, include_deleted=True)] == [
        deleted["id"],
        live["id"],
    ]
    everything = await all_sessions(client, include_archived=True, include_deleted=True)
    assert [s["id"] for s in everything] == [deleted["id"], archived["id"], live["id"]]


async def test_list_is_newest_first_and_the_same_every_time(
    client: TrioClient, project: dict[str, Any]
) -> None:
    made = [await create(client, project, workspace="in_place") for _ in range(5)]
    # An update does not reorder: the order is by creation.
    await call(client, "session.update", {"session": made[0]["id"], "title": "touched"})
    first = await all_sessions(client)
    assert [s["id"] for s in first] == [s["id"] for s in reversed(made)]
    assert [s["id"] for s in await all_sessions(client)] == [s["id"] for s in first]


async def test_list_pages_cover_every_session_exactly_once(
    client: TrioClient, project: dict[str, Any]
) -> None:
    made = {(await create(client, project, workspace="in_place"))["id"] for _ in range(7)}
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await call(client, "session.list", params)
        pages.append([s["id"] for s in page["sessions"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [sid for p in pages for sid in p]
    assert sorted(seen) == sorted(made)
    assert seen == sorted(seen, reverse=True)


async def test_list_entries_equal_what_get_returns_without_git_status(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    [listed] = await all_sessions(client)
    got = await get(client, session)
    assert listed.get("git") is None
    assert got["git"] is not None
    assert without_git(got) == without_git(listed)


async def test_list_text_also_matches_ids_and_branch_names(
    client: TrioClient, project: dict[str, Any]
) -> None:
    by_branch = await create(client, project, title="one")
    other = await create(client, project, title="two")
    assert by_branch["workspace"]["branch"] != other["workspace"]["branch"]
    # A prefix of the id as mimirctl shows it, in either case.
    prefix = other["id"][-8:].upper()
    assert [s["id"] for s in await all_sessions(client, text=prefix)] == [other["id"]]
    branch_tail = by_branch["workspace"]["branch"].rsplit("-", 1)[-1]
    found = await all_sessions(client, text=branch_tail)
    assert by_branch["id"] in {s["id"] for s in found}
    assert other["id"] not in {s["id"] for s in found}


async def test_list_total_counts_every_page_and_offset_skips(
    client: TrioClient, project: dict[str, Any]
) -> None:
    made = [await create(client, project, workspace="in_place") for _ in range(5)]
    archived = await create(client, project, workspace="in_place")
    await call(client, "session.archive", {"session": archived["id"]})
    newest_first = [s["id"] for s in reversed(made)]
    page = await call(client, "session.list", {"limit": 2, "total": True})
    # The filters' matches on every page (the archived one is hidden), not the page's.
    assert page["total"] == 5
    assert [s["id"] for s in page["sessions"]] == newest_first[:2]
    # Without asking, no count is made and none is answered.
    assert "total" not in await call(client, "session.list", {"limit": 2})
    skipped = await call(client, "session.list", {"limit": 2, "offset": 3, "total": True})
    assert [s["id"] for s in skipped["sessions"]] == newest_first[3:5]
    assert skipped["next_cursor"] is None
    assert skipped["total"] == 5
    # Offset after a cursor: skipped within what follows the cursor.
    after = await call(
        client, "session.list", {"cursor": newest_first[0], "offset": 1, "limit": 10}
    )
    assert [s["id"] for s in after["sessions"]] == newest_first[2:]
    counted = await call(client, "session.list", {"total": True, "include_archived": True})
    assert counted["total"] == 6
    error = await error_of(client, "session.list", {"offset": -1})
    assert error["code"] == ErrorCode.INVALID_PARAMS


async def test_a_projects_last_used_at_is_its_newest_session_change(
    client: TrioClient, tmp_path: Path
) -> None:
    fresh = await add_project(client, make_repo(tmp_path / "fresh"))
    assert fresh["last_used_at"] is None
    used = await add_project(client, make_repo(tmp_path / "used"))
    session = await create(client, used, workspace="in_place")
    touched = await call(client, "session.update", {"session": session["id"], "title": "t"})
    got = await call(client, "project.get", {"project": used["id"]})
    assert got["last_used_at"] == touched["updated_at"]
    listed = {p["id"]: p for p in (await call(client, "project.list", {}))["projects"]}
    assert listed[used["id"]]["last_used_at"] == touched["updated_at"]
    assert listed[fresh["id"]]["last_used_at"] is None
