#!/usr/bin/env python3
"""A fork server for ``make mutate``: pytest's start (importing pytest, its plugins,
trio, SQLAlchemy, GitPython, hypothesis…: ~1.6 s of a ~2 s run of one short test
here) is paid once, not once per mutant.

    mutate_forkserver.py serve SOCKET          # .ci/mutate starts it, then stops it
    mutate_forkserver.py run SOCKET JOBS TESTS -- OPTIONS
        # pytest OPTIONS over the node ids in the file TESTS, in JOBS forks at once,
        # each given every JOBS-th test; exits 0 if all pass, else the first failure's
        # status (the other forks are stopped then)

The server imports only third-party modules, never ``mimird`` or ``tests``: each run
is a fresh fork that imports the (mutated) product from disk, as a new pytest
process would. The forks of one run test the same mutant (it is on disk until the
run ends), so splitting the tests between them changes no verdict: a failure in
any is a failure of the run. Each fork gets the client's stdin/stdout/stderr and
its own session, killed if the client goes away (mutmut's timeout).

When the server cannot be reached, ``run`` execs pytest itself: slower, never a
false result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import sys
from collections.abc import Iterable
from typing import Any

#: What ``serve`` imports before forking: everything heavy the tests import that is
#: not ours. (Only modules; nothing is started: no thread, no trio run.)
PRELOAD = (
    "pytest",
    "_pytest.python",
    "_pytest.terminal",
    "pytest_trio",
    "pytest_timeout",
    "hypothesis",
    "trio",
    "trio.testing",
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "alembic",
    "git",
    "msgspec",
    "structlog",
)


def serve(path: str) -> int:
    import importlib
    import threading

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if threading.active_count() != 1:
        print("mutate_forkserver: a preloaded module started a thread", file=sys.stderr)
        return 1
    # Stopped (SIGTERM) while a run goes on: its forks are stopped too (finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    while True:
        conn, _ = server.accept()
        with conn:
            _one_run(conn)


def _one_run(conn: socket.socket) -> None:
    import json
    import select

    msg, fds, _, _ = socket.recv_fds(conn, 1 << 22, 3)
    if len(fds) != 3:
        return
    request = json.loads(msg.decode())
    tests: list[str] = request["tests"]
    jobs = max(1, min(int(request["jobs"]), len(tests)))
    # Round-robin over tests sorted fastest first: each share stays fastest first,
    # and the shares take about as long as each other.
    children = [
        _fork_pytest(request, fds, [*request["options"], *tests[job::jobs]]) for job in range(jobs)
    ]
    for fd in fds:
        os.close(fd)
    status = 0
    running = set(children)
    try:
        while running:
            for pid in list(running):
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    continue
                # Exited but not reaped yet: its session id cannot be anyone else's, so
                # what it left in its session (it should leave nothing) can be killed.
                _kill([pid])
                _, status_word = os.waitpid(pid, 0)
                running.discard(pid)
                code = os.waitstatus_to_exitcode(status_word)
                if code != 0 and status == 0:
                    # One share failed: the mutant is killed, the rest need not run.
                    status = code if code > 0 else 128 - code
                    _kill(running)
            if not running:
                break
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and not conn.recv(1):  # the client went away: so does the run
                return
        with contextlib.suppress(OSError):
            conn.sendall(struct.pack("!i", status))
    finally:
        # A run cut short (its client gone, the server stopped): its forks, never
        # reaped yet, so their session ids are still theirs.
        _kill(running)
        for pid in running:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _kill(sessions: Iterable[int]) -> None:

    for pid in sessions:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _fork_pytest(request: dict[str, Any], fds: list[int], args: list[str]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["pytest", *args]
        import pytest

        code = int(pytest.main(args))
    except BaseException as exc:
        print(f"mutate_forkserver: {exc!r}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run(path: str, jobs: int, tests_file: str, options: list[str]) -> int:
    import json

    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:
        client.close()
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *options, f"@{tests_file}"])
    with open(tests_file) as f:
        tests = [line.strip() for line in f if line.strip()]
    request = json.dumps(
        {
            "options": options,
            "tests": tests,
            "jobs": jobs,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
        }
    )
    socket.send_fds(client, [request.encode()], [0, 1, 2])
    reply = b""
    while len(reply) < 4:
        chunk = client.recv(4 - len(reply))
        if not chunk:
            print("mutate_forkserver: the server went away", file=sys.stderr)
            return 1
        reply += chunk
    return int(struct.unpack("!i", reply)[0])


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "serve":
        return serve(argv[1])
    if len(argv) >= 5 and argv[0] == "run" and argv[4] == "--":
        return run(argv[1], int(argv[2]), argv[3], argv[5:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
