#!/usr/bin/env python3
"""A fork server for ``make mutate``: pytest's start (importing pytest, its plugins,
trio, SQLAlchemy, GitPython, hypothesis…: ~1.6 s of a ~2 s run of one short test
here) is paid once, not once per mutant.

    mutate_forkserver.py serve SOCKET          # .ci/mutate starts it, then stops it
    mutate_forkserver.py run SOCKET -- ARGS    # one pytest run; exits with pytest's status

The server imports only third-party modules, never ``mimird`` or ``tests``: each run
is a fresh fork that imports the (mutated) product from disk, as a new pytest
process would. The child gets the client's stdin/stdout/stderr and its own session,
and the whole session is killed if the client goes away (mutmut's timeout).

When the server cannot be reached, ``run`` execs pytest itself: slower, never a
false result.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys

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
    import signal

    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    if len(fds) != 3:
        return
    request = json.loads(msg.decode())
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            conn.close()
            os.setsid()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = ["pytest", *request["args"]]
            import pytest

            code = int(pytest.main(request["args"]))
        except BaseException as exc:
            print(f"mutate_forkserver: {exc!r}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    for fd in fds:
        os.close(fd)
    status = None
    while status is None:
        done, status_word = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(status_word)
            break
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and not conn.recv(1):  # the client went away: so does the run
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
    # Anything the run left in its session (it should have left nothing) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        conn.sendall(struct.pack("!i", status if status >= 0 else 128 - status))


def run(path: str, args: list[str]) -> int:
    import json

    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:
        client.close()
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])
    request = json.dumps({"args": args, "cwd": os.getcwd(), "env": dict(os.environ)})
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
    if len(argv) >= 3 and argv[0] == "run" and argv[2] == "--":
        return run(argv[1], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
