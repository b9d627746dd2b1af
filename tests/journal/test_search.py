"""Full-text search over the journal: the index (migration 0004), the query
language, the ``search`` method, and ``mimirctl search``.

Events are made as the journal makes them (``journal.append`` in a write
transaction) and indexed with ``search.index`` in the same transaction, as the
journal's writer does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimirctl import render
from mimirctl.render import highlight_marks
from mimird import journal
from mimird.config import DatabaseSection, Secret
from mimird.errors import InvalidParams
from mimird.ids import IdGenerator
from mimird.journal import search
from mimird.sessions import records as sessions
from mimird.store import Store, schema
from mimird.store.engine import connector, make_engine
from mimird.wire.errors import ErrorCode
from mimird.wire.types import SearchHit
from tests.mimirctl.test_mimirctl import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from tests.support.helpers import (
    DaemonDirs,
    DaemonProcess,
    InProcessDaemon,
    TrioClient,
    blocking_call,
    daemon_process,
    run_mimirctl,
    short_tmpdir,
)

pytestmark = pytest.mark.timeout(60)

CALL_TIMEOUT_S: Final = 20.0
KEY: Final = "search-key-'quoted'-7f3a"
IDS: Final = IdGenerator()

# ---- helpers -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_store(dirs: DaemonDirs, key: str | None = None) -> AsyncIterator[Store]:
    async with Store.open(
        dirs.database,
        key=None if key is None else Secret(key.encode()),
        options=DatabaseSection(),
        backup_dir=dirs.state / "backups",
    ) as store:
        yield store


@contextlib.contextmanager
def second_writer(path: Path) -> Iterator[sa.Engine]:
    """A writer on a running daemon's database (WAL: writers take turns)."""
    connect = connector(path, None, busy_timeout_ms=10_000, synchronous="normal")
    engine = make_engine(connect, None, pool_size=1, writer=True)
    try:
        yield engine
    finally:
        engine.dispose()


def add_project(conn: sa.Connection, name: str) -> str:
    project_id = IDS.new()
    conn.execute(
        sa.insert(schema.projects).values(
            id=project_id,
            name=name,
            path=f"/nowhere/{name}",
            type="unknown",
            is_git=False,
            created_at="2026-01-01T00:00:00.000000Z",
            updated_at="2026-01-01T00:00:00.000000Z",
        )
    )
    return project_id


def add_session(conn: sa.Connection, project_id: str, title: str = "") -> str:
    session_id = IDS.new()
    sessions.insert(
        conn, {"id": session_id, "project_id": project_id, "title": title, "status": "created"}
    )
    return session_id


def journal_texts(
    conn: sa.Connection, session_id: str, texts: Sequence[str], kind: str = "agent_message"
) -> list[int]:
    """Append one event per text and index it, in the caller's transaction; the ids."""
    ids = []
    for text in texts:
        seq = journal.append(conn, session_id, journal.Verbatim(kind, {"text": text}))
        ids.append(
            conn.execute(
                sa.select(schema.events.c.id).where(
                    schema.events.c.session_id == session_id, schema.events.c.seq == seq
                )
            ).scalar_one()
        )
    search.index(conn, zip(ids, texts, strict=True))
    return ids


def fts_rowids(conn: sa.Connection) -> list[int]:
    return list(conn.exec_driver_sql("SELECT rowid FROM events_fts ORDER BY rowid").scalars())


def text_of(hit: SearchHit) -> str:
    return "".join(part.text for part in hit.snippet)


class Journal:
    """A store with one project and session, and helpers to fill and search it."""

    def __init__(self, store: Store, project_id: str, session_id: str) -> None:
        self.store = store
        self.project_id = project_id
        self.session_id = session_id

    async def add(self, *texts: str, session_id: str | None = None) -> list[int]:
        return await self.store.write(journal_texts, session_id or self.session_id, texts)

    async def find(self, query: str, **filters: Any) -> list[SearchHit]:
        filters.setdefault("limit", 50)
        return await self.store.read(lambda conn: search.search(conn, query=query, **filters))

    async def ids(self, query: str, **filters: Any) -> list[int]:
        return [hit.event_id for hit in await self.find(query, **filters)]


