"""``search``: full-text search over every session's journal (mimird/search.py)."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from mimird.api.methods import MethodTable
from mimird.journal import search
from mimird.projects import resolve_id
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions import records as sessions
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.types import SearchHit, SearchParams, SearchResult


def _search(conn: sa.Connection, params: SearchParams) -> list[SearchHit]:
    # The query is checked before the names are looked up: a search for nothing
    # is the caller's first mistake, whatever else is wrong.
    search.match_expression(params.query)
    project_id = resolve_id(conn, params.project) if params.project is not msgspec.UNSET else None
    session_id = (
        sessions.find(conn, params.session).id if params.session is not msgspec.UNSET else None
    )
    return search.search(
        conn,
        query=params.query,
        project_id=project_id,
        session_id=session_id,
        limit=params.limit,
    )


_method = MethodTable()


class SearchService:
    def __init__(self, store: Store) -> None:
        self._store = store

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "search",
        params=SearchParams,
        result=SearchResult,
        summary=(
            "Full-text search over the journal of every session: best matches first, "
            "each with a highlighted excerpt."
        ),
        description=(
            'Words must all match; "quoted phrases" match as phrases; word* matches a '
            "prefix. Any other character or operator is literal text. Filter by project "
            "and/or session."
        ),
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def search(self, ctx: CallContext, params: SearchParams) -> SearchResult:
        return SearchResult(hits=await self._store.read(_search, params))
