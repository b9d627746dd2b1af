"""Full-text search over the journal, with SQLite FTS5.

The index is the FTS5 table ``events_fts`` (migration 0004): one row per event
that has text worth finding, its rowid the event's id, its one column ``text``
the words the journal's writer chose for it (a prompt, an agent's message, a
command's output; never the event's raw JSON). Rows are added by :func:`index`
in the same transaction as their events, and leave with them (a trigger on
``events``, also fired by ON DELETE CASCADE from ``sessions``).

Users never write FTS5 syntax: :func:`match_expression` turns what they type
into an expression that cannot fail to parse. Words are ANDed, ``"quoted
phrases"`` match as phrases, a trailing ``*`` makes a prefix query; everything
else (``AND``/``OR``/``NOT``/``NEAR``, ``:``, ``^``, ``-``, ``+``, parentheses,
an unbalanced quote, NUL) is literal text. Punctuation separates words, as it
does in the indexed text, so ``foo_bar`` and ``foo.bar`` find the phrase
"foo bar".

Like every database function here, these are plain sync functions taking a
connection; the store runs them in worker threads.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from mimird.errors import InvalidParams
from mimird.store.database import LARGE_VALUE, insert_releasing
from mimird.wire.types import SearchHit, SnippetPart

#: Marks FTS5 puts around each matched token in a snippet. Control characters that
#: no indexed text contains (:func:`index` replaces them), so that splitting the
#: snippet at them is exact; clients get the parts, never these characters.
MATCH_START: Final = "\x02"
MATCH_END: Final = "\x03"
#: Where a snippet cuts the text short.
ELLIPSIS: Final = "…"
#: Tokens in a snippet (FTS5 allows at most 64).
SNIPPET_TOKENS: Final = 24

_MARKERS: Final = re.compile(f"([{MATCH_START}{MATCH_END}])")
_NOT_INDEXABLE: Final = str.maketrans({MATCH_START: " ", MATCH_END: " "})
# NUL ends an FTS5 string early ("unterminated string"), and no control character
# is part of a token: all of them become separators. So do lone surrogates, which
# cannot be encoded for SQLite (JSON decoding refuses them, direct callers may not).
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_SPACE: Final = re.compile(r"\s+")

_INSERT: Final = sa.text("INSERT INTO events_fts (rowid, text) VALUES (:id, :text)")


def index(conn: sa.Connection, entries: Iterable[tuple[int, str]]) -> None:
    """Add ``(event_id, text)`` rows to the search index; texts with nothing but
    whitespace are skipped. Call in the transaction that inserts the events."""
    rows = []
    large = []
    for event_id, text in entries:
        if not text or text.isspace():
            continue
        if len(text) < LARGE_VALUE:
            rows.append({"id": event_id, "text": text.translate(_NOT_INDEXABLE)})
        else:
            large.append((event_id, text.translate(_NOT_INDEXABLE)))
    if rows:
        conn.execute(_INSERT, rows)
    if large:
        _index_large(conn, large)


#: A rowid no event has (their ids start at 1): the empty row :func:`_index_large`
#: adds and removes in the same transaction.
_SCRATCH_ROWID: Final = -1


def _index_large(conn: sa.Connection, entries: list[tuple[int, str]]) -> None:
    """Index long texts (an agent's whole message) so that no prepared statement
    keeps a copy of them afterwards: ours are released by ``insert_releasing``, and
    FTS5's own statement that stores the text in ``events_fts_content`` is made to
    bind an empty text instead, by adding and removing an empty row."""
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        for event_id, text in entries:
            insert_releasing(cursor, "events_fts", ("rowid", "text"), (event_id, text))
        cursor.execute("INSERT INTO events_fts (rowid, text) VALUES (?, '')", (_SCRATCH_ROWID,))
        cursor.execute("DELETE FROM events_fts WHERE rowid = ?", (_SCRATCH_ROWID,))
    finally:
        cursor.close()


# ---- the query language ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """One part of a user's query: a word or a quoted phrase, maybe a prefix."""

    text: str
    prefix: bool = False

    def fts5(self) -> str:
        """As an FTS5 string (a phrase of the tokens the index's tokenizer finds in it)."""
        return '"' + self.text.replace('"', '""') + '"' + (" *" if self.prefix else "")


def _is_token_char(char: str) -> bool:
    # unicode61's default token characters: letters, numbers, private use (L* N* Co).
    category = unicodedata.category(char)
    return category[0] in "LN" or category == "Co"


def _searchable(text: str) -> bool:
    return any(_is_token_char(c) for c in text)


def parse_query(query: str) -> list[Term]:
    """The searchable terms of a user's query, in order (see the module's docstring)."""
    text = _CONTROL.sub(" ", query)
    terms: list[Term] = []
    i, end = 0, len(text)
    while i < end:
        if text[i].isspace():
            i += 1
            continue
        if text[i] == '"':
            close = text.find('"', i + 1)
            if close < 0:
                # An unbalanced quote is a literal character (a separator): read on.
                i += 1
                continue
            phrase, i = text[i + 1 : close], close + 1
            stars = _count_stars(text, i)
            terms.append(Term(phrase, prefix=stars > 0))
            i += stars
            continue
        match = _SPACE.search(text, i)
        word_end = match.start() if match else end
        word, i = text[i:word_end], word_end
        stripped = word.rstrip("*")
        terms.append(Term(stripped, prefix=len(stripped) < len(word)))
    return [term for term in terms if _searchable(term.text)]


def _count_stars(text: str, start: int) -> int:
    count = 0
    while start + count < len(text) and text[start + count] == "*":
        count += 1
    return count


def match_expression(query: str) -> str:
    """The FTS5 MATCH expression for a user's query; :class:`InvalidParams` (naming
    ``query``) when it has nothing to search for."""
    terms = parse_query(query)
    if not terms:
        raise InvalidParams(
            f"search query {_shown(query)} has no word to search for: give at least one word "
            "or number",
            field="query",
        )
    return " AND ".join(term.fts5() for term in terms)


def _shown(query: str, width: int = 60) -> str:
    return repr(query if len(query) <= width else query[: width - 1] + ELLIPSIS)


# ---- searching ---------------------------------------------------------------------

# Two steps: the best `limit` event ids (FTS5 ranks every match, but only ids and
# ranks go through the sort), then snippets for those alone. A snippet in the
# first step would be computed for every match of a common word before sorting.
_BEST: Final = """
SELECT events_fts.rowid AS id, events_fts.rank AS rank
FROM events_fts {joins}
WHERE events_fts MATCH :match {filters}
ORDER BY events_fts.rank, events_fts.rowid DESC
LIMIT :limit
"""
_FILTER_JOINS: Final = (
    "JOIN events ON events.id = events_fts.rowid JOIN sessions ON sessions.id = events.session_id"
)
_HITS: Final = f"""
WITH best AS ({{best}})
SELECT events.id, events.session_id, sessions.project_id, projects.name, sessions.title,
       sessions.status, events.seq, events.kind, events.created_at, best.rank,
       snippet(events_fts, 0, '{MATCH_START}', '{MATCH_END}', '{ELLIPSIS}', {SNIPPET_TOKENS})
FROM best
JOIN events_fts ON events_fts.rowid = best.id
JOIN events ON events.id = best.id
JOIN sessions ON sessions.id = events.session_id
JOIN projects ON projects.id = sessions.project_id
WHERE events_fts MATCH :match
ORDER BY best.rank, best.id DESC
"""


def search(
    conn: sa.Connection,
    *,
    query: str,
    project_id: str | None = None,
    session_id: str | None = None,
    limit: int,
) -> list[SearchHit]:
    """The events whose text matches ``query``, best first (FTS5's bm25; equal
    scores: newer first), at most ``limit``, optionally only of one project and/or
    one session (ids, already resolved)."""
    filters = []
    bind: dict[str, object] = {"match": match_expression(query), "limit": limit}
    if project_id is not None:
        filters.append("AND sessions.project_id = :project_id")
        bind["project_id"] = project_id
    if session_id is not None:
        filters.append("AND events.session_id = :session_id")
        bind["session_id"] = session_id
    best = _BEST.format(joins=_FILTER_JOINS if filters else "", filters=" ".join(filters))
    rows = conn.execute(sa.text(_HITS.format(best=best)), bind)
    return [
        SearchHit(
            event_id=event_id,
            session_id=hit_session_id,
            project_id=hit_project_id,
            project=project_name,
            session_title=title,
            session_status=status,
            seq=seq,
            kind=kind,
            created_at=created_at,
            # bm25() is smaller for better matches; scores read the other way round.
            score=-float(rank),
            snippet=snippet_parts(snippet),
        )
        for (
            event_id,
            hit_session_id,
            hit_project_id,
            project_name,
            title,
            status,
            seq,
            kind,
            created_at,
            rank,
            snippet,
        ) in rows
    ]


def snippet_parts(marked: str) -> list[SnippetPart]:
    """A snippet with FTS5's marks as alternating plain and matched parts."""
    parts: list[SnippetPart] = []
    matched = False
    for piece in _MARKERS.split(marked):
        if piece == MATCH_START:
            matched = True
        elif piece == MATCH_END:
            matched = False
        elif piece:
            if parts and parts[-1].match == matched:
                parts[-1] = SnippetPart(text=parts[-1].text + piece, match=matched)
            else:
                parts.append(SnippetPart(text=piece, match=matched))
    return parts


def optimize_index(driver: Any) -> None:
    """Merge the full-text index's b-trees into one (FTS5's ``optimize``): searches
    read fewer segments afterwards. ``driver`` is a DBAPI connection outside any
    transaction (``Store.maintain``); the statement is its own transaction."""
    driver.execute("INSERT INTO events_fts (events_fts) VALUES ('optimize')")
