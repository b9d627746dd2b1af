"""Test helpers: daemons in temporary directories, in-process or as real processes,
and small socket clients (blocking and trio)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from mimird.config import Overrides, Settings, load_settings
from mimird.daemon import Running, run_daemon
from mimird.rpc.server import CredentialsFn, peer_credentials
from mimird.workspaces import git as worktrees_git

READY_TIMEOUT_S = 20.0
GIT_TIMEOUT_S = 30.0
#: The tests' own git: no user or system configuration, and an identity for commits.
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    # Reading (`git status`) must not refresh the index the tests compare byte for byte.
    "GIT_OPTIONAL_LOCKS": "0",
}
GIT_IDENTITY = (
    "-c",
    "user.name=Test",
    "-c",
    "user.email=test@mimir.invalid",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "advice.detachedHead=false",
)
#: What make_repo commits unless told otherwise.
README = "hello\n"
APP = "def main():\n    return 1\n"


@dataclass
class DaemonDirs:
    """A daemon's whole world inside one short temporary directory (Unix socket
    paths are limited to 107 bytes, so pytest's long tmp_path is not used)."""

    root: Path

    @property
    def runtime(self) -> Path:
        return self.root / "run"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def socket(self) -> Path:
        return self.runtime / "mimird.sock"

    @property
    def database(self) -> Path:
        return self.data / "mimir.db"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a mimird or mimirctl subprocess living in these dirs."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MIMIR_", "XDG_", "NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_"))
        }
        env.update(
            HOME=str(self.root / "home"),
            MIMIR_RUNTIME_DIR=str(self.runtime),
            MIMIR_DATA_DIR=str(self.data),
            MIMIR_STATE_DIR=str(self.state),
            PYTHONUNBUFFERED="1",
        )
        # Only once written: a config file named explicitly must exist.
        if self.config.exists():
            env["MIMIR_CONFIG"] = str(self.config)
        env.update(extra)
        return env

    def settings(self, **extra_env: str) -> Settings:
        return load_settings(Overrides(), self.env(**extra_env))


@contextlib.contextmanager
def short_tmpdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mimir-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---- in-process daemon -----------------------------------------------------------


@dataclass
class InProcessDaemon:
    dirs: DaemonDirs
    running: Running
    shutdown: trio.Event

    @property
    def socket(self) -> Path:
        return self.running.socket_path


@contextlib.asynccontextmanager
async def in_process_daemon(
    dirs: DaemonDirs,
    *,
    credentials: CredentialsFn = peer_credentials,
    settings: Settings | None = None,
) -> AsyncIterator[InProcessDaemon]:
    settings = settings or dirs.settings()
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(
            lambda task_status: run_daemon(
                settings, shutdown, credentials=credentials, task_status=task_status
            )
        )
        try:
            yield InProcessDaemon(dirs=dirs, running=running, shutdown=shutdown)
        finally:
            shutdown.set()


# ---- clients ---------------------------------------------------------------------


