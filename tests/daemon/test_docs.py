"""docs/api.md stays true to the daemon, and the daemon's OpenRPC document to itself.

The method list, params and errors come from ``rpc.discover`` on a real
in-process daemon, so a method added, a param renamed or an error code added
without a word in the API reference fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
import trio

from mimirctl.cli import EXIT_CODES
from mimird import policy, workspace_keys
from mimird.rpc.registry import COMMON_ERRORS
from mimird.sessions.states import TRANSITIONS
from mimird.wire import events
from mimird.wire.errors import ErrorCode
from mimird.wire.protocol import PROTOCOL_VERSION
from mimird.wire.types import SessionStatus, WorkspaceKind, WorkspaceState
from mimird.workspaces.provision import ORPHAN_REF_PREFIX, SNAPSHOT_REF_PREFIX
from tests.support.helpers import DaemonDirs, TrioClient, in_process_daemon, short_tmpdir

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SCHEMA_REF = "#/components/schemas/"
_HEADING = re.compile(r"^(?P<level>#{1,6}) +(?P<title>.+?) *$")
_METHOD_HEADING = re.compile(r"^`(?P<name>[a-z_]+(?:\.[a-z_]+)+)`$")
_CODE_NAME = re.compile(r"`([a-z_]+)`")


# ---- fixtures -----------------------------------------------------------------------


async def _discover() -> dict[str, Any]:
    with short_tmpdir() as root:
        async with (
            in_process_daemon(DaemonDirs(root)) as daemon,
            TrioClient.connect(daemon.socket) as client,
        ):
            document: dict[str, Any] = await client.call("rpc.discover")
    return document


@pytest.fixture(scope="module")
def openrpc() -> dict[str, Any]:
    """The OpenRPC document of a real daemon (one daemon for the whole module)."""
    return trio.run(_discover)


@pytest.fixture(scope="module")
def methods(openrpc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {method["name"]: method for method in openrpc["methods"]}


@pytest.fixture(scope="module")
def sections() -> dict[str, str]:
    """docs/api.md split at its headings: heading text -> the text up to the next heading."""
    return split_sections(API_DOC.read_text(encoding="utf-8"))


# ---- helpers ------------------------------------------------------------------------


def split_sections(markdown: str) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            title = heading.group("title")
            assert title not in found, f"docs/api.md has two sections titled {title!r}"
            current = found[title] = []
        elif current is not None:
            current.append(line)
    return {title: "\n".join(lines) for title, lines in found.items()}


def method_section(sections: dict[str, str], name: str) -> str:
    section = sections.get(f"`{name}`")
    assert section is not None, f"docs/api.md has no section '### `{name}`' for method {name}"
    return section


def error_table(sections: dict[str, str]) -> dict[int, list[str]]:
    """The rows of the table in the "Errors" section, by the code in their first cell."""
    rows: dict[int, list[str]] = {}
    for line in sections["Errors"].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"-\d+", cells[0]):
            rows[int(cells[0])] = cells
    return rows


def tables(section: str) -> dict[str, list[list[str]]]:
    """The tables of a section, by the text of their first header cell: their body rows,
    each as its list of cells."""
    found: dict[str, list[list[str]]] = {}
    rows: list[list[str]] | None = None
    for line in section.splitlines():
        if not line.startswith("|"):
            rows = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if rows is None:
            rows = found.setdefault(cells[0], [])
        elif not set(cells[0]) <= {"-", ":"}:
            rows.append(cells)
    return found


def first_cells(rows: list[list[str]]) -> list[str]:
    """The first cell of each row, which must be one name in backticks."""
    names = []
    for row in rows:
        match = re.fullmatch(r"`([^`]+)`", row[0])
        assert match, f"row does not start with a `name`: {row}"
        names.append(match.group(1))
    return names


def walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside ``value``, itself included."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def schema_properties(openrpc: dict[str, Any], schema: dict[str, Any]) -> Iterator[str]:
    """Property names of a result schema, following $refs and array items."""
    schemas = openrpc["components"]["schemas"]
    seen: set[str] = set()
    pending = [schema]
    while pending:
        current = pending.pop()
        if ref := current.get("$ref"):
            name = ref.removeprefix(SCHEMA_REF)
            if name not in seen:
                seen.add(name)
                pending.append(schemas[name])
            continue
        if "items" in current:
            pending.append(current["items"])
        for name, sub_schema in current.get("properties", {}).items():
            yield name
            pending.append(sub_schema)
        pending.extend(current.get("anyOf", ()))


# ---- the API reference --------------------------------------------------------------


def test_every_registered_method_has_a_section_in_the_api_reference(
    methods: dict[str, dict[str, Any]], sections: dict[str, str]
) -> None:
    missing = [name for name in methods if f"`{name}`" not in sections]
    assert not missing, f"methods without a '### `name`' section in docs/api.md: {missing}"


def test_the_api_reference_documents_no_method_the_daemon_lacks(
    methods: dict[str, dict[str, Any]], sections: dict[str, str]
) -> None:
    documented = {m.group("name") for title in sections if (m := _METHOD_HEADING.match(title))}
    assert documented - set(methods) == set()


def test_the_mutating_column_and_each_method_section_match_x_mutating(
    methods: dict[str, dict[str, Any]], sections: dict[str, str]
) -> None:
    """The audit log records the mutating methods: the index's "mutating" column and
    the **Mutating** mark of each method's section say which, as the daemon does."""
    [index] = [rows for header, rows in tables(sections["Methods"]).items() if header == "method"]
    column = {}
    for row in index:
        match = re.fullmatch(r"\[`([a-z_.]+)`\]\(#[a-z_]+\)", row[0])
        assert match, f"row of the methods index does not start with a [`method`](#link): {row}"
        assert row[1] in ("yes", "no"), f"'mutating' of {match.group(1)} is not yes or no: {row}"
        column[match.group(1)] = row[1] == "yes"
    marked = {name: method["x-mutating"] for name, method in methods.items()}
    assert column == marked
    in_sections = {name: "**Mutating" in method_section(sections, name) for name in methods}
    assert in_sections == marked


