"""``export.page`` and ``import.begin`` / ``import.records`` / ``import.end``:
projects, runs, sessions and their journals out of one mimird and into another,
as the records of a JSON Lines file (:mod:`mimird.wire.transfer`).

Both stream: an export is read page by page (the cursor holds where the next
page starts, the daemon nothing), and an import takes the file's records in
batches, in order. A session (or a run) is written with its whole journal in one
transaction once its last record arrived; until then its journal waits in an
unlinked temporary file in the state directory, so that memory stays bounded
however long the journal. An import belongs to its connection: if the
connection ends first, the session in progress is dropped, and what was written
before it stays (each written whole).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import msgspec
import structlog
import trio

from mimird import __version__, policy
from mimird.api.methods import MethodTable
from mimird.config import Settings
from mimird.errors import InvalidParams, InvalidState
from mimird.journal import export, importing
from mimird.projects import get_project
from mimird.rpc.registry import CallContext, Connection, Registry
from mimird.runs import states as run_states
from mimird.sessions import records as session_records
from mimird.sessions import states
from mimird.store import Store
from mimird.timeutil import utc_now
from mimird.wire.errors import ErrorCode
from mimird.wire.transfer import (
    FORMAT,
    VERSION,
    EventRecord,
    ExportPage,
    ExportPageParams,
    Header,
    ImportBeginParams,
    ImportBegun,
    ImportConflict,
    ImportForeignWorkspace,
    ImportMissingPath,
    ImportProgress,
    ImportRecordsParams,
    ImportReport,
    ImportSetting,
    ProjectRecord,
    Record,
    RunEventRecord,
    RunRecord,
    SessionRecord,
    UsageRecord,
)
from mimird.wire.types import EmptyParams

log = structlog.get_logger("mimird.transfer")

_STATE_KEY: Final = "import"
#: Conflicts and missing paths an import report lists (all are counted).
MAX_LISTED: Final = 100
#: The most characters of a setting's value an import report shows.
MAX_SETTING_CHARS: Final = 200
#: A unit's journal is written to its spool file once this much of it is waiting.
SPOOL_FLUSH_BYTES: Final = 1 << 20

_method = MethodTable()


@dataclass(slots=True)
class _Unit:
    """The session or run being imported, with its journal's records so far."""

    record: SessionRecord | RunRecord
    line: int
    conflict: str | None
    last_seq: int = 0
    records: int = 0
    waiting: list[bytes] = field(default_factory=list)
    waiting_bytes: int = 0


