"""``mimirctl top``: every session and run on one full screen, live.

The view (:class:`mimirctl.live.LiveView`) is read once (``session.list``,
``session.get`` for usage and diff, ``run.list``, ``permission.list``), then moved
by the events of one subscription to every session's journal: nothing is polled.
A slow tick (:data:`TICK_S`) only redraws the time of the turns under way. Keys:
arrows or j/k select, Enter or a attach (curses is left for ``mimirctl attach``
and comes back when it ends), p answers the selected session's permission
request, c cancels its turn, s stops its agent, q quits. curses is imported
here only, when ``top`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any, Final

from mimirctl import render
from mimirctl.client import Client, ClientError, RpcError
from mimirctl.commands import EXIT_OK, UsageError, add_command
from mimirctl.live import LiveView, Row, SessionLine
from mimirctl.stream import event_of

#: Seconds between redraws when nothing happens (the turn times move).
TICK_S: Final = 1.0
#: At most this many sessions (newest first) and runs are read at the start.
MAX_SESSIONS: Final = 500
MAX_RUNS: Final = 100
HEADER: Final = (
    f"{'SESSION':<13}{'STATUS':<20}{'AGENT':<10}{'TURN':>9}{'TOKENS':>10}{'PERM':>6}  "
    f"{'DIFF':<18}{'PROJECT':<12}TITLE"
)
HELP: Final = "↑↓/jk select  ⏎/a attach  p permission  c cancel  s stop  q quit"


def _row_text(row: Row, now: float) -> str:
    if row.run is not None:
        run = row.run
        return f"run {render.short_id(run.id)}  {run.mode} · {run.status}  {run.title}"
    line = row.session
    assert line is not None
    name = ("└ " if row.member else "") + render.short_id(line.id)
    return (
        f"{name:<13}{line.status:<20}{line.agent[:9]:<10}{line.turn_time(now):>9}"
        f"{line.tokens:>10,}{len(line.pending) or '-':>6}  {line.diff():<18}"
        f"{line.project[:11]:<12}{line.title}"
    )


class Top:
    def __init__(self, client: Client, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.view = LiveView()
        self.selected = 0
        self.message = ""
        self.subscription = 0
        #: While the lists are read (run.list then gives every run at once).
        self.loading = False

    # ---- the daemon ---------------------------------------------------------------

    def load(self) -> None:
        # Subscribe first: what changes while the lists are read arrives as events
        # afterwards, and applying it again changes nothing.
        self.subscription = self.client.call("subscribe", {})["subscription"]
        listed = self.client.call("session.list", {"limit": MAX_SESSIONS})["sessions"]
        for session in listed:
            self.view.add_session(session)
        self.loading = True
        for session_id in list(self.view.sessions):
            self.refresh(session_id)
        self.loading = False
        for run in self.client.call("run.list", {"limit": MAX_RUNS})["runs"]:
            self.view.add_run(run)
        self.view.set_permissions(self.client.call("permission.list")["permissions"])

    def refresh(self, session_id: str) -> None:
        try:
            session = self.client.call("session.get", {"session": session_id})
        except RpcError:
            self.view.sessions.pop(session_id, None)  # gone meanwhile
            return
        self.view.add_session(session)
        # The run's own status moves with its members' (its journal is not subscribed).
        if isinstance(run_id := session.get("run_id"), str) and not self.loading:
            with contextlib.suppress(RpcError):  # deleted meanwhile
                self.view.add_run(self.client.call("run.get", {"run": run_id}))

    def pump(self) -> bool:
        """Apply every message already read or readable now; whether any came."""
        came = False
        while self.client.notifications or self.client.buffered() or _readable(self.client, 0):
            came = True
            message = (
                self.client.notifications.pop(0)
                if self.client.notifications
                else self.client.read()
            )
            event = event_of(message, self.subscription)
            if event is not None and (again := self.view.apply(event)) is not None:
                self.refresh(again)
        return came

    def act(self, what: str, method: str, params: dict[str, Any]) -> None:
        try:
            self.client.call(method, params)
            self.message = what
        except RpcError as exc:
            self.message = f"{method}: {render.visible(exc.message)}"

    # ---- keys ---------------------------------------------------------------------

    def current(self, rows: list[Row]) -> SessionLine | None:
        if not rows:
            return None
        self.selected = max(0, min(self.selected, len(rows) - 1))
        return rows[self.selected].session

    def key(self, screen: Any, curses: Any, key: int) -> bool:
        """Handle one key; False to quit."""
        rows = self.view.rows()
        line = self.current(rows)
        if key in (ord("q"), ord("Q")):
            return False
        if key in (curses.KEY_DOWN, ord("j")):
            self.selected += 1
        elif key in (curses.KEY_UP, ord("k")):
            self.selected = max(0, self.selected - 1)
        elif line is None:
            return True
        elif key in (curses.KEY_ENTER, 10, 13, ord("a")):
            self.attach(screen, curses, line.id)
        elif key == ord("c"):
            self.act(
                f"cancelling the turn of {render.short_id(line.id)}",
                "session.cancel",
                {"session": line.id},
            )
        elif key == ord("s"):
            self.act(
                f"stopping the agent of {render.short_id(line.id)}",
                "session.stop",
                {"session": line.id},
            )
        elif key == ord("p"):
            self.answer(screen, curses, line)
        return True

    def answer(self, screen: Any, curses: Any, line: SessionLine) -> None:
        if not line.pending:
            self.message = f"{render.short_id(line.id)} has no permission request waiting"
            return
        permission, title = next(iter(line.pending.items()))
        height, width = screen.getmaxyx()
        prompt = f"allow {title}? a: allow once  d: deny  other key: back"
        _put(screen, height - 1, 0, prompt, width, curses.A_REVERSE)
        screen.refresh()
        screen.timeout(-1)
        choice = screen.getch()
        kinds = {ord("a"): "allow_once", ord("y"): "allow_once", ord("d"): "reject_once"}
        if choice in kinds:
            self.act(
                f"answered {kinds[choice]}: {title}",
                "permission.respond",
                {"permission": permission, "kind": kinds[choice]},
            )

    def attach(self, screen: Any, curses: Any, session_id: str) -> None:
        """Leave curses for ``mimirctl attach``, and come back when it ends (Ctrl-C
        ends the attach, not top)."""
        curses.def_prog_mode()
        curses.endwin()
        command = [sys.executable, "-m", "mimirctl", "attach", session_id]
        if socket_path := getattr(self.args, "socket", None):
            command[3:3] = ["--socket", socket_path]
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            subprocess.run(command, check=False, preexec_fn=_default_sigint)
            render.say("\n[attach ended: press a key to go back to top]")
            sys.stdout.flush()
            screen.timeout(-1)
            screen.getch()
        finally:
            signal.signal(signal.SIGINT, previous)
            curses.reset_prog_mode()
            screen.clear()

    # ---- the screen ---------------------------------------------------------------

    def draw(self, screen: Any, curses: Any) -> None:
        height, width = screen.getmaxyx()
        rows = self.view.rows()
        line = self.current(rows)
        screen.erase()
        now = time.time()
        running = sum(1 for s in self.view.sessions.values() if s.turn_started is not None)
        waiting = sum(len(s.pending) for s in self.view.sessions.values())
        title = (
            f"mimir top · {len(self.view.sessions)} sessions · {running} in a turn · "
            f"{waiting} permission{'s' if waiting != 1 else ''} waiting"
        )
        _put(screen, 0, 0, title, width, curses.A_BOLD)
        _put(screen, 1, 0, HEADER, width, curses.A_UNDERLINE)
        body = max(0, height - 4)
        first = max(0, self.selected - body + 1)
        for index, row in enumerate(rows[first : first + body]):
            attr = curses.A_REVERSE if first + index == self.selected else curses.A_NORMAL
            if row.run is not None:
                attr |= curses.A_BOLD
            _put(screen, 2 + index, 0, _row_text(row, now), width, attr)
        if not rows:
            _put(screen, 2, 0, "no sessions", width, curses.A_DIM)
        if line is not None and line.pending:
            pending = next(iter(line.pending.values()))
            _put(screen, height - 2, 0, f"waiting: {pending} (p to answer)", width, curses.A_BOLD)
        elif self.message:
            _put(screen, height - 2, 0, self.message, width, curses.A_NORMAL)
        _put(screen, height - 1, 0, HELP, width, curses.A_DIM)
        screen.refresh()

    def run(self, screen: Any) -> None:
        import curses

        curses.curs_set(0)
        screen.keypad(True)
        while True:
            self.draw(screen, curses)
            if not (self.client.notifications or self.client.buffered()):
                select.select([self.client.fileno(), sys.stdin.fileno()], [], [], TICK_S)
            self.pump()
            screen.timeout(0)
            while (key := screen.getch()) != -1:
                if key == curses.KEY_RESIZE:
                    curses.update_lines_cols()
                    continue
                if not self.key(screen, curses, key):
                    return
                screen.timeout(0)


def _readable(client: Client, timeout: float) -> bool:
    ready, _, _ = select.select([client.fileno()], [], [], timeout)
    return bool(ready)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _put(screen: Any, y: int, x: int, text: str, width: int, attr: int) -> None:
    """``text`` clipped to the line (curses raises on writing the last cell)."""
    height, _ = screen.getmaxyx()
    if 0 <= y < height and width > 1:
        # curses.error (curses is imported by cmd_top only): a screen resized under us.
        with contextlib.suppress(Exception):
            screen.addnstr(y, x, text.ljust(width - 1), width - 1, attr)


def cmd_top(client: Client, args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("top needs a terminal; for scripts, 'mimirctl session ls --json'")
    import curses  # only here: top is the one command that draws a screen

    top = Top(client, args)
    top.load()
    os.environ.setdefault("ESCDELAY", "25")
    try:
        curses.wrapper(top.run)
    except ClientError as exc:
        raise ClientError(f"top: {exc}") from None
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    add_command(
        commands,
        common,
        "top",
        cmd_top,
        "show every session and run live, full screen (keys: a attach, p permission, "
        "c cancel, s stop, q quit)",
    )
