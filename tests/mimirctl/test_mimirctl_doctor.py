"""``mimirctl doctor`` and ``agent.probe`` against a real mimird process, with agent
kinds played by the scripted fake ACP agent: one that answers ``initialize``, one
that hangs (and ignores EOF and SIGTERM), one that exits at once, one that floods
its stdout, one whose command does not exist; wrong directory modes; a daemon that
is down. Each finding must carry the command that fixes it, and the exit code says
whether something needs attention."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Final

import pytest

from mimird.agents.probe import MAX_OUTPUT_BYTES, MAX_TEXT_CHARS
from mimird.wire.errors import ErrorCode
from tests.support.agents import FAKE_AGENT
from tests.support.helpers import (
    DaemonDirs,
    DaemonProcess,
    blocking_call,
    daemon_process,
    rpc,
    short_tmpdir,
)

pytestmark = pytest.mark.timeout(120)

#: The scenarios of the agent kinds, by kind.
KINDS: Final = {
    "good": {},
    "hang": {
        "before": {"initialize": [{"do": "hang"}]},
        "ignore_eof": True,
        "ignore_sigterm": True,
    },
    "crash": {"before": {"initialize": [{"do": "crash", "exit_code": 3}]}},
    "flood": {"before": {"initialize": [{"do": "raw", "line": "x" * (2 * MAX_OUTPUT_BYTES)}]}},
    "old": {"results": {"initialize": {"protocolVersion": 0, "agentInfo": {"name": "n" * 5000}}}},
}
GOOD_ONLY: Final = ("good",)


def write_config(dirs: DaemonDirs, kinds: tuple[str, ...], *, missing: bool) -> None:
    lines = []
    for kind in kinds:
        scenario = dirs.root / f"{kind}.json"
        scenario.write_text(json.dumps(KINDS[kind]))
        lines += [
            f"[agents.{kind}]",
            f"command = {json.dumps(sys.executable)}",
            f"args = [{json.dumps(str(FAKE_AGENT))}, {json.dumps(str(scenario))}]",
            "",
        ]
    if missing:
        lines += ["[agents.missing]", 'command = "/nonexistent/bin/agent-that-is-not-here"', ""]
    dirs.config.write_text("\n".join(lines))


def doctor_env(dirs: DaemonDirs) -> dict[str, str]:
    """mimirctl's environment, with a PATH that holds git and the Python only (no
    systemctl: the systemd checks are notes) and no USER (linger not checked)."""
    bin_dir = dirs.root / "bin"
    bin_dir.mkdir(exist_ok=True)
    git = shutil.which("git")
    assert git is not None
    if not (bin_dir / "git").exists():
        (bin_dir / "git").symlink_to(git)
    env = dirs.env(PATH=str(bin_dir))
    env.pop("USER", None)
    env.pop("LOGNAME", None)
    return env


def doctor(dirs: DaemonDirs, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimirctl", "doctor", "--agent-timeout", "1", *args],
        env=doctor_env(dirs),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def findings(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0), report
    result: list[dict[str, Any]] = report["findings"]
    return result


def about(found: list[dict[str, Any]], check: str, text: str) -> dict[str, Any]:
    [finding] = [f for f in found if f["check"] == check and text in f["message"]]
    return finding


def processes_running(marker: str) -> list[int]:
    """Processes whose command line names ``marker`` (a scenario file)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


@pytest.fixture
def world() -> Iterator[DaemonDirs]:
    with short_tmpdir() as root:
        dirs = DaemonDirs(root)
        (root / "home").mkdir()
        yield dirs


@pytest.fixture
def healthy(world: DaemonDirs) -> Iterator[DaemonProcess]:
    write_config(world, GOOD_ONLY, missing=False)
    with daemon_process(world) as daemon:
        yield daemon


@pytest.fixture
def troubled(world: DaemonDirs) -> Iterator[DaemonProcess]:
    write_config(world, tuple(KINDS), missing=True)
    with daemon_process(world) as daemon:
        yield daemon


def test_all_well_exits_0_and_says_what_it_checked(
    world: DaemonDirs, healthy: DaemonProcess
) -> None:
    done = doctor(world, "--json", "--min-free", "1K")
    assert done.returncode == 0, done.stdout + done.stderr
    found = findings(done)
    assert about(found, "daemon", "answers")["status"] == "ok"
    assert about(found, "database", "integrity ok")["status"] == "ok"
    assert about(found, "agents", "'good' answers initialize")["status"] == "ok"
    preset = about(found, "agents", "'opencode' is not installed")
    assert (preset["status"], preset["fix"]) == ("note", "mimirctl agent install opencode")
    modes = [f for f in found if f["check"] == "modes"]
    assert [f["status"] for f in modes] == ["ok"] * 4
    assert about(found, "git", "needs 2.38+")["status"] == "ok"
    assert about(found, "systemd", "systemctl is not on PATH")["status"] == "note"
    assert {f["status"] for f in found} <= {"ok", "note"}
    human = doctor(world, "--min-free", "1K")
    assert human.returncode == 0
    assert human.stdout.rstrip().endswith("all is well")


