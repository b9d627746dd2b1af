"""docs/openrpc.json is the OpenRPC document the daemon serves (``rpc.discover``), so
plugin authors can generate clients from the repository. Regenerate it with
``make openrpc`` after adding or changing a method."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.helpers import DaemonDirs, TrioClient, in_process_daemon

DOC = Path(__file__).resolve().parents[2] / "docs" / "openrpc.json"


def _differences(checked_in: Any, served: Any, path: str = "") -> list[str]:
    """Where the two documents differ (paths), at most a few."""
    if isinstance(checked_in, dict) and isinstance(served, dict):
        found = []
        for key in sorted(set(checked_in) | set(served)):
            if key not in served:
                found.append(f"{path}/{key}: only in docs/openrpc.json")
            elif key not in checked_in:
                found.append(f"{path}/{key}: only in the daemon's document")
            else:
                found += _differences(checked_in[key], served[key], f"{path}/{key}")
        return found[:20]
    if isinstance(checked_in, list) and isinstance(served, list):
        if len(checked_in) != len(served):
            names = [m.get("name") for m in served if isinstance(m, dict)]
            return [f"{path}: {len(checked_in)} items checked in, {len(served)} served {names}"]
        found = []
        for index, (a, b) in enumerate(zip(checked_in, served, strict=True)):
            label = a.get("name", index) if isinstance(a, dict) else index
            found += _differences(a, b, f"{path}[{label}]")
        return found[:20]
    return [] if checked_in == served else [f"{path}: {checked_in!r:.80} != {served!r:.80}"]


async def test_the_checked_in_openrpc_document_is_the_one_the_daemon_serves(
    dirs: DaemonDirs,
) -> None:
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as client:
        served = await client.call("rpc.discover")
    checked_in = json.loads(DOC.read_text(encoding="utf-8"))
    differences = _differences(checked_in, served)
    assert not differences, "docs/openrpc.json is out of date (run make openrpc):\n" + "\n".join(
        differences
    )
    assert checked_in == served


def test_the_difference_report_names_what_changed() -> None:
    old = {"methods": [{"name": "a.b", "params": []}], "info": {"version": "1"}}
    new = {"methods": [{"name": "a.b", "params": [{"name": "x"}]}], "info": {"version": "1"}}
    assert _differences(old, new) == ["/methods[a.b]/params: 0 items checked in, 1 served ['x']"]
