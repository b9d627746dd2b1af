"""``run.create``: every param checked before anything is made, then the run and
one member session per slot (each its own worktree and branch
``mimir/run-<slug>-<short id>/<slot>-<agent>``), all on the same base commit.

A member that cannot be made undoes the whole create: the members made so far
are deleted (they hold no work yet) and the run row goes; the error says why.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog
import trio

from mimird import names, templates
from mimird.agents.presets import PRESETS
from mimird.errors import InvalidParams, InvalidState, MimirError
from mimird.projects import get_project, raw_config
from mimird.runs import catalog, modes, records
from mimird.runs.orchestrator import Runs
from mimird.runs.records import RunRow
from mimird.wire import run_events as ev
from mimird.wire.runs import RunCreateParams
from mimird.wire.types import Project, SessionCreateParams, TemplatePrompt
from mimird.workspaces import git as worktrees

log = structlog.get_logger("mimird.runs")

SHORT_ID_LENGTH: Final = 8
#: Rounds of a debate when the call does not say.
DEFAULT_ROUNDS: Final = 2


def agents_of(params: RunCreateParams, default_agent: str, known: set[str]) -> list[str]:
    """One agent kind per slot, from ``agents`` or ``agent`` + ``n``; every kind known."""
    unset = msgspec.UNSET
    if params.agents is not unset:
        if params.agent is not unset or params.n is not unset:
            raise InvalidParams(
                "give agents (one kind per slot), or agent and n, not both", field="agents"
            )
        kinds = list(params.agents)
    elif params.n is not unset:
        kinds = [params.agent if params.agent is not unset else default_agent] * params.n
    else:
        raise InvalidParams(
            "a run needs its members: agents (one kind per slot), or agent and n", field="n"
        )
    unknown = sorted({kind for kind in kinds if kind not in known})
    if unknown:
        raise InvalidParams(
            f"unknown agent kind(s) {', '.join(map(repr, unknown))}; known kinds: "
            f"{', '.join(sorted(known))} (add one as [agents.<name>] in the config file)",
            field="agents" if params.agents is not unset else "agent",
        )
    for field, value in (
        ("judge_agent", params.judge_agent),
        ("integration_agent", params.integration_agent),
    ):
        if value is not unset and value not in known:
            raise InvalidParams(f"unknown agent kind {value!r}", field=field)
    return kinds


def check_mode(params: RunCreateParams) -> int:
    """The mode, judge and their options fit together; returns the rounds."""
    if params.mode not in catalog.MODES:
        raise InvalidParams(
            f"mode {params.mode!r} is not available in this mimird (available: "
            f"{', '.join(sorted(catalog.MODES))})",
            field="mode",
        )
    if params.judge == "checks" and params.check_command is msgspec.UNSET:
        raise InvalidParams(
            "judge 'checks' decides by the check command: give check_command", field="judge"
        )
    if params.judge not in ("user", *modes.JUDGES):
        raise InvalidParams(
            f"judge {params.judge!r} is not available in this mimird", field="judge"
        )
    if params.rounds is not msgspec.UNSET and params.mode != "debate":
        raise InvalidParams("rounds is for mode 'debate'", field="rounds")
    if params.then != "decide" and params.mode != "debate":
        raise InvalidParams("then is for mode 'debate'", field="then")
    if params.run_budget is not msgspec.UNSET and (
        params.run_budget.tokens is None and params.run_budget.cost_usd is None
    ):
        raise InvalidParams("run_budget needs tokens or cost_usd (or both)", field="run_budget")
    if params.mode == "debate":
        return params.rounds if params.rounds is not msgspec.UNSET else DEFAULT_ROUNDS
    return 1


def member_branch(slug: str, run_id: str, slot: int, agent: str) -> str:
    return names.check_branch(
        f"mimir/run-{slug}-{run_id[-SHORT_ID_LENGTH:]}/{slot}-{agent}", field="agents"
    )


async def create_run(runs: Runs, params: RunCreateParams) -> RunRow:
    """Check, then make the run and its members; the run is ``starting`` and its
    first event ``run_created``. Each member's first turn starts as soon as the
    member is made (:meth:`Runs.prompt_early`), so that the agents
    work while the next worktrees are made. The caller starts the run's task,
    which joins those turns.

    Cancellation: before the first member is made nothing is left; after, the
    members made so far and the run are removed again (shielded, bounded)."""
    store, sessions = runs.store, runs.sessions
    rounds = check_mode(params)
    project: Project = await store.read(get_project, params.project)
    if project.archived:
        raise InvalidState(
            f"project {project.name!r} is archived; unarchive it to start runs",
            field="project",
            id=project.id,
        )
    if not project.is_git:
        raise InvalidParams(
            f"project {project.name!r} is not a git repository: a run's members need worktrees",
            field="project",
        )
    config = dict(params.config)
    # The run completes its members itself (the winner once its work is home).
    config.setdefault("auto_complete", False)
    effective = sessions.owner.layers(await store.read(raw_config, project.id), config)
    known = {*PRESETS, *runs.settings.agents}
    kinds = agents_of(params, effective.values["agent"], known)
    if isinstance(params.template, TemplatePrompt):
        # As session.create's prompt: an unknown template or a missing var is refused now.
        templates.render(
            effective.values["prompt_templates"],
            effective.sources,
            params.template.template,
            params.template.vars,
            {
                "task": params.task,
                "title": params.title,
                "branch": "branch",
                "base": "base",
                "project": project.name,
            },
        )
    root = Path(project.path)
    state = await sessions.workspaces.read_git(worktrees.repo_state, root)
    if params.base_ref is not msgspec.UNSET:
        base_ref: str = params.base_ref
        base_commit = await sessions.workspaces.read_git(worktrees.resolve_commit, root, base_ref)
    else:
        if state.head_commit is None:
            raise InvalidState(
                f"project {project.name!r} has no commits yet; commit something first",
                field="project",
            )
        if state.dirty:
            raise InvalidState(
                f"project {project.name!r} has uncommitted changes that the members' worktrees "
                "would not include: commit or stash them, or pass base_ref to base the run on "
                "a commit explicitly",
                field="project",
                id=project.id,
            )
        base_commit, base_ref = state.head_commit, state.branch or state.head_commit
    into: str | None = params.into if params.into is not msgspec.UNSET else None
    if into is not None:
        names.check_branch(into, field="into")
        if not await sessions.workspaces.read_git(worktrees.branch_exists, root, into):
            raise InvalidParams(f"project {project.name!r} has no branch {into!r}", field="into")
    elif await sessions.workspaces.read_git(worktrees.branch_exists, root, base_ref):
        into = names.check_branch(base_ref, field="into")
    run_id = store.ids.new()
    first_line = params.task.strip().splitlines()[0]
    slug = names.slugify(params.title or first_line, 24, fallback="run")
    branches = [member_branch(slug, run_id, slot, kind) for slot, kind in enumerate(kinds, 1)]
    options: dict[str, Any] = {
        "agents": kinds,
        "merge": params.merge,
        "preserve_worktrees": params.preserve_worktrees,
        "rounds": rounds,
        "then": params.then,
        "run_budget": None
        if params.run_budget is msgspec.UNSET
        else msgspec.to_builtins(params.run_budget),
        "template": None
        if params.template is msgspec.UNSET
        else msgspec.to_builtins(params.template),
        "judge_agent": None if params.judge_agent is msgspec.UNSET else params.judge_agent,
        "integration_agent": None
        if params.integration_agent is msgspec.UNSET
        else params.integration_agent,
    }
    check_command = None if params.check_command is msgspec.UNSET else params.check_command
    values: dict[str, Any] = {
        "id": run_id,
        "project_id": project.id,
        "title": params.title,
        "task": params.task,
        "mode": params.mode,
        "status": "starting",
        "judge": params.judge,
        "check_command": check_command,
        "config": params.config,
        "options": options,
        "base_ref": base_ref,
        "base_commit": base_commit,
        "into": into,
        "member_results": {str(slot): {"outcome": "pending"} for slot in range(1, len(kinds) + 1)},
        # An integration session will combine the members' work (ensemble, or a debate's then).
        "integration_phase": "pending"
        if params.mode == "ensemble" or params.then == "ensemble"
        else None,
    }
    # The members' ids first: the run's first event names them, and each member
    # starts working as soon as it is made, while the next ones are made.
    member_ids = [store.ids.new() for _ in kinds]
    created = ev.RunCreated(
        mode=params.mode,
        judge=params.judge,
        members=[
            ev.RunMemberRef(slot=slot, agent=kind, session_id=session_id)
            for slot, (kind, session_id) in enumerate(zip(kinds, member_ids, strict=True), 1)
        ],
        check_command=check_command,
        base_commit=base_commit,
    )
    inserted = await store.write(records.insert, values, created)
    made: list[str] = []
    try:
        for slot, (kind, branch) in enumerate(zip(kinds, branches, strict=True), 1):
            title = f"{params.title or first_line[:80]} [{slot}/{len(kinds)} {kind}]"
            member = SessionCreateParams(
                project=project.id,
                title=title[:500],
                task=params.task,
                agent=kind,
                base_ref=base_commit,
                branch=branch,
                config=config,
            )
            # The base is resolved and the branch named after the new run: not asked again.
            row = await sessions.owner.create(
                member, run=(run_id, slot), session_id=member_ids[slot - 1], base_commit=base_commit
            )
            made.append(row.id)
            runs.prompt_early(inserted, row, slot)
        row_ = await store.read(records.get, run_id)
    except BaseException:
        with trio.move_on_after(60, shield=True):
            await runs.abandon_early(run_id)
            await _undo(runs, run_id, made)
        raise
    log.info("run_created", run_id=run_id, project=project.name, members=len(kinds))
    return row_


async def _undo(runs: Runs, run_id: str, made: list[str]) -> None:
    for session_id in made:
        with contextlib.suppress(MimirError):
            await runs.sessions.owner.delete(session_id, force=True, delete_branch=True)
    with contextlib.suppress(MimirError):
        await runs.store.write(records.delete, run_id)