class _Import:
    """One import on one connection."""

    def __init__(self, store: Store, spool: IO[bytes]) -> None:
        self._store = store
        self._spool = spool
        self._unit: _Unit | None = None
        self.taken = 0
        #: Set once the import is over (ended, failed or dropped).
        self.over = trio.Event()
        self.report = ImportReport(
            projects=0,
            runs=0,
            sessions=0,
            events=0,
            run_events=0,
            usage=0,
            conflicts=[],
            conflicts_total=0,
            skipped=0,
            missing_paths=[],
            statuses_changed=0,
            foreign_workspaces=[],
            acting_settings=[],
            acting_settings_total=0,
        )

    def close(self) -> None:
        self._unit = None
        self._spool.close()
        self.over.set()

    def _conflict(self, line: int, kind: str, id_: str, reason: str) -> None:
        self.report.conflicts_total += 1
        if len(self.report.conflicts) < MAX_LISTED:
            self.report.conflicts.append(
                ImportConflict(line=line, type=kind, id=id_, reason=reason)
            )

    def _acting(self, record: ProjectRecord | SessionRecord | RunRecord) -> None:
        """List the imported record's settings that run commands or let agents act
        (its config was checked when its line was taken)."""
        kind = _tag(record)
        found = list(policy.acting_settings(policy.parse_layer(record.config, kind)))
        if isinstance(record, RunRecord) and record.check_command is not None:
            found.append(("check_command", record.check_command))
        for key, value in found:
            self.report.acting_settings_total += 1
            if len(self.report.acting_settings) < MAX_LISTED:
                if len(value) > MAX_SETTING_CHARS:
                    value = value[: MAX_SETTING_CHARS - 1] + "…"
                self.report.acting_settings.append(
                    ImportSetting(type=kind, id=record.id, key=key, value=value)
                )

    async def take(self, record: Record, line: int) -> None:
        self.taken += 1
        if isinstance(record, ProjectRecord):
            await self.close_unit()
            await self._project(record, line)
        elif isinstance(record, SessionRecord | RunRecord):
            await self.close_unit()
            if isinstance(record, SessionRecord):
                conflict = await self._store.read(importing.session_conflict, record)
            else:
                conflict = await self._store.read(importing.run_conflict, record)
            if conflict:
                self._conflict(line, _tag(record), record.id, conflict)
            self._unit = _Unit(record, line, conflict)
        else:
            await self._journal_record(record, line)

    async def _project(self, record: ProjectRecord, line: int) -> None:
        conflict = await self._store.write(importing.insert_project, record)
        if conflict:
            self._conflict(line, "project", record.id, conflict)
            return
        self.report.projects += 1
        self._acting(record)
        if not await trio.Path(record.path).is_dir():
            log.info("import_project_path_missing", project_id=record.id, path=record.path)
            if len(self.report.missing_paths) < MAX_LISTED:
                self.report.missing_paths.append(
                    ImportMissingPath(project_id=record.id, name=record.name, path=record.path)
                )

    async def _journal_record(
        self, record: EventRecord | UsageRecord | RunEventRecord, line: int
    ) -> None:
        unit = self._unit
        owner: type[SessionRecord | RunRecord]
        if isinstance(record, RunEventRecord):
            owner, owner_kind, owner_id = RunRecord, "run", record.run_id
        else:
            owner, owner_kind, owner_id = SessionRecord, "session", record.session_id
        kind = _tag(record)
        if unit is None or not isinstance(unit.record, owner) or unit.record.id != owner_id:
            raise InvalidParams(
                f"line {line}: this {kind} record of {owner_kind} {owner_id} does not follow "
                f"its {owner_kind}'s record (an export gives each {owner_kind} its journal "
                "right after it)",
                field="records",
                detail={"line": line},
            )
        if not isinstance(record, UsageRecord):
            if record.seq <= unit.last_seq:
                raise InvalidParams(
                    f"line {line}: seq {record.seq} does not follow seq {unit.last_seq}",
                    field="records",
                    detail={"line": line},
                )
            unit.last_seq = record.seq
        unit.records += 1
        if unit.conflict is not None:
            self.report.skipped += 1
            return
        encoded = importing.spool_line(record)
        unit.waiting.append(encoded)
        unit.waiting_bytes += len(encoded)
        if unit.waiting_bytes >= SPOOL_FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Write the unit's waiting records to its spool file."""
        unit = self._unit
        if unit is None or not unit.waiting:
            return
        waiting, unit.waiting, unit.waiting_bytes = unit.waiting, [], 0
        await trio.to_thread.run_sync(self._spool.writelines, waiting)

    async def close_unit(self) -> None:
        """Write the unit (its record and its journal) in one transaction."""
        unit = self._unit
        if unit is None:
            return
        try:
            if unit.conflict is None:
                await self.flush()
                await trio.to_thread.run_sync(self._spool.seek, 0)
                written = await self._write(unit)
                if written.conflict is not None:
                    self._conflict(unit.line, _tag(unit.record), unit.record.id, written.conflict)
                    self.report.skipped += unit.records
                else:
                    self.report.events += written.events
                    self.report.usage += written.usage
                    self.report.run_events += written.run_events
        finally:
            self._unit = None
            await trio.to_thread.run_sync(self._reset_spool)

    def _reset_spool(self) -> None:
        self._spool.seek(0)
        self._spool.truncate()

    async def _write(self, unit: _Unit) -> importing.Written:
        record = unit.record
        journal = importing.read_spool(self._spool)
        if isinstance(record, RunRecord):
            if record.status in run_states.WORKING:  # nothing works on it here
                record = msgspec.structs.replace(record, status="interrupted")
            written = await self._store.write(importing.insert_run, record, journal)
            if written.conflict is None:
                self.report.runs += 1
                self._acting(record)
            return written
        status = record.status
        if status in states.AGENT_UP:
            status = "stopped"  # no agent runs for it here
        elif status in states.SETTING_UP:
            status = "interrupted"
        workspace_state = record.workspace_state
        if status == "deleted" and record.workspace_kind != "in_place":
            # Nothing of a deleted session lives here: whatever is at its path is not
            # a delete cut short, for worktree.prune to finish.
            workspace_state = "removed"
        elif record.workspace_kind == "in_place":
            if workspace_state == "foreign":
                workspace_state = "ok"  # the project's own directory is never foreign
            if workspace_state == "ok" and not await _exists(record.workspace_path):
                workspace_state = "missing"
        elif workspace_state != "removed":
            if await _exists(record.workspace_path):
                # Not a workspace this mimird made: never worked in, moved or removed
                # unasked (session.repair checks it and adopts it).
                workspace_state = "foreign"
            elif workspace_state == "ok":
                workspace_state = "missing"
        written = await self._store.write(
            importing.insert_session,
            record,
            journal,
            status=status,
            workspace_state=workspace_state,
        )
        if written.conflict is None:
            self.report.sessions += 1
            self._acting(record)
            if status != record.status:
                self.report.statuses_changed += 1
            if workspace_state == "foreign" and len(self.report.foreign_workspaces) < MAX_LISTED:
                self.report.foreign_workspaces.append(
                    ImportForeignWorkspace(session_id=record.id, path=record.workspace_path)
                )
        return written


