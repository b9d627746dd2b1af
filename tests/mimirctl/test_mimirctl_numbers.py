"""Numbers JSON cannot hold (NaN, Infinity) and numbers out of range, wherever a user
gives them to mimirctl: an option, ``--config``, a file to import. Each is a usage
error (exit 2) that names it, never a traceback, and never a frame mimird cannot read."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from mimirctl.client import BadRequest, Client, loads
from tests.mimirctl.test_mimirctl_transfer import HEADER, PROJECT, ctl
from tests.support.helpers import DaemonDirs, InProcessDaemon, short_tmpdir

EXIT_USAGE = 2


def mimirctl(dirs: DaemonDirs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimirctl", *args],
        env=dirs.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["doctor", "--timeout", "nan"], "'nan' is not from 0.1 to 3600 seconds"),
        (["doctor", "--timeout", "1e309"], "'1e309' is not from 0.1 to 3600 seconds"),
        (["doctor", "--timeout", "-1"], "'-1' is not from 0.1 to 3600 seconds"),
        (["doctor", "--timeout", "soon"], "'soon' is not a number"),
        (["doctor", "--agent-timeout", "inf"], "'inf' is not from 0.1 to 120 seconds"),
        (
            ["run", "new", "p", "--task", "t", "--budget-usd", "NaN"],
            "'NaN' is not from 0 to 1e+06 USD",
        ),
        (
            ["project", "update", "p", "--config", '{"token_budget": NaN}'],
            "--config is not valid JSON: NaN is not a JSON number",
        ),
        (
            ["session", "new", "p", "--config", '{"cost_budget_usd": -Infinity}'],
            "--config is not valid JSON: -Infinity is not a JSON number",
        ),
    ],
)
def test_a_number_json_cannot_hold_or_out_of_range_is_a_usage_error(
    args: list[str], said: str
) -> None:
    # No daemon: each is refused before mimirctl connects.
    with short_tmpdir() as root:
        result = mimirctl(DaemonDirs(root), *args)
    assert result.returncode == EXIT_USAGE, result
    assert said in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_import_line_with_infinity_is_refused_with_its_line(
    dirs: DaemonDirs, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    bad = json.dumps({**PROJECT, "config": {"token_budget": 1}}).replace(
        '"token_budget": 1', '"token_budget": Infinity'
    )
    export = tmp_path / "in.jsonl"
    export.write_text(json.dumps(HEADER) + "\n" + bad + "\n")
    result = await ctl(dirs, "import", str(export))
    assert result.returncode == EXIT_USAGE, result
    assert f"{export}:2: not JSON (Infinity is not a JSON number)" in result.stderr.decode()


def test_loads_refuses_what_json_cannot_hold_and_takes_the_rest() -> None:
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        with pytest.raises(ValueError, match="is not a JSON number"):
            loads(text)
    assert loads('{"a": 1e308, "b": [1.5, -2]}') == {"a": 1e308, "b": [1.5, -2]}


async def test_a_request_holding_nan_is_not_sent(dirs: DaemonDirs, daemon: InProcessDaemon) -> None:
    def calls() -> None:
        with Client(str(dirs.socket)) as client:
            with pytest.raises(BadRequest, match="a number in it is NaN or infinite"):
                client.call("session.list", {"limit": math.nan})
            # The connection is fine: nothing was sent.
            assert client.call("project.list")["projects"] == []

    await trio.to_thread.run_sync(calls)
