"""A client's "always": a rule written into the session's or the project's config
so that the next identical request is decided by the tool policy.

"Identical" (:func:`mimird.agents.tool_policy.remembered_pattern`): the same tool
kind and the same path(s), each as an exact glob relative to the workspace; for
``execute`` the same command (its words, as a prefix); for the kinds without
patterns, any call of that kind. The rule is written into the layer named: its own
rule for the kind gets the pattern added to ``allow`` (an allow answer) or ``deny``
(a reject); a layer without a rule for the kind starts from the rule in force below
it (so a deny pattern of a lower layer is kept). Read, changed and written in one
transaction; a session's change is journaled (``session_updated``), and the answer's
``permission_answered`` carries the rule (``remembered``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any, Literal

import msgspec
import sqlalchemy as sa

from mimird import policy, projects
from mimird.agents import tool_policy
from mimird.agents.host import AgentHost
from mimird.agents.permissions import Permission
from mimird.errors import InvalidParams, MimirError
from mimird.sessions import records as sessions
from mimird.tool_rules import Decision
from mimird.wire import events
from mimird.workspaces import files

Layer = Literal["session", "project"]
#: ``layers(project_config, session_config)``: the merged configuration.
Layers = Callable[[dict[str, Any], dict[str, Any]], policy.Effective]


def decision_of(option: dict[str, Any]) -> Decision:
    """What answering with ``option`` decides: ``allow`` or ``deny``."""
    kind = option.get("kind")
    if kind in ("allow_once", "allow_always"):
        return "allow"
    if kind in ("reject_once", "reject_always"):
        return "deny"
    raise InvalidParams(
        f"the option chosen has kind {kind!r}, not allow_* or reject_*: nothing to remember",
        field="remember",
    )


async def patterns_of(host: AgentHost, permission: Permission) -> tuple[str, list[str]]:
    """(tool kind, patterns) that decide the next identical request; paths resolved
    in the session's pinned workspace. Raises ``InvalidParams`` (field ``remember``)
    when none can be made (no path inside the workspace, a compound command).

    Cancellation: nothing happened (the thread finishes unseen)."""

    def work(workspace: files.Workspace, _deadline: files.Deadline) -> tuple[str, list[str]]:
        def resolve(path: str) -> PurePosixPath | None:
            try:
                return workspace.confine(path)
            except MimirError:
                return None

        try:
            return tool_policy.remembered_pattern(permission.tool_call, resolve)
        except tool_policy.CannotRemember as exc:
            raise InvalidParams(f"cannot remember this answer: {exc}", field="remember") from None

    return await host.client_methods.sandboxed(work, "remembering a tool policy rule")


def write_rule(
    conn: sa.Connection,
    session_id: str,
    layer: Layer,
    kind: str,
    patterns: list[str],
    decision: Decision,
    layers: Layers,
) -> dict[str, Any]:
    """Add the rule to ``layer``'s stored config (one transaction); returns what was
    remembered: ``layer``, ``key``, ``patterns``, ``decision``, ``rule`` (the new one)."""
    row = sessions.get(conn, session_id)
    project_config = projects.raw_config(conn, row.project_id)
    own = dict(row.config if layer == "session" else project_config)
    below = layers(project_config, {}) if layer == "session" else layers({}, {})
    rules = dict(own.get("tool_policy") or {})
    base = rules.get(kind, below.values["tool_policy"][kind])
    rules[kind] = tool_policy.with_pattern(base, kind, patterns, decision)
    own["tool_policy"] = rules
    # The rule written must be one the layer accepts; it is written in its full shape.
    parsed: dict[str, Any] = msgspec.to_builtins(policy.parse_layer(own, layer).tool_policy)
    rules[kind] = parsed[kind]
    key = f"tool_policy.{kind}"
    if layer == "session":
        sessions.update(
            conn, session_id, {"config": own}, event=events.SessionUpdated(fields=["config"])
        )
    else:
        projects.update_project(conn, row.project_id, {"config": own})
    return {
        "layer": layer,
        "key": key,
        "patterns": patterns,
        "decision": decision,
        "rule": rules[kind],
    }