def test_every_param_of_every_method_is_named_in_its_section(
    methods: dict[str, dict[str, Any]], sections: dict[str, str]
) -> None:
    missing = [
        f"{name}: {param['name']}"
        for name, method in methods.items()
        for param in method["params"]
        if f"`{param['name']}`" not in method_section(sections, name)
    ]
    assert not missing, f"params not mentioned in their method's section: {missing}"


def test_every_result_field_is_named_in_the_api_reference(openrpc: dict[str, Any]) -> None:
    text = API_DOC.read_text(encoding="utf-8")
    missing = {
        f"{method['name']}: {field}"
        for method in openrpc["methods"]
        for field in schema_properties(openrpc, method["result"]["schema"])
        if f"`{field}`" not in text
    }
    assert not missing, f"result fields not mentioned in docs/api.md: {sorted(missing)}"


def test_every_method_section_names_the_errors_the_method_adds(
    methods: dict[str, dict[str, Any]], sections: dict[str, str]
) -> None:
    common = {code.kind for code in COMMON_ERRORS}
    missing = [
        f"{name}: {error['data']['kind']}"
        for name, method in methods.items()
        for error in method["errors"]
        if error["data"]["kind"] not in common
        and f"`{error['data']['kind']}`" not in method_section(sections, name)
    ]
    assert not missing, f"errors not mentioned in their method's section: {missing}"


def test_every_error_code_is_in_the_error_table_with_its_kind(sections: dict[str, str]) -> None:
    table = error_table(sections)
    for code in ErrorCode:
        assert int(code) in table, f"error {int(code)} ({code.kind}) is not in the error table"
        assert table[int(code)][1] == f"`{code.kind}`", table[int(code)]


def test_the_error_table_lists_no_code_the_daemon_lacks(sections: dict[str, str]) -> None:
    assert set(error_table(sections)) - {int(code) for code in ErrorCode} == set()


def test_the_api_reference_states_the_current_protocol_version() -> None:
    first_lines = API_DOC.read_text(encoding="utf-8").splitlines()[:5]
    assert any(f"Protocol version **{PROTOCOL_VERSION}**" in line for line in first_lines)


def test_every_mimirctl_exit_code_for_an_error_is_documented(sections: dict[str, str]) -> None:
    rows = [line for line in sections["`mimirctl` exit codes"].splitlines() if line.startswith("|")]
    for code, exit_code in EXIT_CODES.items():
        assert any(
            line.startswith(f"| {exit_code} |") and f"`{int(code)}`" in line for line in rows
        ), f"exit code {exit_code} for {code.kind} is not in the mimirctl exit-code table"


# ---- the overview sections ------------------------------------------------------------


def test_the_transition_table_is_the_one_the_daemon_enforces(sections: dict[str, str]) -> None:
    rows = tables(sections["Statuses and transitions"])["status"]
    documented = {
        status: set(_CODE_NAME.findall(row[-1]))
        for status, row in zip(first_cells(rows), rows, strict=True)
    }
    assert len(documented) == len(rows), "a status has two rows in the transition table"
    assert documented == {status: set(nexts) for status, nexts in TRANSITIONS.items()}
    assert set(documented) == set(get_args(SessionStatus))


def test_every_workspace_kind_and_state_is_explained(sections: dict[str, str]) -> None:
    kinds = sections["Workspaces"]
    missing = [kind for kind in get_args(WorkspaceKind) if f"- `{kind}`" not in kinds]
    assert not missing, f"workspace kinds without their item in 'Workspaces': {missing}"
    rows = tables(sections["Workspace states and drift"])["state"]
    assert sorted(first_cells(rows)) == sorted(get_args(WorkspaceState))


