"""What Mimir has installed: one small record per agent, ``agents/<id>/installed.json``.

The record is written last, atomically, after the agent's files are in place
(``agents/<id>/<version>/``), so an install cut short leaves no record and the agent
is not listed as installed. The resolver in :mod:`mimird.agents.presets` reads the
records; :mod:`mimird.agents.install` writes them. A record that cannot be read (or
was tampered with) is skipped, never trusted: its paths are checked again here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

import msgspec

from mimird.agents.registry import ID_RE, VERSION_RE

RECORD_NAME: Final = "installed.json"
MAX_RECORD_BYTES: Final = 64 * 1024


class InstalledAgent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    version: str
    distribution: Literal["npx", "uvx", "binary"]
    #: The package (npx, uvx) or archive URL (binary) it came from.
    package: str
    #: The command, relative to the version's directory.
    command: str
    args: list[str] = msgspec.field(default_factory=list)
    env: dict[str, str] = msgspec.field(default_factory=dict)
    license: str = ""
    description: str = ""
    #: The registry it came from ("snapshot", a file or a URL) and that registry's date.
    registry: str = "snapshot"
    registry_date: str | None = None
    #: When it was installed (UTC, ISO 8601).
    installed_at: str = ""

    def directory(self, agents_dir: Path) -> Path:
        return agents_dir / self.id / self.version

    def executable(self, agents_dir: Path) -> Path:
        return self.directory(agents_dir) / self.command


_decoder: Final = msgspec.json.Decoder(InstalledAgent)


def record_path(agents_dir: Path, agent_id: str) -> Path:
    return agents_dir / agent_id / RECORD_NAME


def _valid(record: InstalledAgent, agent_id: str) -> bool:
    parts = Path(record.command).parts
    return (
        record.id == agent_id
        and VERSION_RE.fullmatch(record.version) is not None
        and bool(parts)
        and not Path(record.command).is_absolute()
        and ".." not in parts
    )


def read_one(agents_dir: Path, agent_id: str) -> InstalledAgent | None:
    try:
        with record_path(agents_dir, agent_id).open("rb") as stream:
            data = stream.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            return None
        record = _decoder.decode(data)
    except (OSError, msgspec.DecodeError):
        return None
    return record if _valid(record, agent_id) else None


def read_installed(agents_dir: Path | None) -> dict[str, InstalledAgent]:
    """Every installed agent, by id (sync: reads files)."""
    if agents_dir is None:
        return {}
    try:
        names = sorted(os.listdir(agents_dir))
    except OSError:
        return {}
    found: dict[str, InstalledAgent] = {}
    for name in names:
        if ID_RE.fullmatch(name) and (record := read_one(agents_dir, name)) is not None:
            found[name] = record
    return found


def write_record(agents_dir: Path, record: InstalledAgent) -> None:
    """Replace the agent's record atomically (write, fsync, rename)."""
    path = record_path(agents_dir, record.id)
    tmp = path.with_name(f".{RECORD_NAME}.tmp")
    with tmp.open("wb") as stream:
        stream.write(msgspec.json.format(msgspec.json.encode(record)) + b"\n")
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)
