"""docs/api.md stays true to the runs: every run event kind is in the "Run events"
table with its data fields, every run status in "Run statuses" with the statuses
that may follow it, and every [runs] setting in "Run settings"."""

from __future__ import annotations

import msgspec

from mimird.config import RunsSection
from mimird.runs.states import TRANSITIONS
from mimird.wire import run_events
from tests.daemon.test_docs import API_DOC, first_cells, split_sections, tables

_SECTIONS = split_sections(API_DOC.read_text(encoding="utf-8"))


def test_every_run_event_kind_is_in_the_table_with_its_data_fields() -> None:
    rows = {row[0].strip("`"): row for row in tables(_SECTIONS["Run events"])["kind"]}
    assert set(rows) == set(run_events.RUN_KINDS)
    for kind, data_type in run_events.RUN_DATA_TYPES.items():
        fields = [field.encode_name for field in msgspec.structs.fields(data_type)]
        missing = [name for name in fields if f"`{name}`" not in rows[kind][2]]
        assert not missing, f"{kind}: data fields not in its row of 'Run events': {missing}"


def test_the_run_status_table_is_the_state_machine_the_daemon_enforces() -> None:
    rows = tables(_SECTIONS["Run statuses"])["status"]
    documented = {
        status: {name.strip("` ") for name in row[2].split(",") if name.strip() != "—"}
        for status, row in zip(first_cells(rows), rows, strict=True)
    }
    assert documented == {status: set(nexts) for status, nexts in TRANSITIONS.items()}


def test_every_runs_setting_is_documented_with_its_default() -> None:
    rows = {row[0].strip("`"): row for row in tables(_SECTIONS["Run settings"])["key"]}
    defaults = msgspec.to_builtins(RunsSection())
    assert set(rows) == set(defaults)
    for key, value in defaults.items():
        assert rows[key][1] == f"`{value!r}`", (key, rows[key])
