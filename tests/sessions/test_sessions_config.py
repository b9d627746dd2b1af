"""Session configuration: every value names its layer.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.helpers import (
    DaemonDirs,
    TrioClient,
    add_project,
)
from tests.support.sessions import (
    branch_tip,
    call,
    create,
    daemon_with_config,
    head,
)

pytestmark = pytest.mark.timeout(60)


# ---- configuration: every value names its layer ----------------------------------------------

DEFAULTS_CONFIG: Final = """
[defaults]
token_budget = 1000
branch_template = "work/{project}/{slug}"

[defaults.env]
D = "from-defaults"
A = "from-defaults-too"
"""


async def test_session_config_names_the_layer_of_every_value(dirs: DaemonDirs, repo: Path) -> None:
    async with daemon_with_config(dirs, DEFAULTS_CONFIG) as client:
        project = await add_project(
            client, repo, config={"agent": "claude", "env": {"A": "from-project"}}
        )
        session = await create(
            client,
            project,
            config={"env": {"B": "from-session"}, "tool_policy": {"execute": "allow"}},
        )
        config = await call(client, "session.config", {"session": session["id"]})
    sources = {e["key"]: (e["value"], e["source"]) for e in config["entries"]}
    builtin_kinds = [
        "delete",
        "edit",
        "fetch",
        "move",
        "other",
        "read",
        "search",
        "switch_mode",
        "think",
    ]
    assert sources == {
        "agent": ("claude", "project"),
        "auto_complete": (False, "builtin"),
        "branch_template": ("work/{project}/{slug}", "defaults"),
        "copy_files": ([], "builtin"),
        "copy_max_bytes": (1 << 30, "builtin"),
        "mcp_servers": ([], "builtin"),
        "env.A": ("from-project", "project"),
        "env.B": ("from-session", "session"),
        "env.D": ("from-defaults", "defaults"),
        "mode": (None, "builtin"),
        "model": (None, "builtin"),
        "permission_timeout_default": ("deny", "builtin"),
        "permission_timeout_s": (None, "builtin"),
        "prompt_templates": ({}, "builtin"),
        "setup_command": (None, "builtin"),
        "token_budget": (1000, "defaults"),
        "cost_budget_usd": (None, "builtin"),
        "budget_warn_ratio": (0.8, "builtin"),
        "handoff_max_bytes": (65536, "builtin"),
        "turn_timeout_s": (None, "builtin"),
        "tool_policy.execute": ("allow", "session"),
        **{f"tool_policy.{kind}": ("ask", "builtin") for kind in builtin_kinds},
        "worktree_location": ("{project}/{slug}-{short_id}", "builtin"),
    }
    assert config["effective"]["env"] == {
        "A": "from-project",
        "B": "from-session",
        "D": "from-defaults",
    }
    assert session["agent"] == "claude"


async def test_a_session_value_beats_the_project_and_the_defaults(
    dirs: DaemonDirs, repo: Path
) -> None:
    async with daemon_with_config(dirs, DEFAULTS_CONFIG) as client:
        project = await add_project(client, repo, config={"token_budget": 2000})
        inherits = await create(client, project, title="inherits")
        overrides = await create(client, project, title="overrides", config={"token_budget": 3000})
        inherited = await call(client, "session.config", {"session": inherits["id"]})
        overridden = await call(client, "session.config", {"session": overrides["id"]})
    assert inherited["effective"]["token_budget"] == 2000
    assert overridden["effective"]["token_budget"] == 3000
    [entry] = [e for e in overridden["entries"] if e["key"] == "token_budget"]
    assert entry["source"] == "session"


async def test_the_branch_template_from_the_defaults_shapes_the_branch_name(
    dirs: DaemonDirs, repo: Path
) -> None:
    async with daemon_with_config(dirs, DEFAULTS_CONFIG) as client:
        project = await add_project(client, repo, name="api")
        session = await create(client, project, title="Fix it!")
    assert session["workspace"]["branch"] == "work/api/fix-it"
    assert branch_tip(repo, "work/api/fix-it") == head(repo)


async def test_the_agent_param_beats_every_config_layer(dirs: DaemonDirs, repo: Path) -> None:
    async with daemon_with_config(dirs, '[defaults]\nagent = "goose"\n') as client:
        project = await add_project(client, repo, config={"agent": "claude"})
        default = await create(client, project, workspace="in_place")
        chosen = await create(client, project, workspace="in_place", agent="codex")
    assert (default["agent"], chosen["agent"]) == ("claude", "codex")


async def test_a_project_config_change_reaches_its_existing_sessions(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    await call(client, "project.update", {"project": project["id"], "config": {"agent": "x"}})
    config = await call(client, "session.config", {"session": session["id"]})
    assert [(e["value"], e["source"]) for e in config["entries"] if e["key"] == "agent"] == [
        ("x", "project")
    ]
