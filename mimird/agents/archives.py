"""Unpacking a downloaded agent archive, which is hostile input.

Only regular files and directories are unpacked, each under the target directory:
an entry with an absolute path, a ``..`` component, a link, a device or a FIFO
refuses the whole archive (:class:`ArchiveRefused`), as do more than
:data:`MAX_ENTRIES` entries or more than :data:`MAX_UNPACKED_BYTES` in all.
Permission bits are kept for the owner (an executable stays one), never set-id.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Final

MAX_ENTRIES: Final = 100_000
MAX_UNPACKED_BYTES: Final = 4 * 1024 * 1024 * 1024
TAR_SUFFIXES: Final = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar")


class ArchiveRefused(Exception):
    """The archive is not one Mimir unpacks (unknown format, or an unsafe entry)."""


def _target(root: Path, name: str) -> Path:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or name.startswith("/"):
        raise ArchiveRefused(f"entry {name[:200]!r} points outside the archive's directory")
    parts = [p for p in path.parts if p not in (".", "")]
    return root.joinpath(*parts) if parts else root


def _copy(source: IO[bytes], dest: Path, mode: int, budget: list[int]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        while chunk := source.read(1024 * 1024):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise ArchiveRefused(f"unpacks to more than {MAX_UNPACKED_BYTES} bytes")
            out.write(chunk)
    dest.chmod(0o755 if mode & stat.S_IXUSR else 0o644)


def _untar(archive: Path, root: Path) -> None:
    budget = [MAX_UNPACKED_BYTES]
    with tarfile.open(archive, "r:*") as tar:
        for count, member in enumerate(tar, 1):
            if count > MAX_ENTRIES:
                raise ArchiveRefused(f"more than {MAX_ENTRIES} entries")
            dest = _target(root, member.name)
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                with source:
                    _copy(source, dest, member.mode, budget)
            else:
                raise ArchiveRefused(
                    f"entry {member.name[:200]!r} is a link or a special file; "
                    "only files and directories are unpacked"
                )


def _unzip(archive: Path, root: Path) -> None:
    budget = [MAX_UNPACKED_BYTES]
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise ArchiveRefused(f"more than {MAX_ENTRIES} entries")
        for info in infos:
            dest = _target(root, info.filename)
            mode = info.external_attr >> 16
            # Zips made elsewhere than on Unix carry no file type (0): a file.
            if info.is_dir() or stat.S_ISDIR(mode):
                dest.mkdir(parents=True, exist_ok=True)
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                raise ArchiveRefused(
                    f"entry {info.filename[:200]!r} is a link or a special file; "
                    "only files and directories are unpacked"
                )
            else:
                with zf.open(info) as source:
                    _copy(source, dest, mode, budget)


def unpack(archive: Path, url: str, root: Path) -> None:
    """Unpack ``archive`` (its format told by ``url``'s suffix) into ``root``.
    Raises :class:`ArchiveRefused`; on failure ``root`` is removed."""
    name = url.split("?", 1)[0].lower()
    root.mkdir(parents=True, exist_ok=True)
    try:
        if name.endswith(".zip"):
            _unzip(archive, root)
        elif name.endswith(TAR_SUFFIXES):
            _untar(archive, root)
        else:
            raise ArchiveRefused(f"unknown archive type {url[:200]!r} (expected .tar.gz or .zip)")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise ArchiveRefused(f"cannot unpack it: {exc}") from None
    except ArchiveRefused:
        shutil.rmtree(root, ignore_errors=True)
        raise
