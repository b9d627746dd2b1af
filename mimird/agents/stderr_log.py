"""A bounded log file per session for what its agent writes on stderr.

Agents can be chatty, and a runaway one must not fill the disk: the file is
capped, and when it is full it becomes ``<name>.1`` (the one older generation
kept) and a new file starts. ``tail`` reads the last lines across both, for
failure messages ("exited with 1: <last lines>") and ``mimirctl logs``.

Secrets never reach the file: what is written goes through a
:class:`~mimird.secrets.ChunkMasker`, so that a secret split across two writes
(two reads of the pipe) is masked too. A write that ends with what could be the
start of a secret is held back until the next write or :meth:`BoundedLog.flush`.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import trio

from mimird.secrets import ChunkMasker

DEFAULT_MAX_BYTES: Final = 1024 * 1024
READ_CHUNK: Final = 64 * 1024


class BoundedLog:
    """Append-only, at most ``max_bytes`` in the current file plus one rotated file.

    Synchronous and not thread-safe: one writer (the pump) owns it."""

    def __init__(
        self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, secrets: Iterable[str] = ()
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self._masker: ChunkMasker[None] = ChunkMasker(secrets)
        self._masking = bool(set(secrets) - {""})
        # surrogateescape: bytes that are not UTF-8 reach the file unchanged, and a
        # character split across two writes is decoded whole.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def rotated(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def write(self, data: bytes | bytearray) -> None:
        """Append ``data``, secrets masked (maybe held back in part: see :meth:`flush`)."""
        if not self._masking:
            self._append(data)
            return
        released = self._masker.feed(None, self._decoder.decode(bytes(data)))
        self._append_texts(text for _, text in released)

    def flush(self) -> None:
        """Write what is held back (the stream has ended: no secret can complete)."""
        if not self._masking:
            return
        tail = self._decoder.decode(b"", final=True)
        released = self._masker.feed(None, tail) if tail else []
        self._append_texts(text for _, text in [*released, *self._masker.flush()])

    def _append_texts(self, texts: Iterable[str]) -> None:
        data = "".join(texts).encode("utf-8", errors="surrogateescape")
        if data:
            self._append(data)

    def _append(self, data: bytes | bytearray) -> None:
        while data:
            size = self.path.stat().st_size if self.path.exists() else 0
            room = self.max_bytes - size
            if room <= 0:
                os.replace(self.path, self.rotated)
                continue
            part, data = data[:room], data[room:]
            # 0o600: an agent's stderr may hold anything, secrets included.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, part)
            finally:
                os.close(fd)

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` lines (decoded leniently), oldest first."""
        text = b""
        for path in (self.rotated, self.path):
            try:
                text += path.read_bytes()
            except FileNotFoundError:
                continue
        found = text.decode("utf-8", errors="replace").splitlines()
        return found[-lines:] if lines > 0 else []


async def pump(stream: trio.abc.ReceiveStream, log: BoundedLog) -> None:
    """Copy ``stream`` (an agent's stderr) into ``log`` until it ends; the pipe is
    drained continuously, so the agent never blocks on a full stderr.

    Cancellation: what was received is in the log (a chunk is written whole, in a
    thread, and what the masker held back is written then); the rest of the stream
    is left unread."""
    try:
        while chunk := await stream.receive_some(READ_CHUNK):
            await trio.to_thread.run_sync(log.write, chunk)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(log.flush)
