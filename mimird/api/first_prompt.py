"""``session.create``'s ``prompt``: checked before the session is made (nothing is
made for a prompt that cannot be), sent once it is, in the background.

``session.create`` answers as soon as the session exists (after its setup command,
as without a prompt); the agent then starts and the prompt runs as a turn, whose
progress flows as events. A prompt that cannot be sent after all (the agent cannot
start, the setup command failed) or whose turn fails is journaled as
``prompt_failed``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import structlog
import trio

from mimird import templates
from mimird.agents.manager import AgentManager, SessionConfigs
from mimird.errors import MimirError
from mimird.policy import Effective
from mimird.projects import get_project, raw_config
from mimird.secrets import scrub
from mimird.sessions import records
from mimird.sessions.records import SessionRow
from mimird.store import Store
from mimird.wire import events
from mimird.wire.types import Project, SessionCreateParams, TemplatePrompt

log = structlog.get_logger("mimird.api.first_prompt")

#: How long journaling a failed first prompt may take once the daemon is stopping.
JOURNAL_TIMEOUT_S = 5.0


async def check(store: Store, params: SessionCreateParams, layers: Any) -> None:
    """Raise ``InvalidParams`` if the first prompt cannot be made: an unknown template,
    a placeholder without a value, vars over the bounds. ``layers(project_config,
    session_config)`` merges the config as the session will have it.

    Cancellation: nothing happened."""
    prompt = params.prompt
    if not isinstance(prompt, TemplatePrompt):
        return
    project: Project = await store.read(get_project, params.project)
    effective: Effective = layers(await store.read(raw_config, project.id), params.config)
    kind: str = "worktree" if project.is_git else "private"
    if params.workspace is not msgspec.UNSET:
        kind = params.workspace
    # Known once the workspace is made; what matters now is whether there will be one.
    has_branch = kind == "worktree" or (kind == "in_place" and project.is_git)
    templates.render(
        effective.values["prompt_templates"],
        effective.sources,
        prompt.template,
        prompt.vars,
        {
            "task": params.task,
            "title": params.title,
            "branch": "branch" if has_branch else None,
            "base": "base" if has_branch else None,
            "project": project.name,
        },
    )


def send_soon(
    agents: AgentManager,
    configs: SessionConfigs,
    store: Store,
    row: SessionRow,
    prompt: str | TemplatePrompt,
) -> None:
    """Send the first prompt to the new session's agent, in the agent manager's
    nursery (so that it ends with the agents)."""
    agents.nursery.start_soon(_send, agents, configs, store, row, prompt)


async def _send(
    agents: AgentManager,
    configs: SessionConfigs,
    store: Store,
    row: SessionRow,
    prompt: str | TemplatePrompt,
) -> None:
    """Cancellation: as :meth:`AgentManager.prompt` (the turn is ended and journaled)."""
    try:
        template = None
        if isinstance(prompt, TemplatePrompt):
            template = prompt.template
            effective = await configs.effective(row)
            text = templates.render(
                effective.values["prompt_templates"],
                effective.sources,
                template,
                prompt.vars,
                templates.builtins_of(row),
            )
        else:
            text = prompt
        content = [{"type": "text", "text": text}]
        await agents.prompt(row, configs, content, text, template=template)
    except MimirError as exc:
        await _failed(configs, store, row, exc.message, exc.code.kind)
    except Exception:
        # Never out of the manager's nursery: that would stop every agent.
        log.exception("first_prompt_crashed", session_id=row.id)
        await _failed(
            configs, store, row, "internal error in mimird (see its log)", "internal_error"
        )


async def _failed(
    configs: SessionConfigs, store: Store, row: SessionRow, reason: str, error: str
) -> None:
    log.info("first_prompt_failed", session_id=row.id, error=error)
    secrets: set[str] = set()
    with contextlib.suppress(MimirError):
        secrets = (await configs.effective(row)).secret_values()
    failed = events.PromptFailed(reason=scrub(reason, secrets), error=error)
    with trio.move_on_after(JOURNAL_TIMEOUT_S, shield=True):
        await store.write(records.update, row.id, {}, event=failed)
