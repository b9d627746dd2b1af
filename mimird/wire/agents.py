"""Wire types of ``agent.install``, ``agent.update`` and ``agent.remove`` (agents
installed from the ACP Registry; ``agent.list``'s are in :mod:`mimird.wire.types`)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from mimird.wire.types import AgentName, Params, Result

#: A registry file's absolute path, or an http(s) URL.
RegistrySource = Annotated[str, Meta(min_length=1, max_length=2048)]


class AgentInstallParams(Params):
    name: AgentName
    #: A version other than the registry's (npx and uvx distributions only).
    version: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    registry: RegistrySource | None = None


class AgentUpdateParams(Params):
    #: One installed agent; every installed agent when absent.
    name: AgentName | None = None
    registry: RegistrySource | None = None


class AgentRemoveParams(Params):
    name: AgentName


class InstalledAgentInfo(Result):
    #: The kind sessions name (``agent``); the registry's id.
    kind: str
    id: str
    version: str
    distribution: Literal["npx", "uvx", "binary"]
    package: str
    #: The command sessions run, in the daemon's data dir.
    path: str
    args: list[str]
    license: str
    registry: str
    registry_date: str | None
    installed_at: str


class AgentInstallResult(Result):
    agent: InstalledAgentInfo
    #: The version it replaced, if another one was installed.
    previous_version: str | None = None


class AgentUpdateResult(Result):
    #: The agents installed anew (a newer version in the registry).
    updated: list[AgentInstallResult]
    #: The ids already at the registry's version.
    unchanged: list[str]


class AgentRemoveResult(Result):
    kind: str
    id: str
    version: str
    path: str
