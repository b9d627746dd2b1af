"""``run.compare`` and ``run.integrate``: decode → :mod:`mimird.runs.comparison` /
:mod:`mimird.runs.integration` → encode."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from mimird.api.methods import MethodTable
from mimird.rpc.registry import CallContext, Registry
from mimird.runs import Runs, records
from mimird.runs.comparison import compare_run
from mimird.runs.integration import integrate_run
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.run_merge import (
    RunCompareParams,
    RunComparison,
    RunIntegrated,
    RunIntegrateParams,
)

_method = MethodTable()
T = TypeVar("T")


def _given(value: T | msgspec.UnsetType) -> T | None:
    return None if value is msgspec.UNSET else value


class RunMergeService:
    def __init__(self, store: Store, runs: Runs) -> None:
        self._store = store
        self._runs = runs

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "run.compare",
        params=RunCompareParams,
        result=RunComparison,
        summary="A run's members side by side (agent, status, files and lines changed, "
        "check), and the diff of two members or of each against the base, file by file.",
        description=(
            "A member's work is what its worktree holds now, committed or not (else its "
            "branch). With files, each file's unified diff too, at most max_bytes in all; "
            "a diff cut there says so (truncated, patch_truncated)."
        ),
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def compare(self, ctx: CallContext, params: RunCompareParams) -> RunComparison:
        run = await self._store.read(records.find, params.run)
        between = _given(params.between)
        return await compare_run(
            self._runs,
            run.id,
            between=None if between is None else (between[0], between[1]),
            files=params.files,
            max_bytes=params.max_bytes,
        )

    @_method(
        "run.integrate",
        params=RunIntegrateParams,
        result=RunIntegrated,
        summary="Bring the run's winner (or a slot's member) into a branch of the project's "
        "repository (fast-forward, merge or squash) and complete the run.",
        description=(
            "The user's checkout is not touched unless it has the target branch checked "
            "out: then it is moved with it if clean, else the call is refused (checkout_dirty). "
            "A conflict is refused with the files listed (merge_conflict). A refusal changes "
            "nothing, and is journaled in the run's journal."
        ),
        mutating=True,
        concurrent=True,
        errors=(
            ErrorCode.NOT_FOUND,
            ErrorCode.INVALID_STATE,
            ErrorCode.MERGE_CONFLICT,
            ErrorCode.CHECKOUT_DIRTY,
            ErrorCode.BUSY,
        ),
    )
    async def integrate(self, ctx: CallContext, params: RunIntegrateParams) -> RunIntegrated:
        run = await self._store.read(records.find, params.run)
        done = await integrate_run(
            self._runs,
            run.id,
            slot=_given(params.slot),
            into=_given(params.into),
            squash=params.squash,
            message=_given(params.message),
        )
        result = done.result
        wire = await self._store.read(lambda conn: records.to_wire(conn, done.run))
        return RunIntegrated(
            run=wire,
            slot=done.slot,
            branch=done.branch,
            into=done.into,
            kind=result.kind,
            commit=result.commit,
            previous=result.previous,
            files_changed=len(result.files),
            insertions=sum(f.insertions for f in result.files),
            deletions=sum(f.deletions for f in result.files),
            worktree=None if result.worktree is None else str(result.worktree),
            put_away=done.put_away,
        )