@pytest.fixture
async def jr(dirs: DaemonDirs) -> AsyncIterator[Journal]:
    async with open_store(dirs) as store:

        def setup(conn: sa.Connection) -> tuple[str, str]:
            project_id = add_project(conn, "api")
            return project_id, add_session(conn, project_id, "fix the login")

        project_id, session_id = await store.write(setup)
        yield Journal(store, project_id, session_id)


# ---- the index and the events table --------------------------------------------------


async def test_event_ids_are_not_reused_after_the_newest_session_is_deleted(
    jr: Journal,
) -> None:
    newest = await jr.store.write(add_session, jr.project_id, "newest")
    old_ids = await jr.add("one", "two", session_id=newest)
    await jr.store.write(
        lambda conn: conn.execute(sa.delete(schema.sessions).where(schema.sessions.c.id == newest))
    )
    [new_id] = await jr.add("three")
    assert new_id > max(old_ids)


async def test_deleting_a_session_removes_its_rows_from_the_index(jr: Journal) -> None:
    other = await jr.store.write(add_session, jr.project_id, "other")
    kept = await jr.add("kept words")
    await jr.add("gone words", "more gone words", session_id=other)
    # ON DELETE CASCADE from sessions to events fires the trigger on events.
    await jr.store.write(
        lambda conn: conn.execute(sa.delete(schema.sessions).where(schema.sessions.c.id == other))
    )
    assert await jr.store.read(fts_rowids) == kept
    assert await jr.ids("gone") == []


async def test_removing_a_project_removes_its_sessions_rows_from_the_index(jr: Journal) -> None:
    await jr.add("words of a project about to go")
    await jr.store.write(
        lambda conn: conn.execute(
            sa.delete(schema.projects).where(schema.projects.c.id == jr.project_id)
        )
    )
    assert await jr.store.read(fts_rowids) == []


async def test_the_delete_trigger_is_in_the_schema(jr: Journal) -> None:
    found = await jr.store.read(
        lambda conn: conn.exec_driver_sql(
            "SELECT tbl_name FROM sqlite_master WHERE type = 'trigger' AND name = ?",
            (schema.SEARCH_DELETE_TRIGGER,),
        ).all()
    )
    assert found == [("events",)]


async def test_empty_and_blank_texts_are_not_indexed(jr: Journal) -> None:
    ids = await jr.add("", "  \n\t", "real text")
    assert await jr.store.read(fts_rowids) == [ids[2]]


async def test_search_works_on_an_encrypted_database(dirs: DaemonDirs) -> None:
    secret_word = "quillwort"
    async with open_store(dirs, key=KEY) as store:

        def fill(conn: sa.Connection) -> None:
            session_id = add_session(conn, add_project(conn, "vault"))
            journal_texts(conn, session_id, [f"the {secret_word} grows by the pond"])

        await store.write(fill)
        hits = await store.read(lambda conn: search.search(conn, query=secret_word, limit=5))
    assert [text_of(hit) for hit in hits] == [f"the {secret_word} grows by the pond"]
    assert secret_word.encode() not in dirs.database.read_bytes()


# ---- the query language ---------------------------------------------------------------


async def test_words_must_all_match(jr: Journal) -> None:
    both, _, _ = await jr.add("the login form", "the login page", "a form")
    assert await jr.ids("login form") == [both]


async def test_better_matches_come_first(jr: Journal) -> None:
    weak, strong = await jr.add(
        "a long text that mentions the deadlock once among many other words here",
        "deadlock deadlock deadlock",
    )
    assert await jr.ids("deadlock") == [strong, weak]


async def test_equal_matches_come_newest_first(jr: Journal) -> None:
    ids = await jr.add("same words", "same words", "same words")
    assert await jr.ids("same") == sorted(ids, reverse=True)


async def test_a_quoted_phrase_matches_the_words_in_order(jr: Journal) -> None:
    in_order, _ = await jr.add("run the test suite", "suite of the test run")
    assert await jr.ids('"test suite"') == [in_order]
    assert len(await jr.ids("test suite")) == 2


