"""Installing an agent from its registry manifest into Mimir's data dir.

Every agent lives in ``<data dir>/agents/<id>/<version>/``, never anywhere global:

- ``npx``: ``npm install --prefix DIR --no-save <package>@<version>`` (pinned). npm runs
  the package's install scripts: the agent's own code runs as this user the moment a
  session starts it, so ``--ignore-scripts`` would gain no safety, and it breaks agents
  whose postinstall links their native binary (opencode-ai's does).
- ``uvx``: a venv in ``DIR/venv`` (this Python's ``venv``), ``pip install <package>==<version>``.
- ``binary``: the archive for this platform, downloaded (bounded), its sha256 checked when
  the manifest gives one (a mismatch is refused), unpacked safely
  (:mod:`mimird.agents.archives`), the command marked executable.

The files go into the version's directory (a version installed already is moved aside
and comes back if the install fails); the record (:mod:`mimird.agents.installed`) is
written last, so an agent half installed is never listed. Sync and long (a subprocess, a
download): the API runs it in a worker thread; every subprocess has a timeout and its
whole process group is killed when it passes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

import structlog

from mimird.agents import archives
from mimird.agents.installed import InstalledAgent, read_one, write_record
from mimird.agents.registry import Distribution, Manifest, Registry, check_version
from mimird.errors import AgentUnavailable, InvalidParams, NotFound
from mimird.processes import child_environment

log = structlog.get_logger("mimird.agents")

NPM_TIMEOUT_S: Final = 900.0
PIP_TIMEOUT_S: Final = 900.0
#: Each read of a download, and the whole of it (a server that drips is cut off).
DOWNLOAD_TIMEOUT_S: Final = 60.0
DOWNLOAD_DEADLINE_S: Final = 1800.0
MAX_DOWNLOAD_BYTES: Final = 1024 * 1024 * 1024
#: How often a running tool or download looks whether the install was called off.
STOP_POLL_S: Final = 0.2
#: How much of a failed tool's output goes into the error.
OUTPUT_TAIL: Final = 2000
BIN_NAME_RE: Final = re.compile(r"[A-Za-z0-9@_][A-Za-z0-9@._-]{0,99}")
#: Settings npm and pip read from the environment (registry mirrors, proxies, caches).
_TOOL_ENV_PREFIXES: Final = ("npm_config_", "NPM_CONFIG_", "PIP_", "UV_")
_TOOL_ENV_NAMES: Final = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}
    # The certificate authorities a network's TLS proxy needs them to trust.
    | {"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"}
)


def _tool_env() -> dict[str, str]:
    extra = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(_TOOL_ENV_PREFIXES) or k in _TOOL_ENV_NAMES
    }
    return child_environment(extra)


class InstallCancelled(Exception):
    """The install was called off (the daemon is stopping); its tool was killed."""


def _run(argv: list[str], *, timeout: float, what: str, stop: threading.Event) -> None:
    """Run a tool in its own process group; raise :class:`AgentUnavailable` with the
    tail of its output when it fails or its ``timeout`` passes, and
    :class:`InstallCancelled` once ``stop`` is set (the group killed either way)."""
    log.info("agent_install_step", command=argv[0], args=argv[1:])
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_tool_env(),
        start_new_session=True,
    ) as process:
        try:
            while True:
                try:
                    # Retrying communicate() after its timeout loses no output.
                    output, _ = process.communicate(timeout=STOP_POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    if stop.is_set():
                        raise InstallCancelled(what) from None
                    if time.monotonic() > deadline:
                        raise AgentUnavailable(
                            f"{what}: did not finish within {timeout:.0f} s"
                        ) from None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # it, or what it left behind
            if process.returncode is None:
                process.communicate()
    if process.returncode != 0:
        tail = output.decode("utf-8", "replace")[-OUTPUT_TAIL:].strip()
        raise AgentUnavailable(f"{what}: failed (exit {process.returncode}): {tail}")


def _need(tool: str, name: str, how: str) -> str:
    path = os.environ.get("PATH", os.defpath)
    found = shutil.which(tool, path=path)
    if found is None:
        raise AgentUnavailable(
            f"cannot install {name}: {tool!r} is not on mimird's PATH ({path}); {how}",
            field="name",
            id=name,
        )
    return found


_NODE_HOW: Final = (
    "its npx distribution needs Node.js 18 or later with npm: install them (Debian/Ubuntu: "
    "'sudo apt install nodejs npm', or from https://nodejs.org), then restart mimird so that "
    "node and npm are on its PATH"
)


def _npm(dist: Distribution, version: str, stage: Path, name: str, stop: threading.Event) -> str:
    npm = _need("npm", name, _NODE_HOW)
    _need("node", name, _NODE_HOW)
    spec = f"{dist.package}@{version}"
    _run(
        [npm, "install", "--prefix", str(stage), "--no-save", "--no-audit", "--no-fund",
         "--no-update-notifier", "--loglevel=error", spec],
        timeout=NPM_TIMEOUT_S,
        what=f"npm install {spec}",
        stop=stop,
    )  # fmt: skip
    try:
        meta = json.loads((stage / "node_modules" / dist.package / "package.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise AgentUnavailable(f"npm installed {spec} but its package.json: {exc}") from None
    bins = meta.get("bin") if isinstance(meta, dict) else None
    short = dist.package.rsplit("/", 1)[-1]
    if isinstance(bins, str):
        bins = {short: bins}
    if not isinstance(bins, dict) or not bins:
        raise AgentUnavailable(f"{spec} has no command (no 'bin' in its package.json)")
    names = [b for b in bins if isinstance(b, str) and BIN_NAME_RE.fullmatch(b)]
    pick = next((b for b in (short, name) if b in names), None) or min(names, default=None)
    if pick is None:
        raise AgentUnavailable(f"{spec}: its 'bin' names no usable command")
    return f"node_modules/.bin/{pick}"


def _pip(dist: Distribution, version: str, stage: Path, name: str, stop: threading.Event) -> str:
    venv = stage / "venv"
    spec = f"{dist.package}=={version}"
    _run(
        [sys.executable, "-m", "venv", str(venv)],
        timeout=PIP_TIMEOUT_S,
        what="python -m venv",
        stop=stop,
    )
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
         "--no-input", spec],
        timeout=PIP_TIMEOUT_S,
        what=f"pip install {spec}",
        stop=stop,
    )  # fmt: skip
    command = f"venv/bin/{dist.package}"
    if not (stage / command).is_file():
        scripts = sorted(p.name for p in (venv / "bin").iterdir() if p.name != "python")
        raise AgentUnavailable(
            f"pip installed {spec} but it has no command named {dist.package!r} "
            f"(its venv has: {', '.join(scripts)[:500]})"
        )
    return command


def _download(url: str, dest: Path, stop: threading.Event) -> str:
    """Download ``url`` to ``dest`` (bounded); its sha256."""
    digest = hashlib.sha256()
    size = 0
    deadline = time.monotonic() + DOWNLOAD_DEADLINE_S
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            dest.open("wb") as out,
        ):
            while chunk := response.read(1024 * 1024):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise AgentUnavailable(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
                if stop.is_set():
                    raise InstallCancelled(f"download of {url}")
                if time.monotonic() > deadline:
                    raise AgentUnavailable(f"{url}: not downloaded in {DOWNLOAD_DEADLINE_S:.0f} s")
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AgentUnavailable(f"cannot download {url}: {exc}") from None
    return digest.hexdigest()


def _binary(dist: Distribution, stage: Path, name: str, stop: threading.Event) -> str:
    archive = stage.with_name(f".{stage.name}.download")
    try:
        log.info("agent_install_step", download=dist.archive)
        digest = _download(dist.archive, archive, stop)
        if dist.sha256 is not None and digest != dist.sha256:
            raise AgentUnavailable(
                f"{dist.archive}: sha256 {digest} is not the manifest's {dist.sha256}; refused",
                field="name",
                id=name,
            )
        try:
            archives.unpack(archive, dist.archive, stage)
        except archives.ArchiveRefused as exc:
            raise AgentUnavailable(f"{dist.archive}: refused: {exc}", field="name") from None
    finally:
        archive.unlink(missing_ok=True)
    command = stage / dist.cmd
    if command.is_symlink() or not command.is_file():
        raise AgentUnavailable(f"{dist.archive}: has no file {dist.cmd!r} (the manifest's cmd)")
    command.chmod(0o755)
    return dist.cmd


def choose(manifest: Manifest, version: str | None) -> tuple[Distribution, str]:
    """The distribution to install (binary, else npx, else uvx) and the version."""
    if not manifest.distributions:
        from mimird.agents.registry import platform_key

        raise AgentUnavailable(
            f"agent {manifest.id} has no distribution for this platform ({platform_key()})",
            field="name",
            id=manifest.id,
        )
    wanted = check_version(version, "version") if version is not None else manifest.version
    for dist in manifest.distributions.values():
        if dist.kind != "binary" or wanted == manifest.version:
            return dist, wanted
    raise InvalidParams(
        f"agent {manifest.id} is distributed as an archive of version {manifest.version} "
        f"only; the registry has no archive of {wanted}",
        field="version",
    )


def install(
    agents_dir: Path,
    registry: Registry,
    manifest: Manifest,
    version: str | None,
    stop: threading.Event | None = None,
) -> tuple[InstalledAgent, InstalledAgent | None]:
    """Install ``manifest``'s agent (``version`` or the manifest's): (the new record,
    the one it replaced). Setting ``stop`` (from another thread) calls it off: its
    tool is killed and :class:`InstallCancelled` raised, nothing installed. The
    previous version's other files are for :func:`prune` to remove."""
    stop = stop or threading.Event()
    dist, wanted = choose(manifest, version)
    home = agents_dir / manifest.id
    home.mkdir(parents=True, exist_ok=True)
    previous = read_one(agents_dir, manifest.id)
    # Built in place (a venv cannot move); a version installed already waits aside
    # until the new one is complete, and comes back if it fails.
    final = home / wanted
    aside = home / f".old-{secrets.token_hex(6)}"
    log.info("agent_install_started", agent=manifest.id, version=wanted, distribution=dist.kind)
    if final.exists():
        final.rename(aside)
    try:
        final.mkdir()
        if dist.kind == "npx":
            command = _npm(dist, wanted, final, manifest.id, stop)
        elif dist.kind == "uvx":
            command = _pip(dist, wanted, final, manifest.id, stop)
        else:
            command = _binary(dist, final, manifest.id, stop)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        if aside.exists():
            aside.rename(final)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    record = InstalledAgent(
        id=manifest.id,
        name=manifest.name,
        version=wanted,
        distribution=dist.kind,
        package=dist.archive if dist.kind == "binary" else dist.package,
        command=command,
        args=list(dist.args),
        env=dict(dist.env),
        license=manifest.license,
        description=manifest.description,
        registry=registry.source,
        registry_date=registry.date,
        installed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    write_record(agents_dir, record)
    log.info("agent_installed", agent=manifest.id, version=wanted, command=command)
    return record, previous


def prune(agents_dir: Path, agent_id: str, keep: set[str]) -> list[str]:
    """Remove the agent's versions that are neither installed nor in ``keep``
    (versions running sessions use); the versions removed."""
    record = read_one(agents_dir, agent_id)
    removed = []
    home = agents_dir / agent_id
    for entry in sorted(home.iterdir()) if home.is_dir() else []:
        if entry.name == "installed.json" or not entry.is_dir():
            continue
        if entry.name in keep or (record is not None and entry.name == record.version):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


def remove(agents_dir: Path, agent_id: str) -> InstalledAgent:
    """Remove an installed agent entirely: its record and every version."""
    record = read_one(agents_dir, agent_id)
    if record is None:
        raise NotFound(f"agent {agent_id!r} is not installed", field="name")
    (agents_dir / agent_id / "installed.json").unlink(missing_ok=True)
    shutil.rmtree(agents_dir / agent_id, ignore_errors=True)
    log.info("agent_removed", agent=agent_id, version=record.version)
    return record
