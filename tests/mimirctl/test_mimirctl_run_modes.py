"""How ``mimirctl run events`` (and ``run new``, which follows them) shows the
events of a judge agent, an ensemble's integration and a debate's rounds: one line
each, saying what happened, every text from an agent with its control characters
made visible."""

from __future__ import annotations

from typing import Any

from mimirctl.commands.run import event_line
from mimird.wire import run_events


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


def test_a_judges_words_reach_the_terminal_with_control_characters_visible() -> None:
    shown = line("judge_decided", {"winner": None, "reasons": "x", "problem": "names '\x1b[2J'"})
    assert "\x1b" not in shown
    assert shown.startswith("[7] judge gave no valid answer: ")
    chosen = line("judge_decided", {"winner": 1, "reasons": "ok\x07\x1b]0;pwned\x07"})
    assert "\x1b" not in chosen
    assert "\x07" not in chosen