async def test_a_trailing_star_searches_a_prefix(jr: Journal) -> None:
    ids = await jr.add("refactoring", "refactor", "reference")
    assert set(await jr.ids("refact*")) == set(ids[:2])
    assert await jr.ids("refact") == []
    assert set(await jr.ids('"the refact"*')) == set()


async def test_case_and_diacritics_do_not_matter(jr: Journal) -> None:
    [hit] = await jr.add("Résumé of the Café")
    assert await jr.ids("resume CAFE") == [hit]


async def test_an_identifier_is_found_whole_and_by_its_parts(jr: Journal) -> None:
    [hit] = await jr.add("call parse_config_file() from mimird.config")
    for query in ("parse_config_file", "config_file", "mimird.config", "parse"):
        assert await jr.ids(query) == [hit], query


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("NOT", "do not touch"),
        ("this OR that", "this or that"),
        ("AND", "salt and pepper"),
        ("NEAR(a b)", "near a b"),
        ("text:hello", "text hello"),
        ("^start", "start here"),
        ("-minus", "minus sign"),
        ('say "hi', "say hi"),
        ("(paren", "paren"),
    ],
)
async def test_fts5_syntax_is_literal_text(jr: Journal, query: str, text: str) -> None:
    [hit] = await jr.add(text)
    await jr.add("unrelated words only")
    assert await jr.ids(query) == [hit]


@pytest.mark.parametrize("query", ["", "   ", "\t\n", '""', "*", ":^-+()", "\x00"])
async def test_a_query_without_words_is_invalid_params_naming_query(
    jr: Journal, query: str
) -> None:
    with pytest.raises(InvalidParams) as raised:
        await jr.find(query)
    assert raised.value.field == "query"


async def test_nul_and_lone_surrogates_in_a_query_are_separators(jr: Journal) -> None:
    [hit] = await jr.add("left right")
    assert await jr.ids("left\x00right") == [hit]
    assert await jr.ids("left\ud800right") == [hit]


def test_the_expression_quotes_every_term() -> None:
    assert search.match_expression('a "b c"* d* NEAR( "x') == (
        '"a" AND "b c" * AND "d" * AND "NEAR(" AND "x"'
    )


# ---- filters, limit and snippets -------------------------------------------------------


async def test_search_filters_by_project_and_by_session(jr: Journal) -> None:
    def more(conn: sa.Connection) -> tuple[str, str, str]:
        project_id = add_project(conn, "web")
        return project_id, add_session(conn, project_id), add_session(conn, jr.project_id)

    web, web_session, sibling = await jr.store.write(more)
    [in_api] = await jr.add("shared word")
    [in_web] = await jr.add("shared word", session_id=web_session)
    [in_sibling] = await jr.add("shared word", session_id=sibling)
    assert set(await jr.ids("shared", project_id=jr.project_id)) == {in_api, in_sibling}
    assert await jr.ids("shared", project_id=web) == [in_web]
    assert await jr.ids("shared", session_id=sibling) == [in_sibling]
    assert await jr.ids("shared", project_id=web, session_id=sibling) == []


async def test_search_returns_at_most_limit_hits_the_best_ones(jr: Journal) -> None:
    ids = await jr.add(*(f"word {i}" for i in range(10)), "word word word")
    assert await jr.ids("word", limit=3) == [ids[-1], ids[-2], ids[-3]]


async def test_a_hit_says_where_it_is(jr: Journal) -> None:
    [event_id] = await jr.add("the needle in the haystack")
    [hit] = await jr.find("needle")
    assert hit.event_id == event_id
    assert (hit.session_id, hit.project_id, hit.project) == (jr.session_id, jr.project_id, "api")
    assert (hit.session_title, hit.session_status) == ("fix the login", "created")
    assert (hit.seq, hit.kind) == (1, "agent_message")
    assert hit.created_at.endswith("Z")
    assert hit.score > 0


async def test_the_snippet_marks_each_match(jr: Journal) -> None:
    await jr.add("first the [build] failed, then the build passed")
    [hit] = await jr.find("build")
    assert [(p.text, p.match) for p in hit.snippet] == [
        ("first the [", False),
        ("build", True),
        ("] failed, then the ", False),
        ("build", True),
        (" passed", False),
    ]