async def _exists(path: str) -> bool:
    return bool(path) and await trio.Path(path).exists()


class TransferService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._spool_dir = settings.state_dir

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    # ---- export -------------------------------------------------------------------------

    @_method(
        "export.page",
        params=ExportPageParams,
        result=ExportPage,
        summary=(
            "The next page of an export: projects, runs, sessions and their journals as "
            "records, in an order an import can stream."
        ),
        description=(
            "Call it without cursor for the first page (which carries the file's header), "
            "then with the cursor each page returns until it is null. Secrets are masked."
        ),
        errors=(ErrorCode.NOT_FOUND,),
        concurrent=True,
    )
    async def page(self, ctx: CallContext, params: ExportPageParams) -> ExportPage:
        filters = await self._filters(params)
        at = (
            export.START if params.cursor is msgspec.UNSET else export.Position.parse(params.cursor)
        )
        records, following = await self._store.read(
            export.page, filters, at, limit=params.limit, mask=policy.mask_config
        )
        header = None
        if params.cursor is msgspec.UNSET:
            header = Header(
                format=FORMAT,
                version=VERSION,
                schema=self._store.revision,
                exported_at=utc_now(),
                mimir=__version__,
                filters={
                    name: value
                    for name in ("project", "session", "since")
                    if (value := getattr(params, name)) is not msgspec.UNSET
                },
            )
        return ExportPage(
            header=header,
            records=records,
            cursor=None if following is None else following.text(),
        )

    async def _filters(self, params: ExportPageParams) -> export.Filters:
        since = None if params.since is msgspec.UNSET else params.since
        project_id = None
        if params.project is not msgspec.UNSET:
            project_id = (await self._store.read(get_project, params.project)).id
        if params.session is msgspec.UNSET:
            return export.Filters(project_id=project_id, since=since)
        row = await self._store.read(session_records.find, params.session)
        if project_id is not None and row.project_id != project_id:
            raise InvalidParams(
                f"session {row.id} is not in project {params.project!r}", field="session"
            )
        return export.Filters(
            project_id=row.project_id, session_id=row.id, run_id=row.run_id, since=since
        )

    # ---- import -------------------------------------------------------------------------

    @_method(
        "import.begin",
        params=ImportBeginParams,
        result=ImportBegun,
        summary="Start importing an export file on this connection: give its header.",
        description=(
            "Then send its records with import.records, in order, and finish with import.end. "
            "The import belongs to the connection: closing it drops the session in progress."
        ),
        errors=(ErrorCode.INVALID_STATE,),
        # Nothing stored changes yet: import.records and import.end are audited.
    )
    async def begin(self, ctx: CallContext, params: ImportBeginParams) -> ImportBegun:
        connection = ctx.connection
        if connection is None:
            raise InvalidState("an import needs a connection", field="header")
        if _STATE_KEY in connection.state:
            raise InvalidState(
                "an import is under way on this connection; finish it with import.end first",
                field="header",
            )
        try:
            header = msgspec.convert(params.header, Header)
        except msgspec.ValidationError as exc:
            raise InvalidParams(
                f"line 1 is not the header of a {FORMAT} file: {exc}", field="header"
            ) from None
        if header.version != VERSION:
            raise InvalidParams(
                f"the file's records are version {header.version}; this mimird reads "
                f"version {VERSION}",
                field="header",
            )
        spool = await trio.to_thread.run_sync(_spool_file, self._spool_dir)
        job = _Import(self._store, spool)
        connection.state[_STATE_KEY] = job
        connection.nursery.start_soon(_guard, connection, job)
        log.info("import_began", file_schema=header.schema, exported_at=header.exported_at)
        return ImportBegun(schema=self._store.revision, file_schema=header.schema)

    @_method(
        "import.records",
        params=ImportRecordsParams,
        result=ImportProgress,
        summary="The next records of the file being imported, in order.",
        description=(
            "Every record is checked; the first bad one ends the import with an error that "
            "names its line (sessions already written stay, the one in progress is dropped)."
        ),
        errors=(ErrorCode.INVALID_STATE,),
        mutating=True,
    )
    async def records(self, ctx: CallContext, params: ImportRecordsParams) -> ImportProgress:
        job = _job(ctx)
        try:
            for offset, value in enumerate(params.records):
                line = params.first_line + offset
                record = importing.check_record(value, line)
                _check_config(record, line)
                await job.take(record, line)
            await job.flush()
        except BaseException:
            _drop(ctx.connection, job)
            raise
        return ImportProgress(records=job.taken)

    @_method(
        "import.end",
        params=EmptyParams,
        result=ImportReport,
        summary="Finish the import: write the last session, and say what was imported.",
        errors=(ErrorCode.INVALID_STATE,),
        mutating=True,
    )
    async def end(self, ctx: CallContext, params: EmptyParams) -> ImportReport:
        job = _job(ctx)
        try:
            await job.close_unit()
        finally:
            _drop(ctx.connection, job)
        log.info(
            "import_ended",
            projects=job.report.projects,
            sessions=job.report.sessions,
            runs=job.report.runs,
            conflicts=job.report.conflicts_total,
        )
        return job.report


