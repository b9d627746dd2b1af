"""``template.list``: the prompt templates a session (or a project) can use, each
with the layer that set it (owner of the rendering: :mod:`mimird.templates`)."""

from __future__ import annotations

import msgspec

from mimird import templates
from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.errors import InvalidParams
from mimird.projects import raw_config, resolve_id
from mimird.rpc.registry import CallContext, Registry
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.prompts import TemplateInfo, TemplateList, TemplateListParams

_method = MethodTable()


class TemplateService:
    def __init__(self, store: Store, sessions_: SessionService) -> None:
        self._store = store
        self._sessions = sessions_

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "template.list",
        params=TemplateListParams,
        result=TemplateList,
        summary="The prompt templates a session or project can use, and the layer of each.",
        description=(
            "With session: every layer (defaults, project, session); with project: the "
            "defaults and the project's; with neither: the config file's [defaults]. Use "
            "one with session.prompt's template and vars."
        ),
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def list(self, ctx: CallContext, params: TemplateListParams) -> TemplateList:
        """Cancellation: nothing happened."""
        if params.session is not msgspec.UNSET and params.project is not msgspec.UNSET:
            raise InvalidParams("give session or project, not both", field="project")
        owner = self._sessions.owner
        if params.session is not msgspec.UNSET:
            effective = await owner.effective(await owner.find(params.session))
        elif params.project is not msgspec.UNSET:
            project_id = await self._store.read(resolve_id, params.project)
            effective = owner.layers(await self._store.read(raw_config, project_id), {})
        else:
            effective = owner.layers({}, {})
        found = []
        for name, text in sorted(effective.values["prompt_templates"].items()):
            try:
                placeholders, problem = templates.parse(text).placeholders, None
            except ValueError as exc:
                placeholders, problem = [], str(exc)
            found.append(
                TemplateInfo(
                    name=name,
                    text=text,
                    source=effective.sources[f"prompt_templates.{name}"],
                    placeholders=placeholders,
                    problem=problem,
                )
            )
        return TemplateList(templates=found, builtins=list(templates.BUILTINS))
