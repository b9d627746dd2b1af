"""The ACP Registry's manifests: where agents come from and how to install them.

A snapshot of the registry (github.com/agentclientprotocol/registry, Apache-2.0) ships
with Mimir as package data (``registry_snapshot/registry.json``, with its date and
source commit); ``--registry FILE|URL`` reads another one in the same format, the
aggregated ``{"version", "agents": [...]}`` index or a single ``agent.json``.

Everything in a manifest is hostile: ids and versions become directory names,
package names become command-line arguments, archive entries become files. Each is
checked here, bounded, before anything uses it (:class:`~mimird.errors.InvalidParams`
saying which field of which agent was wrong). Sync (files, HTTP): run in a thread.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

from mimird.errors import InvalidParams

#: A registry index is a few kilobytes per agent; anything much larger is not one.
MAX_REGISTRY_BYTES: Final = 4 * 1024 * 1024
MAX_AGENTS: Final = 1000
REGISTRY_FETCH_TIMEOUT_S: Final = 30.0
MAX_ARGS: Final = 64
MAX_ENV: Final = 64
MAX_TEXT: Final = 4096
MAX_URL: Final = 2048

ID_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,63}")
#: Semantic versions, as the registry's schema says, with a bounded suffix; never a
#: path separator, and never "." or ".." since it starts with a digit.
VERSION_RE: Final = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.+-]{0,40}")
NPM_NAME_RE: Final = re.compile(r"(@[a-z0-9][a-z0-9._-]{0,100}/)?[a-z0-9][a-z0-9._-]{0,100}")
PYPI_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")
ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
PLATFORMS: Final = frozenset(
    f"{system}-{machine}"
    for system in ("darwin", "linux", "windows")
    for machine in ("aarch64", "x86_64")
)

Kind = Literal["npx", "uvx", "binary"]
#: The order a distribution is chosen in when a manifest offers several.
KINDS: Final[tuple[Kind, ...]] = ("binary", "npx", "uvx")


@dataclass(frozen=True, slots=True)
class Distribution:
    kind: Kind
    #: npx/uvx: the package name, without a version.
    package: str = ""
    #: binary: the archive's URL, its sha256 when the manifest gives one, and the
    #: command inside it (a relative path, checked).
    archive: str = ""
    sha256: str | None = None
    cmd: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Manifest:
    id: str
    name: str
    version: str
    license: str
    description: str
    #: The distributions this platform can use, by kind.
    distributions: dict[Kind, Distribution]


@dataclass(frozen=True, slots=True)
class Registry:
    #: Where it was read from: "snapshot", a file path or a URL.
    source: str
    #: The snapshot's date (YYYY-MM-DD), or None when the file does not say.
    date: str | None
    commit: str | None
    agents: dict[str, Manifest]

    def find(self, name: str) -> Manifest:
        check_id(name, "name")
        manifest = self.agents.get(name)
        if manifest is None:
            known = ", ".join(sorted(self.agents)) or "none"
            raise InvalidParams(
                f"no agent {name!r} in the registry ({self.label()}); it has: {known}",
                field="name",
            )
        return manifest

    def label(self) -> str:
        if self.source != "snapshot":
            return self.source
        return "Mimir's snapshot" + (f" of {self.date}" if self.date else "")


def platform_key() -> str:
    """This machine as the registry names platforms: ``linux-x86_64`` etc."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return f"{system}-{machine}"


def check_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise InvalidParams(
            f"{where}: {_show(value)} is not an agent id (lowercase letters, digits and "
            "hyphens, starting with a letter, at most 64)",
            field=where,
        )
    return value


def check_version(value: object, where: str) -> str:
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):
        raise InvalidParams(
            f"{where}: {_show(value)} is not a version (MAJOR.MINOR.PATCH with an optional "
            "suffix of letters, digits, '.', '+' or '-', at most 60 characters)",
            field=where,
        )
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value: object, where: str, *, default: str | None = None, limit: int = MAX_TEXT) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidParams(f"{where}: expected a string of at most {limit} characters")
    return value