def _check_config(record: Record, line: int) -> None:
    """A project's, session's or run's config must be one the daemon would take."""
    if isinstance(record, ProjectRecord | SessionRecord | RunRecord):
        try:
            policy.parse_layer(record.config, _tag(record))
        except InvalidParams as exc:
            raise InvalidParams(
                f"line {line}: {exc.message}", field="records", detail={"line": line}
            ) from None


def _tag(record: Record) -> str:
    """The record's ``type``."""
    return str(record.__struct_config__.tag)


def _spool_file(directory: Path) -> IO[bytes]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Unlinked at once: nothing is left behind, whatever ends the daemon.
    return tempfile.TemporaryFile(dir=os.fspath(directory), prefix="import-")


def _job(ctx: CallContext) -> _Import:
    connection = ctx.connection
    job = None if connection is None else connection.state.get(_STATE_KEY)
    if not isinstance(job, _Import):
        raise InvalidState("no import is under way on this connection: call import.begin first")
    return job


def _drop(connection: Connection | None, job: _Import) -> None:
    if connection is not None and connection.state.get(_STATE_KEY) is job:
        del connection.state[_STATE_KEY]
    job.close()


async def _guard(connection: Connection, job: _Import) -> None:
    """Drops the import if its connection ends before import.end."""
    try:
        await job.over.wait()
    finally:
        if connection.state.get(_STATE_KEY) is job:
            log.info("import_dropped", reason="connection closed")
            _drop(connection, job)
