"""Unpacking an agent's archive (hostile input): zip and tar alike, only files and
directories inside the target, executables kept executable, nothing left on refusal."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from mimird.agents.archives import ArchiveRefused, unpack


def zip_of(path: Path, entries: dict[str, tuple[bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, (content, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, content)
    return path


def test_a_zip_unpacks_with_its_executable_bit(tmp_path: Path) -> None:
    archive = zip_of(
        tmp_path / "a.zip",
        {"agent": (b"#!/bin/sh\n", stat.S_IFREG | 0o755), "doc/README": (b"hi", 0o644)},
    )
    unpack(archive, "https://example.com/a.zip", tmp_path / "out")
    assert os.access(tmp_path / "out" / "agent", os.X_OK)
    assert (tmp_path / "out" / "doc" / "README").read_bytes() == b"hi"
    assert not os.access(tmp_path / "out" / "doc" / "README", os.X_OK)


@pytest.mark.parametrize("name", ["../escaped", "/abs/escaped", "a/../../escaped", "..\\escaped"])
def test_a_zip_entry_outside_the_directory_refuses_the_archive(tmp_path: Path, name: str) -> None:
    archive = zip_of(tmp_path / "a.zip", {"ok": (b"x", 0o644), name: (b"x", 0o644)})
    with pytest.raises(ArchiveRefused, match="outside"):
        unpack(archive, "https://example.com/a.zip", tmp_path / "out" / "in")
    assert not (tmp_path / "out" / "in").exists()
    assert not (tmp_path / "out" / "escaped").exists()
    assert not (tmp_path / "escaped").exists()


def test_a_zip_symlink_refuses_the_archive(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "a.zip", {"agent": (b"/bin/sh", stat.S_IFLNK | 0o777)})
    with pytest.raises(ArchiveRefused, match="link"):
        unpack(archive, "https://example.com/a.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_tar_hard_link_and_a_device_refuse_the_archive(tmp_path: Path) -> None:
    for kind in (tarfile.LNKTYPE, tarfile.CHRTYPE):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            entry = tarfile.TarInfo("agent")
            entry.type, entry.linkname = kind, "/etc/passwd"
            tar.addfile(entry)
        archive = tmp_path / "a.tar.gz"
        archive.write_bytes(buffer.getvalue())
        with pytest.raises(ArchiveRefused, match="link or a special file"):
            unpack(archive, "https://example.com/a.tar.gz?x=1", tmp_path / "out")


def test_an_unknown_archive_type_or_a_corrupt_archive_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "a.bin"
    junk.write_bytes(b"not an archive")
    with pytest.raises(ArchiveRefused, match="unknown archive type"):
        unpack(junk, "https://example.com/a.exe", tmp_path / "out")
    with pytest.raises(ArchiveRefused, match="cannot unpack"):
        unpack(junk, "https://example.com/a.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()