async def test_a_long_text_gives_a_short_snippet_around_the_match(jr: Journal) -> None:
    filler = " ".join(f"w{i}" for i in range(200))
    await jr.add(f"{filler} the culprit was here {filler}")
    [hit] = await jr.find("culprit")
    text = text_of(hit)
    assert "culprit" in text
    assert len(text.split()) <= search.SNIPPET_TOKENS + 2
    assert text.startswith(search.ELLIPSIS)
    assert text.endswith(search.ELLIPSIS)


async def test_marker_characters_in_a_text_do_not_fake_a_match(jr: Journal) -> None:
    await jr.add(f"a {search.MATCH_START}fake{search.MATCH_END} mark and a real one")
    [hit] = await jr.find("real")
    assert [p.text for p in hit.snippet if p.match] == ["real"]


# ---- any query at all ------------------------------------------------------------------

FTS5_SYNTAX: Final = st.sampled_from(
    ["AND", "OR", "NOT", "NEAR(", "NEAR", ")", "(", '"', "*", ":", "^", "+", "-", "\x00", "{", "}"]
)
WORDS: Final = st.sampled_from(["alpha", "beta", "gamma", "résumé", "text", "x"])
QUERIES: Final = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(FTS5_SYNTAX, WORDS, st.text(max_size=5)), max_size=25).map(" ".join),
    st.lists(st.one_of(FTS5_SYNTAX, WORDS), max_size=25).map("".join),
)


@pytest.fixture(scope="module")
def filled_database() -> Iterator[sa.Engine]:
    """A database with a few indexed events, for a sync connection per example."""

    async def fill(dirs: DaemonDirs) -> None:
        async with open_store(dirs) as store:

            def rows(conn: sa.Connection) -> None:
                session_id = add_session(conn, add_project(conn, "fuzz"))
                journal_texts(
                    conn,
                    session_id,
                    ["alpha beta", "gamma résumé", 'text: "quoted" AND NEAR(x)', "x * ^ y"],
                )

            await store.write(rows)

    with contextlib.ExitStack() as stack:
        dirs = DaemonDirs(stack.enter_context(short_tmpdir()))
        trio.run(fill, dirs)
        with second_writer(dirs.database) as engine:
            yield engine


#: Every code point, lone surrogates included (which JSON cannot carry, but a direct
#: caller of search.search can).
ANY_CODE_POINTS: Final = st.text(st.characters(exclude_categories=()), max_size=100)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.one_of(QUERIES, ANY_CODE_POINTS))
def test_any_query_finds_hits_or_says_it_has_no_words(
    filled_database: sa.Engine, query: str
) -> None:
    with filled_database.connect() as conn:
        if search.parse_query(query):
            hits = search.search(conn, query=query, limit=10)
            assert all(isinstance(hit, SearchHit) for hit in hits)
        else:
            with pytest.raises(InvalidParams) as raised:
                search.search(conn, query=query, limit=10)
            assert raised.value.field == "query"
        conn.rollback()


# ---- the search method -----------------------------------------------------------------


async def create_session(client: TrioClient, dirs: DaemonDirs, name: str) -> dict[str, Any]:
    path = dirs.root / "projects" / name
    await trio.Path(path).mkdir(parents=True)
    project = await client.call("project.add", {"path": str(path), "name": name})
    session: dict[str, Any] = await client.call(
        "session.create", {"project": project["id"], "title": f"work on {name}"}
    )
    return session


def journal_in_daemon(dirs: DaemonDirs, session_id: str, texts: Sequence[str]) -> list[int]:
    with second_writer(dirs.database) as engine, engine.begin() as conn:
        return journal_texts(conn, session_id, texts)


async def test_search_method_answers_hits_best_first(daemon: InProcessDaemon) -> None:
    with trio.fail_after(CALL_TIMEOUT_S):
        async with TrioClient.connect(daemon.socket) as client:
            session = await create_session(client, daemon.dirs, "api")
            weak, strong = journal_in_daemon(
                daemon.dirs, session["id"], ["one timeout in many words here", "timeout timeout"]
            )
            result = await client.call("search", {"query": "timeout"})
    assert [hit["event_id"] for hit in result["hits"]] == [strong, weak]
    hit = result["hits"][0]
    assert hit["session_id"] == session["id"]
    assert hit["project"] == "api"
    assert hit["session_title"] == "work on api"
    assert hit["snippet"] == [
        {"text": "timeout", "match": True},
        {"text": " ", "match": False},
        {"text": "timeout", "match": True},
    ]


