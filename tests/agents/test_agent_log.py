"""The bounded per-session stderr log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from mimird.agents.stderr_log import BoundedLog, pump


def test_the_log_never_holds_more_than_its_cap_plus_one_rotated_file(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "s.log", max_bytes=1000)
    for i in range(500):
        log.write(f"line {i:04d}\n".encode())
    assert log.path.stat().st_size <= 1000
    assert log.rotated.stat().st_size <= 1000
    assert log.tail(2) == ["line 0498", "line 0499"]


def test_a_write_larger_than_the_cap_keeps_its_end(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "s.log", max_bytes=100)
    log.write(b"x" * 1000 + b"\nthe end\n")
    assert log.path.stat().st_size <= 100
    assert log.tail(1) == ["the end"]


def test_tail_reads_across_the_rotation(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "s.log", max_bytes=12)
    log.write(b"first line\n")
    log.write(b"second\n")
    assert log.tail(2) == ["first line", "second"]


def test_the_log_file_is_private(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "logs" / "s.log")
    log.write(b"secret-ish\n")
    assert log.path.stat().st_mode & 0o777 == 0o600
    assert log.path.parent.stat().st_mode & 0o777 == 0o700


async def test_pump_drains_a_child_that_writes_more_than_a_pipe_holds(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "s.log", max_bytes=64 * 1024)
    # 1 MiB on stderr: more than a pipe buffer, so the child would block undrained.
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", "import sys; sys.stderr.write('e' * 1048576 + '\\ndone\\n')"],
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    with trio.fail_after(20):
        await pump(process.stderr, log)
        assert await process.wait() == 0
    assert log.tail(1) == ["done"]
    assert log.path.stat().st_size <= 64 * 1024


SECRET = "sk-wörd-9c1d"


def test_secrets_are_masked_in_the_file_also_split_across_writes(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "s.log", secrets={SECRET})
    data = f"token {SECRET} and {SECRET} end\n".encode()
    cut = data.index("ö".encode()) + 1  # inside the two bytes of "ö" of the first secret
    log.write(data[:cut])
    log.write(data[cut:])
    log.flush()
    text = log.path.read_text()
    assert "9c1d" not in text
    assert text == "token ****** and *** end\n"  # each piece masked in its own write


def test_masking_keeps_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "s.log", secrets={SECRET})
    log.write(b"\xff\xfe raw " + SECRET.encode() + b" \x80\n")
    log.flush()
    assert log.path.read_bytes() == b"\xff\xfe raw *** \x80\n"


async def test_pump_writes_what_the_masker_held_when_the_stream_ends(tmp_path: Path) -> None:
    log = BoundedLog(tmp_path / "s.log", secrets={SECRET})
    # Ends with the start of the secret: held back until the stream ends, then written.
    script = f"import sys; sys.stderr.write({'last words sk-w'!r}); sys.stderr.flush()"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", script], stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    with trio.fail_after(20):
        await pump(process.stderr, log)
        assert await process.wait() == 0
    assert log.path.read_text() == "last words sk-w"
