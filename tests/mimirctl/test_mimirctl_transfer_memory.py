"""Export and import stream: a journal far bigger than a page goes through mimird
and mimirctl in bounded pages, and neither's peak memory grows with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from tests.mimirctl.test_mimirctl_transfer import (
    HEADER,
    PROJECT,
    PROJECT_ID,
    SESSION_ID,
    a_session,
)
from tests.support.helpers import DaemonDirs, blocking_call, daemon_process

#: The journals: 10,000 events of 4 KiB, or 40 of 1 MiB: about 40 MiB as JSON.
SHAPES: Final = [
    pytest.param(10_000, 4096, id="many-small-events"),
    pytest.param(40, 1 << 20, id="few-big-events"),
]
#: What the peak memory of mimirctl or mimird may grow by while the 40 MiB go through.
GROWTH_LIMIT: Final = 16 << 20
PAGE_BYTES: Final = 1 << 20


def big_file(path: Path, events: int, n: int = 0, piece: int = 4096) -> int:
    """An export file of one session with ``events`` events (ids, name and path
    changed by ``n``, so that files made with different ``n`` do not conflict)."""
    project_id, session_id = PROJECT_ID[:-1] + str(n), SESSION_ID[:-1] + str(n)
    project = {**PROJECT, "id": project_id, "name": f"p{n}", "path": f"{PROJECT['path']}{n}"}
    session = a_session(project_id, session_id, last_seq=events)
    with path.open("w") as f:
        for record in (HEADER, project, session):
            f.write(json.dumps(record) + "\n")
        for seq in range(1, events + 1):
            text = (f"{seq:08d}" + "abcdefghij" * (piece // 10))[:piece]
            event = {
                "type": "event",
                "session_id": session_id,
                "seq": seq,
                "kind": "message",
                "data": {"role": "agent", "text": text},
                "created_at": "2026-01-02T03:04:05.000006Z",
            }
            f.write(json.dumps(event) + "\n")
    return path.stat().st_size


#: Runs mimirctl, then prints its peak resident memory (VmHWM: of this process
#: alone; getrusage's ru_maxrss would count the forking pytest's too).
MEASURED: Final = """
import sys
from pathlib import Path
from mimirctl.cli import main
code = main(sys.argv[1:])
status = Path("/proc/self/status").read_text().splitlines()
print(next(line for line in status if line.startswith("VmHWM:")).split()[1], file=sys.stderr)
sys.exit(code)
"""


def peak_rss_of_mimirctl(dirs: DaemonDirs, *args: str) -> int:
    """Run mimirctl (it must succeed); its peak resident memory in bytes."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, *args],
        env=dirs.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stderr.splitlines()[-1]) * 1024


def peak_rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def pages(dirs: DaemonDirs) -> list[dict[str, Any]]:
    found = []
    params: dict[str, Any] = {}
    while True:
        response = blocking_call(dirs.socket, "export.page", params, timeout=60)
        page: dict[str, Any] = response["result"]
        found.append(page)
        if page["cursor"] is None:
            return found
        params["cursor"] = page["cursor"]


@pytest.mark.slow
@pytest.mark.parametrize(("events", "piece"), SHAPES)
def test_a_journal_much_bigger_than_a_page_goes_through_in_bounded_memory(
    dirs: DaemonDirs, tmp_path: Path, events: int, piece: int
) -> None:
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    big_file(small, 10, 1)
    size = big_file(big, events, 2, piece)
    assert size > 2.5 * GROWTH_LIMIT
    with daemon_process(dirs) as daemon:
        # The baselines: the same commands on a journal of ten events.
        import_base = peak_rss_of_mimirctl(dirs, "import", str(small))
        export_base = peak_rss_of_mimirctl(dirs, "export", "-o", str(tmp_path / "s.jsonl"))
        daemon_base = peak_rss_of(daemon.proc.pid)

        import_peak = peak_rss_of_mimirctl(dirs, "import", "--json", str(big))
        export_peak = peak_rss_of_mimirctl(dirs, "export", "-o", str(tmp_path / "b.jsonl"))
        found = pages(dirs)
        daemon_peak = peak_rss_of(daemon.proc.pid)
    records = sum(len(page["records"]) for page in found)
    assert records == 2 + 10 + 2 + events
    assert len(found) >= events * piece // PAGE_BYTES
    for page in found:
        assert len(page["records"]) <= 500
        assert len(json.dumps(page["records"], separators=(",", ":"))) <= PAGE_BYTES + piece + 512
    assert import_peak - import_base < GROWTH_LIMIT
    assert export_peak - export_base < GROWTH_LIMIT
    assert daemon_peak - daemon_base < GROWTH_LIMIT
    with (tmp_path / "b.jsonl").open() as written:
        assert sum(1 for _ in written) == 1 + records  # the header, and every record