async def test_search_method_filters_by_project_name_and_session_prefix(
    daemon: InProcessDaemon,
) -> None:
    with trio.fail_after(CALL_TIMEOUT_S):
        async with TrioClient.connect(daemon.socket) as client:
            api = await create_session(client, daemon.dirs, "api")
            web = await create_session(client, daemon.dirs, "web")
            [in_api] = journal_in_daemon(daemon.dirs, api["id"], ["flaky test"])
            [in_web] = journal_in_daemon(daemon.dirs, web["id"], ["flaky test"])
            by_project = await client.call("search", {"query": "flaky", "project": "web"})
            by_session = await client.call("search", {"query": "flaky", "session": api["id"][:12]})
            limited = await client.call("search", {"query": "flaky", "limit": 1})
    assert [h["event_id"] for h in by_project["hits"]] == [in_web]
    assert [h["event_id"] for h in by_session["hits"]] == [in_api]
    assert len(limited["hits"]) == 1


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"query": ""}, ErrorCode.INVALID_PARAMS, "query"),
        ({"query": "  \t "}, ErrorCode.INVALID_PARAMS, "query"),
        ({"query": '"" * :'}, ErrorCode.INVALID_PARAMS, "query"),
        ({"query": "x" * 5000}, ErrorCode.INVALID_PARAMS, "query"),
        ({}, ErrorCode.INVALID_PARAMS, "query"),
        ({"query": "x", "limit": 0}, ErrorCode.INVALID_PARAMS, "limit"),
        ({"query": "x", "limit": 201}, ErrorCode.INVALID_PARAMS, "limit"),
        ({"query": "x", "project": "nope"}, ErrorCode.NOT_FOUND, "project"),
        ({"query": "x", "session": "zzzzzzzz"}, ErrorCode.NOT_FOUND, "session"),
        ({"query": "x", "sort": "new"}, ErrorCode.INVALID_PARAMS, "sort"),
    ],
)
async def test_search_method_errors_name_the_field(
    daemon: InProcessDaemon, params: dict[str, Any], code: ErrorCode, field: str
) -> None:
    with trio.fail_after(CALL_TIMEOUT_S):
        async with TrioClient.connect(daemon.socket) as client:
            response = await client.call_raw("search", params)
    assert response["error"]["code"] == code, response
    assert response["error"]["data"]["field"] == field, response


async def test_search_method_with_no_match_answers_no_hits(daemon: InProcessDaemon) -> None:
    with trio.fail_after(CALL_TIMEOUT_S):
        async with TrioClient.connect(daemon.socket) as client:
            assert await client.call("search", {"query": "nothing"}) == {"hits": []}


@pytest.fixture(scope="module")
def search_daemon() -> Iterator[tuple[DaemonDirs, DaemonProcess, dict[str, Any]]]:
    """A real mimird process with one session whose journal has a few indexed texts."""
    with short_tmpdir() as root:
        dirs = DaemonDirs(root)
        dirs.config.write_text("")
        (dirs.root / "home").mkdir()
        (dirs.root / "proj").mkdir()
        with daemon_process(dirs) as process:
            project = blocking_call(
                dirs.socket, "project.add", {"path": str(dirs.root / "proj"), "name": "proj"}
            )["result"]
            session = blocking_call(
                dirs.socket, "session.create", {"project": project["id"], "title": "fuzzed"}
            )["result"]
            journal_in_daemon(
                dirs,
                session["id"],
                [
                    "alpha beta gamma",
                    'the build said: error "E42" AND NEAR(x) * ^ done',
                    "Résumé of the deadlock in pool.acquire()",
                ],
            )
            yield dirs, process, session
            process.terminate()


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=QUERIES)
def test_any_query_to_the_daemon_gets_hits_or_invalid_params(
    search_daemon: tuple[DaemonDirs, DaemonProcess, dict[str, Any]], query: str
) -> None:
    dirs, process, _ = search_daemon
    response = blocking_call(dirs.socket, "search", {"query": query})
    if "error" in response:
        assert response["error"]["code"] == ErrorCode.INVALID_PARAMS, response
        assert response["error"]["data"]["field"] == "query", response
    else:
        assert isinstance(response["result"]["hits"], list)
    assert process.proc.poll() is None


