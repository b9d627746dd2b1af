"""How ``mimirctl run events`` (and ``run new``, which follows them) shows the
events of a judge agent, an ensemble's integration and a debate's rounds: one line
each, saying what happened, every text from an agent with its control characters
made visible."""

from __future__ import annotations

from typing import Any

import pytest

from mimirctl.commands.run import event_line
from mimird.wire import run_events
from tests.runs.world import write_config, writes
from tests.support.helpers import (
    DaemonDirs,
    add_project_blocking,
    daemon_process,
    make_repo,
    run_mimirctl,
)

pytestmark = pytest.mark.timeout(120)
TOKEN_PATTERN = r"WINNER-([0-9a-f]+): SLOT"


def line(kind: str, data: dict[str, Any]) -> str:
    return event_line({"seq": 7, "kind": kind, "data": data})


def test_every_event_of_the_modes_has_a_line_of_its_own() -> None:
    prompt = {"session_id": "01abcdef", "bytes": 1234, "text": "...", "cut": ["diff of member 2"]}
    samples: dict[str, dict[str, Any]] = {
        "round_started": {"round": 2, "rounds": 3, "prompts": [{**prompt, "slot": 1}]},
        "round_ended": {
            "round": 2,
            "rounds": 3,
            "results": [
                {
                    "slot": 1,
                    "outcome": "finished",
                    "files_changed": 1,
                    "lines_added": 2,
                    "lines_deleted": 0,
                    "check_exit_code": 0,
                }
            ],
        },
        "judge_started": {"session_id": "01abcdefgh", "agent": "claude", "prompt": prompt},
        "judge_decided": {"session_id": "01abcdefgh", "winner": 2, "reasons": "tests pass"},
        "integration_started": {
            "session_id": "01abcdefgh",
            "agent": "codex",
            "branch": "mimir/run-x/integration-codex",
            "prompt": prompt,
        },
        "integration_ended": {
            "session_id": "01abcdefgh",
            "outcome": "completed",
            "files_changed": 2,
            "lines_added": 3,
            "lines_deleted": 1,
        },
    }
    mode_kinds = {
        "round_started",
        "round_ended",
        "judge_started",
        "judge_decided",
        "integration_started",
        "integration_ended",
    }
    assert mode_kinds <= run_events.RUN_KINDS
    lines = {kind: line(kind, samples[kind]) for kind in mode_kinds}
    assert lines["round_started"] == (
        "[7] round 2/3 started (member 1: prompt 1234 bytes, cut: diff of member 2)"
    )
    assert (
        lines["round_ended"]
        == "[7] round 2/3 ended: member 1 finished: 1 file(s), +2 -0, check exit 0"
    )
    assert lines["judge_decided"] == "[7] judge chose slot 2: tests pass"
    assert lines["integration_ended"] == "[7] integration completed: 2 file(s), +3 -1"
    assert "mimir/run-x/integration-codex" in lines["integration_started"]
    assert lines["judge_started"].startswith("[7] judge claude started (session ")


def test_bringing_work_home_has_lines_of_its_own() -> None:
    integrated = {
        "slot": 2,
        "branch": "mimir/run-x/2-codex",
        "into": "main",
        "kind": "fast_forward",
        "commit": "b" * 40,
        "previous": "a" * 40,
        "files_changed": 2,
        "insertions": 5,
        "deletions": 1,
        "worktree": "/src/api",
    }
    assert line("integrated", integrated) == (
        "[7] integrated slot 2 (mimir/run-x/2-codex) into main: fast-forward "
        "aaaaaaa..bbbbbbb, 2 file(s), +5 -1 (checkout /src/api updated)"
    )
    refused = {
        "slot": None,
        "into": "main",
        "error": "merge_conflict",
        "message": "conflicts",
        "files": ["a.py"],
    }
    assert line("integration_refused", refused) == (
        "[7] integration of the integration into main refused (merge_conflict): conflicts; "
        "files: a.py"
    )


def test_every_run_event_kind_has_a_line_of_its_own() -> None:
    """No kind falls through to the raw key=value form."""
    data = {"unrendered": "x"}
    for kind in run_events.RUN_KINDS:
        assert "unrendered" not in line(kind, data), kind


def test_a_judges_words_reach_the_terminal_with_control_characters_visible() -> None:
    shown = line("judge_decided", {"winner": None, "reasons": "x", "problem": "names '\x1b[2J'"})
    assert "\x1b" not in shown
    assert shown.startswith("[7] judge gave no valid answer: ")
    chosen = line("judge_decided", {"winner": 1, "reasons": "ok\x07\x1b]0;pwned\x07"})
    assert "\x1b" not in chosen
    assert "\x07" not in chosen


def test_run_new_follows_a_debate_into_its_integration_and_a_judges_decision(
    dirs: DaemonDirs,
) -> None:
    answer = {"do": "say", "text": "alpha did it.\nWINNER-{1}: 1", "pattern": TOKEN_PATTERN}
    scenarios = {
        "alpha": writes("a.txt", "alpha\n"),
        "beta": writes("b.txt", "beta\n"),
        "integ": writes("c.txt", "both\n"),
        "judge": {"prompts": [[answer]]},
    }
    write_config(dirs, scenarios)
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs):
        add_project_blocking(dirs, repo, name="demo")
        debated = run_mimirctl(
            dirs,
            "run",
            "new",
            "demo",
            "--task",
            "t",
            "--agents",
            "alpha,beta",
            "--mode",
            "debate",
            "--rounds",
            "2",
            "--then",
            "ensemble",
            "--integration-agent",
            "integ",
            "--manual",
        )
        assert debated.returncode == 0, debated.stderr
        out = debated.stdout
        assert "round 1/2 started" in out
        assert "round 2/2 ended: member 1 finished" in out
        assert "integration by integ started on mimir/run-" in out
        assert "integration completed: 1 file(s), +1 -0" in out
        assert "decision: slot 0 wins (by ensemble)" in out
        run_id = out.splitlines()[0].split()[1].rstrip(":")
        shown = run_mimirctl(dirs, "run", "show", run_id)
        assert "integration: completed (slot 0, session " in shown.stdout
        listed = run_mimirctl(dirs, "run", "ls").stdout.splitlines()
        row = next(line.split() for line in listed if line.startswith(run_id[:10]))
        assert row[3:6] == ["decided", "3", "0"]  # status, members, winner: slot 0

        judged = run_mimirctl(
            dirs,
            "run",
            "new",
            "demo",
            "--task",
            "t",
            "--agents",
            "alpha,beta",
            "--judge",
            "agent",
            "--judge-agent",
            "judge",
            "--manual",
        )
        assert judged.returncode == 0, judged.stderr
        assert "judge judge started (session " in judged.stdout
        assert "judge chose slot 1: alpha did it." in judged.stdout