class TrioClient:
    """A line-oriented client on a trio socket stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._ids = itertools.count(1)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, path: Path) -> AsyncIterator[TrioClient]:
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            yield cls(stream)

    async def send_line(self, data: bytes) -> None:
        await self.stream.send_all(data + b"\n")

    async def read_line(self) -> bytes | None:
        """The next line without its newline, or None at EOF."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self._buffer += data

    async def lines_until_closed(self, deadline_s: float = 10.0) -> list[bytes]:
        """Every line received until the daemon closes the connection.

        Linux reports ECONNRESET instead of EOF (after the queued data) when the
        daemon closes a socket that still holds unread input, so a reset counts as
        closed too."""
        lines = []
        with trio.fail_after(deadline_s):
            try:
                while (line := await self.read_line()) is not None:
                    lines.append(line)
            except trio.BrokenResourceError:
                pass
        return lines

    async def read_json(self) -> Any:
        line = await self.read_line()
        assert line is not None, "connection closed before a response arrived"
        return msgspec.json.decode(line)

    async def call_raw(self, method: str, params: Any = None) -> dict[str, Any]:
        """The whole response object."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        await self.send_line(msgspec.json.encode(request))
        response: dict[str, Any] = await self.read_json()
        return response

    async def call(self, method: str, params: Any = None) -> Any:
        response = await self.call_raw(method, params)
        assert "error" not in response, response
        return response["result"]


def blocking_call(path: Path, method: str, params: Any = None, timeout: float = 10) -> Any:
    """One request on a fresh blocking connection; returns the whole response."""
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        request["params"] = params
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(msgspec.json.encode(request) + b"\n")
        with sock.makefile("rb") as f:
            return msgspec.json.decode(f.readline())


def rpc(dirs: DaemonDirs, method: str, params: Any = None, *, timeout: float = 30) -> Any:
    """A call on a fresh blocking connection that must succeed; its result."""
    response = blocking_call(dirs.socket, method, params, timeout=timeout)
    assert "error" not in response, response
    return response["result"]


def add_project_blocking(dirs: DaemonDirs, path: Path, **params: Any) -> dict[str, Any]:
    """Register ``path`` as a project from a test that is not async (``params``: the
    other fields of project.add); the project. Async tests use :func:`add_project`."""
    project: dict[str, Any] = rpc(dirs, "project.add", {"path": str(path), **params})
    return project


# ---- real daemon processes -------------------------------------------------------


@dataclass
class DaemonProcess:
    dirs: DaemonDirs
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"mimird exited with {self.proc.returncode} before it was ready:\n{self.stderr}"
                )
            try:
                response = blocking_call(self.dirs.socket, "daemon.status", timeout=2)
            except OSError:
                time.sleep(0.05)
                continue
            if response.get("result", {}).get("pid") == self.proc.pid:
                return
            time.sleep(0.05)
        raise AssertionError(f"mimird not ready after {timeout}s:\n{self.stderr}")

    def terminate(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_daemon_process(
    dirs: DaemonDirs, *args: str, env: dict[str, str] | None = None, wait: bool = True
) -> DaemonProcess:
    dirs.root.mkdir(parents=True, exist_ok=True)
    stderr_path = dirs.root / f"mimird-{time.monotonic_ns()}.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mimird", "--log-format", "json", *args],
            env=env or dirs.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    daemon = DaemonProcess(dirs=dirs, proc=proc, stderr_path=stderr_path, args=list(args))
    if wait:
        try:
            daemon.wait_ready()
        except BaseException:
            daemon.kill()
            raise
    return daemon


@contextlib.contextmanager
def daemon_process(
    dirs: DaemonDirs, *args: str, env: dict[str, str] | None = None
) -> Iterator[DaemonProcess]:
    daemon = start_daemon_process(dirs, *args, env=env)
    try:
        yield daemon
    finally:
        # Gracefully, so that it stops the agents it started (an agent that ignores
        # EOF would outlive a SIGKILLed daemon); SIGKILL if that does not work.
        try:
            daemon.terminate(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()


def run_mimirctl(
    dirs: DaemonDirs, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimirctl", *args],
        env=dirs.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def module_daemon_fixtures() -> tuple[Any, Any, Any]:
    """Fixtures for a test module whose tests share one real mimird process:
    ``ctl_dirs`` and ``mimird_process`` (module-scoped) and ``dirs`` (the
    module's directories, with the daemon running), replacing conftest's
    per-test ``dirs``. Assign them at module level::

        ctl_dirs, mimird_process, dirs = module_daemon_fixtures()
    """

    @pytest.fixture(scope="module")
    def ctl_dirs() -> Iterator[DaemonDirs]:
        with short_tmpdir() as root:
            dirs = DaemonDirs(root)
            # dirs.env() names this file explicitly, and mimird refuses a missing one.
            dirs.config.write_text("")
            (dirs.root / "home").mkdir()
            yield dirs

    @pytest.fixture(scope="module")
    def mimird_process(ctl_dirs: DaemonDirs) -> Iterator[DaemonProcess]:
        with daemon_process(ctl_dirs) as process:
            yield process

    @pytest.fixture
    def dirs(ctl_dirs: DaemonDirs, mimird_process: DaemonProcess) -> DaemonDirs:
        """The module's daemon directories, with the daemon running."""
        return ctl_dirs

    return ctl_dirs, mimird_process, dirs


# ---- git repositories ------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    """Run the tests' own git (see GIT_ENV, GIT_IDENTITY); its stdout. Fails the test
    with git's message if git fails."""
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args],
        cwd=cwd,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=GIT_TIMEOUT_S,
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def count_git_calls(monkeypatch: pytest.MonkeyPatch, *modules: Any) -> list[str]:
    """The git subcommands Mimir runs from now on (``rev-parse``, ``add``, ...), in
    order: each of ``modules`` (mimird.workspaces.git and those that import its
    ``_run``) runs git through a counter until the test ends."""
    calls: list[str] = []
    real = worktrees_git._run

    def counted(cwd: Path, args: Sequence[str], **kwargs: Any) -> tuple[int, str, str]:
        calls.append(next(a for a in args if not a.startswith("-") and "=" not in a))
        return real(cwd, args, **kwargs)

    for module in modules or (worktrees_git,):
        monkeypatch.setattr(module, "_run", counted)
    return calls


def write(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Write ``files`` (relative path → text or bytes) under ``root``."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def make_repo(
    path: Path,
    files: Mapping[str, str | bytes] | None = None,
    *,
    commit: bool = True,
) -> Path:
    """A git repository on branch main holding ``files`` (README.md and src/app.py if
    None), committed unless ``commit`` is false; its resolved root."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    write(path, files if files is not None else {"README.md": README, "src/app.py": APP})
    if commit:
        git(path, "add", "-A")
        git(path, "commit", "-q", "--allow-empty", "-m", "initial")
    return path.resolve()


async def add_project(client: TrioClient, path: Path, **params: Any) -> dict[str, Any]:
    """Register ``path`` as a project over ``client``'s connection (``params``: the
    other fields of project.add); the project."""
    with trio.fail_after(READY_TIMEOUT_S):
        result: dict[str, Any] = await client.call("project.add", {"path": str(path), **params})
    return result
