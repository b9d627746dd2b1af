"""Params and results of prompts, prompt templates, and the agent's model and mode:
``session.prompt``, ``template.list``, ``session.set_model``, ``session.set_mode``.

Standard library and msgspec only, like every module of ``mimird.wire``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from mimird.wire.types import (
    Params,
    ProjectRef,
    PromptText,
    Result,
    SessionRef,
    TemplateName,
    TemplateVars,
)

ContentBlock = Annotated[
    dict[str, Any],
    Meta(description="An ACP content block, e.g. {'type': 'text', 'text': '...'}."),
]
#: A model or mode id, as the agent offers it (``models``/``modes``/config options).
ChoiceId = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^\S(?:.*\S)?$")]


class SessionPromptParams(Params):
    session: SessionRef
    #: The prompt as plain text; or give ``content`` or ``template``.
    text: PromptText | UnsetType = UNSET
    #: The prompt as ACP content blocks (text, resource_link, resource, image, ...).
    content: Annotated[list[ContentBlock], Meta(min_length=1, max_length=1000)] | UnsetType = UNSET
    #: A prompt template of the session's config (prompt_templates), filled with ``vars``.
    template: TemplateName | UnsetType = UNSET
    vars: TemplateVars | UnsetType = UNSET


class PromptSubmitted(Result):
    """``session.submit``'s answer: the prompt is journaled, its turn goes on."""

    session: str
    #: seq of the journaled prompt; the turn's ``turn_ended`` comes later.
    prompt_seq: int


# ---- template.list ---------------------------------------------------------------------


class TemplateListParams(Params):
    #: The templates a session sees (every layer); or a project's (without the session
    #: layer); neither: the config file's.
    session: SessionRef | UnsetType = UNSET
    project: ProjectRef | UnsetType = UNSET


class TemplateInfo(Result):
    name: str
    text: str
    #: The layer that set it: defaults (the config file), project, session.
    source: str
    #: The placeholders it uses, in order of first use.
    placeholders: list[str]
    #: Why it cannot be used (bad brace syntax), or None.
    problem: str | None = None


class TemplateList(Result):
    templates: list[TemplateInfo]
    #: The placeholders every template may use without a var.
    builtins: list[str]


# ---- session.set_model / session.set_mode ------------------------------------------------


class SessionSetModelParams(Params):
    session: SessionRef
    model: ChoiceId


class SessionSetModeParams(Params):
    session: SessionRef
    mode: ChoiceId


class ChoiceSet(Result):
    session: str
    key: Literal["model", "mode"]
    value: str
    #: Whether the running agent was told now; False: stored, applied at its next start.
    applied: bool
    #: The ACP method that told it: session/set_config_option, session/set_model or
    #: session/set_mode; None when not applied.
    via: str | None = None
    #: The ids the agent offers, as it said when it last started (empty when unknown).
    offered: list[str] = msgspec.field(default_factory=list)