# ---- mimirctl search ----------------------------------------------------------------


def ctl(dirs: DaemonDirs, *args: str) -> tuple[int, str, str]:
    done = run_mimirctl(dirs, *args)
    return done.returncode, done.stdout, done.stderr


def test_mimirctl_search_prints_a_line_per_hit_with_the_match_marked(
    search_daemon: tuple[DaemonDirs, DaemonProcess, dict[str, Any]],
) -> None:
    dirs, _, session = search_daemon
    code, out, err = ctl(dirs, "search", "deadlock")
    assert code == EXIT_OK, err
    [hit] = blocking_call(dirs.socket, "search", {"query": "deadlock"})["result"]["hits"]
    [line] = out.splitlines()
    assert line.split(maxsplit=3) == [
        render.short_id(session["id"]),
        str(hit["seq"]),
        "agent_message",
        "Résumé of the [deadlock] in pool.acquire()",
    ]


def test_mimirctl_search_takes_several_words_and_filters(
    search_daemon: tuple[DaemonDirs, DaemonProcess, dict[str, Any]],
) -> None:
    dirs, _, session = search_daemon
    code, out, _ = ctl(
        dirs, "search", "alpha", "gamma", "--project", "proj", "--session", session["id"][:10]
    )
    assert code == EXIT_OK
    assert out.split(maxsplit=3)[3].strip() == "[alpha] beta [gamma]"


def test_mimirctl_search_json_is_the_wire_result(
    search_daemon: tuple[DaemonDirs, DaemonProcess, dict[str, Any]],
) -> None:
    dirs, _, _ = search_daemon
    code, out, _ = ctl(dirs, "search", '"error E42"', "--json", "--limit", "5")
    assert code == EXIT_OK
    result = json.loads(out)
    assert (
        result
        == blocking_call(dirs.socket, "search", {"query": '"error E42"', "limit": 5})["result"]
    )
    assert len(result["hits"]) == 1


def test_mimirctl_search_without_matches_says_so(
    search_daemon: tuple[DaemonDirs, DaemonProcess, dict[str, Any]],
) -> None:
    dirs, _, _ = search_daemon
    assert ctl(dirs, "search", "absent") == (EXIT_OK, "no matches\n", "")


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (["search", "* ^"], EXIT_USAGE),
        (["search", "x", "--limit", "0"], EXIT_USAGE),
        (["search", "x", "--project", "nope"], EXIT_NOT_FOUND),
        (["search", "x", "--session", "zzzzzzzz"], EXIT_NOT_FOUND),
        (["search", "x", "--session", "zz"], EXIT_USAGE),
    ],
)
def test_mimirctl_search_errors_exit_with_the_usual_codes(
    search_daemon: tuple[DaemonDirs, DaemonProcess, dict[str, Any]],
    args: list[str],
    exit_code: int,
) -> None:
    dirs, _, _ = search_daemon
    code, out, err = ctl(dirs, *args)
    assert code == exit_code, err
    assert out == ""
    assert err.startswith("mimirctl: ")


class FakeStream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_matches_are_bold_on_a_terminal_and_bracketed_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    parts = [{"text": "a ", "match": False}, {"text": "hit", "match": True}]
    assert render.snippet(parts, highlight_marks(FakeStream(tty=True))) == "a \x1b[1mhit\x1b[22m"
    assert render.snippet(parts, highlight_marks(FakeStream(tty=False))) == "a [hit]"
    monkeypatch.setenv("NO_COLOR", "1")
    assert render.snippet(parts, highlight_marks(FakeStream(tty=True))) == "a [hit]"


def test_a_snippet_never_carries_control_characters_to_the_terminal() -> None:
    parts = [{"text": "red \x1b[31mtext\nnext\tline\x9b", "match": False}]
    assert render.snippet(parts) == "red ^[[31mtext next line<U+009B>"