def test_every_config_key_and_layer_is_in_the_configuration_section(
    sections: dict[str, str],
) -> None:
    section = sections["Layered configuration"]
    found = tables(section)
    assert first_cells(found["layer"]) == list(policy.LAYERS), "layers, lowest first"
    assert first_cells(found["key"]) == list(policy.KEYS), "config keys, in policy.KEYS order"
    builtin = policy.effective([]).values
    for row in found["key"]:
        key = row[0].strip("`")
        default = builtin[key]
        if key == "tool_policy":
            assert all(f"`{kind}`" in row[3] for kind in policy.TOOL_KINDS), row
            assert set(default.values()) == {"ask"}, "the table says every kind is 'ask'"
        elif default in (None, {}, []):
            shown = {type(None): "`null`", dict: "`{}`", list: "`[]`"}[type(default)]
            assert row[2].startswith(shown), (key, row[2])
        else:
            assert row[2] == f"`{json.dumps(default)}`", (key, row[2])
    missing = [name for name in workspace_keys.PLACEHOLDERS if f"`{{{name}}}`" not in section]
    assert not missing, f"template placeholders not explained: {missing}"
    assert f"`{policy.SECRET_MASK}`" in section or f'`"{policy.SECRET_MASK}"`' in section


def test_the_work_safety_section_names_the_snapshot_refs(sections: dict[str, str]) -> None:
    section = sections["Work safety"]
    assert f"`{SNAPSHOT_REF_PREFIX}<session id>`" in section
    assert f"`{ORPHAN_REF_PREFIX}<directory name>-<UTC time>`" in section


# ---- the OpenRPC document itself ----------------------------------------------------


def test_every_openrpc_method_has_params_result_and_errors(openrpc: dict[str, Any]) -> None:
    assert openrpc["methods"], "rpc.discover lists no methods"
    for method in openrpc["methods"]:
        name = method["name"]
        assert isinstance(method["params"], list), name
        for param in method["params"]:
            assert {"name", "required", "schema"} <= param.keys(), (name, param)
        assert method["result"]["schema"], name
        assert method["errors"], name
        for error in method["errors"]:
            code = ErrorCode(error["code"])
            assert error["data"]["kind"] == code.kind, (name, error)
            assert error["message"], (name, error)


def test_openrpc_params_match_the_params_schema(openrpc: dict[str, Any]) -> None:
    """Each method's params are exactly the properties of an object schema that forbids others."""
    schemas = openrpc["components"]["schemas"]
    params_schemas = [s for s in schemas.values() if s.get("additionalProperties") is False]
    for method in openrpc["methods"]:
        names = {p["name"] for p in method["params"]}
        required = {p["name"] for p in method["params"] if p["required"]}
        assert any(
            set(s["properties"]) == names and set(s.get("required", ())) == required
            for s in params_schemas
        ), f"{method['name']}: no closed params schema with properties {sorted(names)}"


def test_every_ref_in_the_openrpc_document_resolves(openrpc: dict[str, Any]) -> None:
    schemas = openrpc["components"]["schemas"]
    refs = [obj["$ref"] for obj in walk(openrpc) if "$ref" in obj]
    assert refs, "the document has no $ref at all; has the generator changed?"
    for ref in refs:
        assert ref.startswith(SCHEMA_REF), ref
        assert ref.removeprefix(SCHEMA_REF) in schemas, f"{ref} does not resolve"


def test_openrpc_lists_every_error_code_in_its_components(openrpc: dict[str, Any]) -> None:
    errors = openrpc["components"]["errors"]
    assert {kind: e["code"] for kind, e in errors.items()} == {
        code.kind: int(code) for code in ErrorCode
    }


def test_openrpc_info_carries_the_protocol_version(openrpc: dict[str, Any]) -> None:
    assert openrpc["info"]["x-protocol-version"] == PROTOCOL_VERSION


def test_every_event_kind_is_in_the_event_table_with_its_data_fields(
    sections: dict[str, str],
) -> None:
    rows = {row[0].strip("`"): row for row in tables(sections["Event kinds"])["kind"]}
    assert set(rows) == set(events.KINDS), (
        f"kinds documented but not in mimird.wire.events: {set(rows) - events.KINDS}; "
        f"in the code but not documented: {events.KINDS - set(rows)}"
    )
    for kind, data_type in events.DATA_TYPES.items():
        fields = [field.encode_name for field in msgspec.structs.fields(data_type)]
        missing = [name for name in fields if f"`{name}`" not in rows[kind][2]]
        assert not missing, f"{kind}: data fields not in its row of 'Event kinds': {missing}"


SECURITY_DOC = API_DOC.with_name("security.md")


def test_every_test_the_threat_model_names_exists() -> None:
    """docs/security.md names the tests that hold each line: `tests/x.py`, then
    `::name` (in the file last named, or `tests/x.py::name`). Each must exist."""
    root = API_DOC.parents[1]
    text = SECURITY_DOC.read_text()
    current: Path | None = None
    missing = []
    named = 0
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?[^`]*`", text):
        path, name = match.groups()
        if path:
            current = root / path
            if not current.is_file():
                missing.append(path)
                continue
        if name:
            assert current is not None, f"::{name} before any test file"
            named += 1
            if not re.search(rf"^(async )?def {name}\(", current.read_text(), re.M):
                missing.append(f"{current.relative_to(root)}::{name}")
    assert named > 20  # the pattern still finds the names
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
