"""The OpenRPC document, generated from the registry's own types."""

from __future__ import annotations

from typing import Any

import msgspec

from mimird.rpc.registry import COMMON_ERRORS, Registry
from mimird.wire.errors import ERROR_DESCRIPTIONS, ErrorCode
from mimird.wire.protocol import PROTOCOL_VERSION

OPENRPC_VERSION = "1.3.2"
_REF = "#/components/schemas/{name}"


def _error(code: ErrorCode) -> dict[str, Any]:
    return {"code": int(code), "message": ERROR_DESCRIPTIONS[code], "data": {"kind": code.kind}}


def openrpc_document(registry: Registry, version: str) -> dict[str, Any]:
    methods = list(registry)
    types: list[Any] = [m.params for m in methods] + [m.result for m in methods]
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    result_schemas = schemas[len(methods) :]
    documented = []
    for method, result_schema in zip(methods, result_schemas, strict=True):
        params_schema = components[method.params.__name__]
        required = set(params_schema.get("required", ()))
        documented.append(
            {
                "name": method.name,
                "summary": method.summary,
                **({"description": method.description} if method.description else {}),
                "paramStructure": "by-name",
                "params": [
                    {"name": name, "required": name in required, "schema": schema}
                    for name, schema in params_schema.get("properties", {}).items()
                ],
                "result": {"name": "result", "schema": result_schema},
                "errors": [_error(code) for code in (*method.errors, *COMMON_ERRORS)],
                "x-mutating": method.mutating,
                "x-concurrent": method.concurrent,
            }
        )
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "Mimir daemon (mimird)",
            "version": version,
            "x-protocol-version": PROTOCOL_VERSION,
            "description": (
                "JSON-RPC 2.0 over a Unix socket, one JSON text per line (NDJSON). "
                "Params are passed by name; unknown fields are errors."
            ),
        },
        "methods": documented,
        "components": {
            "schemas": components,
            "errors": {code.kind: _error(code) for code in ErrorCode},
        },
    }
