"""``mimirctl doctor``: check what Mimir needs, explain what is wrong, and say the
command that fixes each finding. Exits 1 when something needs attention.

It works without the daemon too (what can be checked from here is, and the rest is
said to be skipped): the socket and directories' modes, git, systemd.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess

from mimirctl import render
from mimirctl.client import (
    Client,
    ClientError,
    DaemonNotRunning,
    RpcError,
    protocol_skew,
    resolve_socket,
)
from mimirctl.commands import EXIT_ERROR, EXIT_OK, number_arg
from mimird import paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    from typing import Any, Final

#: git's oldest version that Mimir works with: run integration uses
#: ``git merge-tree --write-tree`` (mimird/workspaces/integrate.py), new in 2.38.
MIN_GIT_VERSION: Final = (2, 38)
#: Less free disk than this where worktrees and the database live needs attention.
DEFAULT_MIN_FREE_BYTES: Final = 1 << 30
#: How long each agent has to answer ``initialize`` (agent.probe's timeout_s).
DEFAULT_AGENT_TIMEOUT_S: Final = 10.0
#: A command the doctor runs itself (git, systemctl) must answer within this.
COMMAND_TIMEOUT_S: Final = 10.0
UNITS: Final = ("mimird.socket", "mimird.service")
#: How each status is shown.
MARKS: Final = {"ok": "ok", "attention": "!!", "note": "--", "skipped": ".."}


class Report:
    """The findings, in the order they were made."""

    def __init__(self) -> None:
        self.findings: list[dict[str, Any]] = []

    def add(self, check: str, status: str, message: str, fix: str | None = None) -> None:
        self.findings.append({"check": check, "status": status, "message": message, "fix": fix})

    @property
    def attention(self) -> bool:
        return any(f["status"] == "attention" for f in self.findings)


# ---- what can be checked without the daemon ------------------------------------------------


def _private(report: Report, check: str, path: str, *, directory: bool) -> None:
    """``path`` must be only its owner's (the daemon makes it 0700 or 0600)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        report.add(check, "note", f"{path} does not exist (yet)")
        return
    except OSError as exc:
        report.add(check, "attention", f"cannot look at {path}: {exc.strerror}")
        return
    mode = stat.S_IMODE(st.st_mode)
    wanted = "0700" if directory else "0600"
    if st.st_uid != os.geteuid():
        report.add(
            check,
            "attention",
            f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})",
            f"chown {os.geteuid()} {path}",
        )
    elif mode & 0o077:
        report.add(
            check,
            "attention",
            f"{path} is {mode:04o}: others than you can reach it (mimird makes it {wanted})",
            f"chmod {wanted[1:]} {path}",
        )
    else:
        report.add(check, "ok", f"{path} is {mode:04o}")