def _args(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ARGS:
        raise InvalidParams(f"{where}: expected a list of at most {MAX_ARGS} strings")
    return tuple(_text(a, f"{where}[{i}]") for i, a in enumerate(value))


def _env(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ENV:
        raise InvalidParams(f"{where}: expected an object of at most {MAX_ENV} variables")
    env: dict[str, str] = {}
    for key, val in value.items():
        if not ENV_NAME_RE.fullmatch(key):
            raise InvalidParams(f"{where}: {_show(key)} is not an environment variable name")
        env[key] = _text(val, f"{where}.{key}")
    return env


def split_package(spec: object, kind: Kind, where: str) -> tuple[str, str | None]:
    """(name, version or None) of an npm ``name@version`` or a PyPI ``name==version``
    / ``name@version`` package spec, both checked."""
    text = _text(spec, where, limit=300)
    name, version = text, None
    at = text.rfind("@")
    if at > 0:
        name, version = text[:at], text[at + 1 :]
    elif kind == "uvx" and "==" in text:
        name, version = text.split("==", 1)
    pattern = NPM_NAME_RE if kind == "npx" else PYPI_NAME_RE
    if not pattern.fullmatch(name):
        raise InvalidParams(f"{where}: {_show(name)} is not a package name", field=where)
    if version is not None:
        check_version(version, where)
    return name, version


def relative_command(value: object, where: str) -> str:
    """A binary's ``cmd``: a relative path inside the archive, without '..'."""
    text = _text(value, where, limit=255)
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts or "\\" in text:
        raise InvalidParams(f"{where}: {_show(text)} must be a relative path inside the archive")
    parts = [p for p in path.parts if p != "."]
    if not parts:
        raise InvalidParams(f"{where}: {_show(text)} names no file")
    return "/".join(parts)


def _distribution(kind: Kind, raw: object, where: str) -> Distribution | None:
    if not isinstance(raw, dict):
        raise InvalidParams(f"{where}: expected an object")
    if kind in ("npx", "uvx"):
        name, _ = split_package(raw.get("package"), kind, f"{where}.package")
        return Distribution(
            kind, package=name, args=_args(raw.get("args"), f"{where}.args"),
            env=_env(raw.get("env"), f"{where}.env"),
        )  # fmt: skip
    for key in raw:
        if key not in PLATFORMS:
            raise InvalidParams(f"{where}: {_show(key)} is not a platform")
    target = raw.get(platform_key())
    if target is None:
        return None
    where = f"{where}.{platform_key()}"
    if not isinstance(target, dict):
        raise InvalidParams(f"{where}: expected an object")
    archive = _text(target.get("archive"), f"{where}.archive", limit=MAX_URL)
    if not archive.startswith(("https://", "http://")):
        raise InvalidParams(f"{where}.archive: only http(s) URLs are downloaded")
    sha = target.get("sha256")
    if sha is not None and not (isinstance(sha, str) and SHA256_RE.fullmatch(sha.lower())):
        raise InvalidParams(f"{where}.sha256: expected 64 hex digits")
    return Distribution(
        "binary",
        archive=archive,
        sha256=sha.lower() if isinstance(sha, str) else None,
        cmd=relative_command(target.get("cmd"), f"{where}.cmd"),
        args=_args(target.get("args"), f"{where}.args"),
        env=_env(target.get("env"), f"{where}.env"),
    )


def parse_manifest(raw: object, where: str = "agent") -> Manifest:
    """One ``agent.json``, checked. Raises :class:`InvalidParams` saying what is wrong."""
    if not isinstance(raw, dict):
        raise InvalidParams(f"{where}: expected an object")
    agent_id = check_id(raw.get("id"), f"{where}.id")
    where = f"agent {agent_id}"
    dists = raw.get("distribution")
    if not isinstance(dists, dict) or not dists:
        raise InvalidParams(f"{where}: distribution: expected an object with npx, uvx or binary")
    found: dict[Kind, Distribution] = {}
    for kind in KINDS:
        if kind in dists:
            dist = _distribution(kind, dists[kind], f"{where}: distribution.{kind}")
            if dist is not None:
                found[kind] = dist
    return Manifest(
        id=agent_id,
        name=_text(raw.get("name"), f"{where}: name", default=agent_id, limit=200),
        version=check_version(raw.get("version"), f"{where}: version"),
        license=_text(raw.get("license"), f"{where}: license", default="", limit=200),
        description=_text(raw.get("description"), f"{where}: description", default=""),
        distributions=found,
    )


def parse_registry(data: bytes, source: str) -> Registry:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidParams(f"registry {source}: not JSON ({exc})", field="registry") from None
    if isinstance(raw, dict) and "id" in raw and "agents" not in raw:
        raw = {"agents": [raw]}
    if not isinstance(raw, dict) or not isinstance(raw.get("agents"), list):
        raise InvalidParams(
            f"registry {source}: expected the registry index (an object with 'agents') "
            "or an agent.json",
            field="registry",
        )
    if len(raw["agents"]) > MAX_AGENTS:
        raise InvalidParams(f"registry {source}: more than {MAX_AGENTS} agents", field="registry")
    meta = raw["mimir"] if isinstance(raw.get("mimir"), dict) else {}
    agents: dict[str, Manifest] = {}
    for i, entry in enumerate(raw["agents"]):
        manifest = parse_manifest(entry, f"registry {source}: agents[{i}]")
        agents[manifest.id] = manifest
    date, commit = meta.get("date"), meta.get("commit")
    return Registry(
        source=source,
        date=date if isinstance(date, str) and re.fullmatch(r"[0-9-]{10}", date) else None,
        commit=commit
        if isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit)
        else None,
        agents=agents,
    )


def _read_bounded(stream: Any, source: str) -> bytes:
    data: bytes = stream.read(MAX_REGISTRY_BYTES + 1)
    if len(data) > MAX_REGISTRY_BYTES:
        raise InvalidParams(
            f"registry {source}: larger than {MAX_REGISTRY_BYTES} bytes", field="registry"
        )
    return data


@functools.cache
def snapshot() -> Registry:
    """The registry snapshot that ships with Mimir (read once)."""
    data = resources.files("mimird.agents").joinpath("registry_snapshot/registry.json")
    return parse_registry(data.read_bytes(), "snapshot")


def load_registry(source: str | None) -> Registry:
    """The snapshot (``None``), a registry file, or an http(s) URL."""
    if source is None:
        return snapshot()
    if len(source) > MAX_URL or "\x00" in source:
        raise InvalidParams("registry: expected a file path or a URL", field="registry")
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=REGISTRY_FETCH_TIMEOUT_S) as response:
                return parse_registry(_read_bounded(response, source), source)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise InvalidParams(
                f"registry {source}: cannot fetch it ({exc})", field="registry"
            ) from None
    path = Path(source).expanduser()
    if not path.is_absolute():
        raise InvalidParams(
            f"registry {source!r}: give an absolute path (mimirctl makes it one) or a URL",
            field="registry",
        )
    try:
        with path.open("rb") as stream:
            return parse_registry(_read_bounded(stream, source), str(path))
    except OSError as exc:
        raise InvalidParams(
            f"registry {source}: cannot read it ({exc.strerror})", field="registry"
        ) from None