def test_agents_that_hang_exit_flood_or_are_missing_need_attention(
    world: DaemonDirs, troubled: DaemonProcess
) -> None:
    done = doctor(world, "--json", "--min-free", "1K")
    assert done.returncode == 1, done.stdout + done.stderr
    found = findings(done)
    assert about(found, "agents", "'good' answers initialize")["status"] == "ok"
    hang = about(found, "agents", "'hang'")
    assert hang["status"] == "attention"
    assert "no answer to initialize within 1 s" in hang["message"]
    assert "by hand" in hang["fix"]
    assert "[agents.hang]" in hang["fix"]
    crash = about(found, "agents", "'crash'")
    assert "closed its stdout" in crash["message"]
    flood = about(found, "agents", "'flood'")
    assert f"wrote {MAX_OUTPUT_BYTES} bytes without answering" in flood["message"]
    old = about(found, "agents", "'old'")
    assert "speaks ACP protocol 0" in old["message"]
    missing = about(found, "agents", "'missing'")
    assert missing["status"] == "attention"
    assert "not found" in missing["message"]
    assert "[agents.missing]" in missing["fix"]
    # The hanging agent ignored EOF and SIGTERM: its whole group was killed.
    assert processes_running(str(world.root / "hang.json")) == []
    human = doctor(world, "--min-free", "1K")
    assert human.returncode == 1
    assert "!! agents: agent 'hang'" in human.stdout
    assert "   fix: " in human.stdout
    assert human.stdout.rstrip().endswith("needs attention: see the fixes above")


def test_agent_probe_answers_and_bounds(world: DaemonDirs, troubled: DaemonProcess) -> None:
    good = rpc(world, "agent.probe", {"kind": "good", "timeout_s": 10})
    assert (good["ok"], good["answered"], good["protocol_version"]) == (True, True, 1)
    assert good["command"][0] == sys.executable
    old = rpc(world, "agent.probe", {"kind": "old", "timeout_s": 10})
    assert old["ok"] is False
    assert old["answered"] is True
    assert len(old["agent_name"]) == MAX_TEXT_CHARS
    missing = blocking_call(world.socket, "agent.probe", {"kind": "missing"})
    assert missing["error"]["code"] == ErrorCode.AGENT_UNAVAILABLE
    unknown = blocking_call(world.socket, "agent.probe", {"kind": "nobody"})
    assert unknown["error"]["code"] == ErrorCode.AGENT_UNAVAILABLE
    for params, field in [
        ({"kind": "good", "timeout_s": 0}, "timeout_s"),
        ({"kind": "good", "timeout_s": 1000}, "timeout_s"),
        ({"kind": "../x"}, "kind"),
        ({}, "kind"),
    ]:
        refused = blocking_call(world.socket, "agent.probe", params)
        assert refused["error"]["code"] == ErrorCode.INVALID_PARAMS
        assert refused["error"]["data"]["field"] == field
    # The daemon stays up, and probing (a read) wrote nothing to the audit log.
    assert rpc(world, "audit.list", {})["entries"] == []


def test_wrong_modes_are_found_with_the_chmod_that_fixes_them(
    world: DaemonDirs, healthy: DaemonProcess
) -> None:
    world.data.chmod(0o755)
    world.database.chmod(0o644)
    try:
        done = doctor(world, "--json", "--min-free", "1K")
    finally:
        world.data.chmod(0o700)
        world.database.chmod(0o600)
    assert done.returncode == 1
    found = findings(done)
    data = about(found, "modes", f"{world.data} is 0755")
    assert (data["status"], data["fix"]) == ("attention", f"chmod 700 {world.data}")
    db = about(found, "modes", f"{world.database} is 0644")
    assert (db["status"], db["fix"]) == ("attention", f"chmod 600 {world.database}")


def test_too_little_free_disk_needs_attention(world: DaemonDirs, healthy: DaemonProcess) -> None:
    done = doctor(world, "--json", "--min-free", "999999999G")
    assert done.returncode == 1
    disk = about(findings(done), "disk", "free for")
    assert disk["status"] == "attention"
    assert "worktree prune" in disk["fix"]


def test_with_the_daemon_down_it_checks_what_it_can_and_says_so(world: DaemonDirs) -> None:
    write_config(world, GOOD_ONLY, missing=False)
    done = doctor(world, "--json", "--min-free", "1K", timeout=30)
    assert done.returncode == 1
    found = findings(done)
    down = about(found, "daemon", "not running")
    assert down["status"] == "attention"
    assert "not checked: its version, the database, the agents" in down["message"]
    assert "systemctl --user start mimird.socket" in down["fix"]
    assert about(found, "git", "needs 2.38+")["status"] == "ok"
    assert [f for f in found if f["check"] == "modes"]
    assert not [f for f in found if f["check"] in ("database", "agents")]


def test_bad_usage_is_exit_2(world: DaemonDirs) -> None:
    done = doctor(world, "--min-free", "lots")
    assert done.returncode == 2
    assert "not a size" in done.stderr