def _git(report: Report) -> None:
    git = shutil.which("git")
    if git is None:
        report.add("git", "attention", "git is not on PATH", "install git (2.38 or newer)")
        return
    try:
        out = subprocess.run(
            [git, "--version"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.add("git", "attention", f"{git} --version failed: {exc}")
        return
    match = re.search(r"(\d+)\.(\d+)", out)
    if match is None:
        report.add("git", "attention", f"cannot read git's version from {out.strip()!r}")
        return
    found = (int(match[1]), int(match[2]))
    need = ".".join(map(str, MIN_GIT_VERSION))
    if found < MIN_GIT_VERSION:
        report.add(
            "git",
            "attention",
            f"git {found[0]}.{found[1]} is older than {need}, which run integration needs "
            "(git merge-tree --write-tree)",
            f"install git {need} or newer",
        )
    else:
        report.add("git", "ok", f"git {found[0]}.{found[1]} (needs {need}+)")


def _systemctl(*args: str) -> tuple[int, str] | None:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        done = subprocess.run(
            [systemctl, "--user", *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 255, str(exc)
    return done.returncode, (done.stdout + done.stderr).strip()


def _systemd(report: Report) -> None:
    if shutil.which("systemctl") is None:
        report.add(
            "systemd",
            "note",
            "systemctl is not on PATH: systemd units not checked (mimird runs without "
            "them: start it with 'mimird')",
        )
        return
    for unit in UNITS:
        answer = _systemctl("is-enabled", unit)
        assert answer is not None
        code, said = answer
        state = said.splitlines()[0] if said else ""
        if code == 0 and state in ("enabled", "enabled-runtime", "static", "indirect"):
            report.add("systemd", "ok", f"{unit} is {state}")
        elif "bus" in said.lower() or "connect" in said.lower():
            report.add(
                "systemd",
                "note",
                f"the systemd user manager cannot be reached ({render.first_line(said)}): "
                "units not checked",
            )
            break
        elif state == "disabled":
            report.add(
                "systemd",
                "attention",
                f"{unit} is installed but not enabled",
                "systemctl --user enable --now mimird.socket",
            )
        else:
            report.add(
                "systemd",
                "attention",
                f"{unit} is not installed ({render.first_line(said) or 'not found'})",
                "make install-systemd (from Mimir's source tree)",
            )
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    if user and os.path.isdir("/var/lib/systemd/linger"):
        if os.path.exists(f"/var/lib/systemd/linger/{user}"):
            report.add("systemd", "ok", f"linger is on for {user}: mimird runs while logged out")
        else:
            report.add(
                "systemd",
                "attention",
                f"linger is off for {user}: the user manager (and mimird, its agents) stop "
                "when you log out",
                f"loginctl enable-linger {user}",
            )
    else:
        report.add(
            "systemd", "note", "cannot tell whether linger is on (no /var/lib/systemd/linger)"
        )


def _free_disk(report: Report, places: list[str], min_free: int) -> None:
    seen: set[int] = set()
    for place in places:
        path = place
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        try:
            dev = os.stat(path).st_dev
            free = shutil.disk_usage(path).free
        except OSError as exc:
            report.add("disk", "attention", f"cannot look at {place}: {exc.strerror}")
            continue
        if dev in seen:
            continue
        seen.add(dev)
        if free < min_free:
            report.add(
                "disk",
                "attention",
                f"only {render.human_bytes(free)} free for {place} (worktrees and the "
                f"database grow there; want {render.human_bytes(min_free)})",
                "free some space; 'mimirctl worktree prune' removes worktrees of deleted sessions",
            )
        else:
            report.add("disk", "ok", f"{render.human_bytes(free)} free for {place}")


# ---- what the daemon answers ---------------------------------------------------------------


def _installed_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("mimir")
    except metadata.PackageNotFoundError:
        return None


def _daemon(report: Report, client: Client) -> dict[str, Any]:
    status: dict[str, Any] = client.call("daemon.status", {"client": "mimirctl doctor"})
    report.add("daemon", "ok", f"mimird {status['version']} answers (pid {status['pid']})")
    if skew := protocol_skew(status):
        report.add("daemon", "attention", skew, "systemctl --user restart mimird")
    mine = _installed_version()
    if mine is not None and mine != status["version"]:
        report.add(
            "daemon",
            "attention",
            f"mimird is {status['version']}, this mimirctl {mine}",
            "systemctl --user restart mimird (or stop mimird and start the one installed)",
        )
    return status


def _database(report: Report, client: Client) -> None:
    client.set_timeout(None)
    result = client.call("db.check", {})
    if result["ok"]:
        report.add("database", "ok", f"integrity ok ({result['kind']} check)")
    else:
        report.add(
            "database",
            "attention",
            "integrity check found: " + "; ".join(result["problems"][:5]),
            "mimirctl db backup, then see README 'Backup and restore'",
        )


def _agents(report: Report, client: Client, timeout_s: float) -> None:
    client.set_timeout(timeout_s + 30)
    for kind in client.call("agent.list")["agents"]:
        name = kind["name"]
        if not kind["found"]:
            if kind["source"] == "config":
                report.add(
                    "agents",
                    "attention",
                    f"agent {name!r} (config file): command {kind['command']!r} not found",
                    f"install it, or fix [agents.{name}] command in the config file",
                )
            else:
                report.add(
                    "agents",
                    "note",
                    f"agent {name!r} is not installed ({kind['command']!r} not on PATH): "
                    f"{kind['description']}",
                    f"mimirctl agent install {name}",
                )
            continue
        try:
            probe = client.call("agent.probe", {"kind": name, "timeout_s": timeout_s})
        except RpcError as exc:  # listed as found, yet not startable: say so, go on
            report.add("agents", "attention", exc.message)
            continue
        if probe["ok"]:
            said = " ".join(filter(None, [probe["agent_name"], probe["agent_version"]]))
            report.add(
                "agents",
                "ok",
                f"agent {name!r} answers initialize in {probe['duration_ms']:.0f} ms"
                + (f" ({said})" if said else ""),
            )
        else:
            report.add(
                "agents",
                "attention",
                f"agent {name!r} ({kind['path']}): {probe['problem']}",
                f"run '{' '.join(probe['command'])}' by hand to see why"
                + (
                    f"; 'mimirctl agent install {name}' installs a known-good version"
                    if kind["source"] != "config"
                    else f", and check [agents.{name}] in the config file"
                ),
            )


def cmd_doctor(args: argparse.Namespace) -> int:
    report = Report()
    socket_path = resolve_socket(getattr(args, "socket", None))
    database = os.path.join(paths.data_dir(), paths.DATABASE_NAME)
    places = [paths.data_dir()]
    try:
        with Client(socket_path, timeout=args.timeout) as client:
            status = _daemon(report, client)
            database = status["paths"]["database"]
            places = [os.path.dirname(database), status["paths"]["worktrees"]]
            worktrees = client.call("worktree.list", {})["worktrees"]
            places += sorted({os.path.dirname(w["path"]) for w in worktrees})
            _database(report, client)
            _agents(report, client, args.agent_timeout)
    except DaemonNotRunning as exc:
        report.add(
            "daemon",
            "attention",
            f"{exc}; not checked: its version, the database, the agents",
            "systemctl --user start mimird.socket (or: mimird)",
        )
    except ClientError as exc:
        report.add("daemon", "attention", f"mimird did not answer: {exc}")
    _private(report, "modes", os.path.dirname(socket_path), directory=True)
    _private(report, "modes", socket_path, directory=False)
    _private(report, "modes", os.path.dirname(database), directory=True)
    _private(report, "modes", database, directory=False)
    _free_disk(report, places, args.min_free)
    _git(report)
    _systemd(report)
    result = {"ok": not report.attention, "findings": report.findings}
    if args.json:
        render.say(render.json_text(result), exact=True)
    else:
        lines = []
        for f in report.findings:
            lines.append(f"{MARKS[f['status']]} {f['check']}: {render.visible(f['message'])}")
            if f["fix"] and f["status"] in ("attention", "note"):
                lines.append(f"   fix: {render.visible(f['fix'])}")
        lines.append("needs attention: see the fixes above" if report.attention else "all is well")
        render.say("\n".join(lines), exact=True)
    return EXIT_ERROR if report.attention else EXIT_OK


def _bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 500M, 2G)")
    return int(match[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[match[2]]


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    summary = (
        "check the daemon, modes, database, disk, git, agents and systemd; "
        "exits 1 when something needs attention"
    )
    doctor = commands.add_parser(
        "doctor", parents=[common], help=summary, description=summary[0].upper() + summary[1:]
    )
    doctor.set_defaults(offline=cmd_doctor)
    doctor.add_argument(
        "--agent-timeout",
        type=number_arg(0.1, 120, "seconds"),
        default=DEFAULT_AGENT_TIMEOUT_S,
        metavar="S",
        help=f"seconds each agent has to answer initialize (default {DEFAULT_AGENT_TIMEOUT_S:g})",
    )
    doctor.add_argument(
        "--min-free",
        type=_bytes,
        default=DEFAULT_MIN_FREE_BYTES,
        metavar="SIZE",
        help="free disk below this needs attention (default 1G)",
    )
    doctor.add_argument(
        "--timeout",
        type=number_arg(0.1, 3600, "seconds"),
        default=10.0,
        metavar="S",
        help="seconds to wait for mimird",
    )
