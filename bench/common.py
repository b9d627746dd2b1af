"""What the benchmarks share: a daemon's environment inside a temp dir, the
installed commands, a mimird process started and stopped, git with a fixed
identity, CPU time of a process's threads, percentiles, the report written out.
Imported by the bench scripts, which run as ``python bench/<name>.py`` (so this
directory is on sys.path)."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

BIN_DIR: Final = Path(sys.executable).parent
#: Environment variables of the caller that must not leak into the daemon under test.
FOREIGN_ENV: Final = ("MIMIR_", "XDG_", "NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_", "GIT_")
#: How long a stopping mimird gets after SIGTERM before it is killed.
STOP_TIMEOUT_S: Final = 30.0
GIT_ENV: Final = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def mimir_env(root: Path) -> dict[str, str]:
    """The environment of a mimird (and its mimirctl) living entirely inside ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    env.update(
        HOME=str(root / "home"),
        MIMIR_RUNTIME_DIR=str(root / "run"),
        MIMIR_DATA_DIR=str(root / "data"),
        MIMIR_STATE_DIR=str(root / "state"),
    )
    return env


def installed(command: str) -> list[str]:
    """The console script next to this interpreter (the venv's), else ``python -m``."""
    script = BIN_DIR / command
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", command]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


@contextlib.contextmanager
def mimird_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The installed mimird, its output in ``log_path``; SIGTERM (then SIGKILL) at the end."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*installed("mimird"), "--log-level", "warning"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the bench reaches mimird only through us
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()


class DaemonClient(Protocol):
    """What :func:`wait_ready` needs of a bench's daemon handle."""

    proc: subprocess.Popen[bytes]
    socket_path: Path
    sock: Any

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

    def log_tail(self, lines: int = 20) -> str: ...


def wait_ready(daemon: DaemonClient, timeout_s: float) -> None:
    """Call daemon.status until this daemon (by pid) answers on its socket."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(
                f"mimird exited with {daemon.proc.returncode} before it was ready:\n"
                + daemon.log_tail()
            )
        try:
            status = daemon.call("daemon.status")
        except (OSError, RuntimeError, msgspec.DecodeError):
            if daemon.sock is not None:
                daemon.sock.close()
                daemon.sock = None
            time.sleep(0.05)
            continue
        if status["pid"] != daemon.proc.pid:
            raise RuntimeError(f"another mimird answers on {daemon.socket_path}")
        return
    raise RuntimeError(f"mimird not ready after {timeout_s}s:\n{daemon.log_tail()}")


def log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def threads_cpu_ns(pid: int) -> int:
    """CPU time so far of a process's threads (nanoseconds, from each one's schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a worker thread that just exited
            total += int((task / "schedstat").read_text().split()[0])
    return total


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def write_report(
    report: Any, text: str, out_dir: Path, name: str, started: datetime.datetime
) -> Path:
    """Print the human table, then keep the whole report as
    ``<out_dir>/<name>-<UTC timestamp>.json``; returns that file."""
    print()
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    print(f"\nwrote {out}")
    return out
