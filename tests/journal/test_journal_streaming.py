"""The journal's delivery guarantees (DESIGN.md invariants 1-3), with a real
daemon, a real agent subprocess and real socket clients."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import trio

from tests.support.agents import Client, agent_world, new_session, write_config
from tests.support.helpers import (
    DaemonDirs,
    blocking_call,
    daemon_process,
    make_repo,
    run_mimirctl,
)

CHUNKS = 3000


def seqs(client: Client, subscription: int) -> list[int]:
    return [p["event"]["seq"] for p in client.events if p["subscription"] == subscription]


async def test_resubscribing_with_the_cursor_gets_every_event_exactly_once(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [[{"do": "chunks", "count": CHUNKS}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        seen: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
            # A client that disconnects mid-stream, twice, each time resuming from its cursor.
            cursor = 0
            for _ in range(3):
                async with Client.connect(world.daemon.socket) as sub_client:
                    sub = await sub_client.call(
                        "subscribe", {"session": session_id, "after_seq": cursor}
                    )
                    await sub_client.wait_for(lambda e, n=cursor: e["seq"] >= n + 500)
                    got = seqs(sub_client, sub["subscription"])
                seen += got
                cursor = got[-1]
        last = (await c.call("session.get", {"session": session_id}))["last_seq"]
        async with Client.connect(world.daemon.socket) as sub_client:
            sub = await sub_client.call("subscribe", {"session": session_id, "after_seq": cursor})
            await sub_client.wait_for(lambda e: e["seq"] == last)
            seen += seqs(sub_client, sub["subscription"])
        assert seen == list(range(1, last + 1))
        stored = (await c.call("session.events", {"session": session_id, "limit": 10_000}))[
            "events"
        ]
        assert [e["seq"] for e in stored] == seen
        updates = [e for e in stored if e["kind"] == "update"]
        assert len(updates) == CHUNKS


async def test_a_client_that_never_reads_does_not_hold_up_the_others(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "chunks", "count": 5000, "text": "x" * 200}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        # The stuck client subscribes, then reads nothing while ~5 MB of events flow.
        stuck = await trio.open_unix_socket(str(world.daemon.socket))
        async with stuck:
            params = {"session": session_id, "after_seq": 0}
            request = {"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": params}
            await stuck.send_all(json.dumps(request).encode() + b"\n")
            async with Client.connect(world.daemon.socket) as reader:
                sub = await reader.call("subscribe", {"session": session_id, "after_seq": 0})
                with trio.fail_after(25):
                    result = await c.call("session.prompt", {"session": session_id, "text": "go"})
                    await reader.wait_for(lambda e: e["seq"] == result["end_seq"], wait_s=25)
                got_live = seqs(reader, sub["subscription"])
                assert got_live == list(range(1, len(got_live) + 1))
                assert len(got_live) >= result["end_seq"]
            # Now the stuck client reads: everything, once, in order (caught up from the db).
            buffer = b""
            got: list[int] = []
            with trio.fail_after(25):
                while not got or got[-1] < result["end_seq"]:
                    buffer += await stuck.receive_some(1 << 20)
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        message = json.loads(line)
                        if message.get("method") == "event":
                            got.append(message["params"]["event"]["seq"])
            # The turn's end is followed by its status change: at least up to end_seq.
            assert got == list(range(1, len(got) + 1))
            assert len(got) >= result["end_seq"]


async def test_search_finds_the_agents_words(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "chunks", "count": 3, "text": "zebra"}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "find the giraffe"})
        hits = (await c.call("search", {"query": "giraffe"}))["hits"]
        assert [h["kind"] for h in hits] == ["prompt"]
        hits = (await c.call("search", {"query": "zebra0zebra1zebra2"}))["hits"]
        assert [(h["kind"], h["session_id"]) for h in hits] == [("message", session_id)]


@pytest.mark.slow
def test_a_subscriber_resumes_across_a_daemon_restart(dirs: DaemonDirs) -> None:
    """Events stored before a restart and made after it arrive once each, in order."""
    write_config(dirs, {"prompts": [[{"do": "chunks", "count": 50}]] * 2})
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        blocking_call(dirs.socket, "project.add", {"path": str(repo), "name": "demo"})
        session = blocking_call(dirs.socket, "session.create", {"project": "demo"})["result"]
        first = run_mimirctl(dirs, "prompt", session["id"], "one", "--json", timeout=60)
        assert first.returncode == 0, first.stderr
        cursor = 40  # the client had seen up to here when the daemon went away
        assert daemon.terminate() == 0
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        status = blocking_call(dirs.socket, "session.get", {"session": session["id"]})["result"]
        assert status["status"] == "stopped"
        script = (
            "import json,socket,sys\n"
            "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f=s.makefile('rb')\n"
            "req={'jsonrpc':'2.0','id':1,'method':'subscribe',"
            "'params':{'session':sys.argv[2],'after_seq':int(sys.argv[3])}}\n"
            "s.sendall(json.dumps(req).encode()+b'\\n')\n"
            "last=int(sys.argv[4])\n"
            "while True:\n"
            "    m=json.loads(f.readline())\n"
            "    if m.get('method')=='event':\n"
            "        print(m['params']['event']['seq'], flush=True)\n"
            "        if m['params']['event']['kind']=='turn_ended' and "
            "m['params']['event']['seq']>last: break\n"
        )
        watcher = subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                str(dirs.socket),
                session["id"],
                str(cursor),
                str(status["last_seq"]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            second = run_mimirctl(dirs, "prompt", session["id"], "two", timeout=60)
            assert second.returncode == 0, second.stderr
            out, _ = watcher.communicate(timeout=30)
        finally:
            watcher.kill()
        last = blocking_call(dirs.socket, "session.get", {"session": session["id"]})["result"]
        got = [int(line) for line in out.split()]
        assert got == list(range(cursor + 1, got[-1] + 1))
        # Up to the second turn's end; only its status change may follow.
        assert got[-1] >= last["last_seq"] - 1


@pytest.mark.slow
def test_mimirctl_prompt_streams_the_reply_and_exits_0(dirs: DaemonDirs) -> None:
    scenario: dict[str, Any] = {
        "prompts": [[{"do": "echo"}, {"do": "tool_call"}, {"do": "chunks", "count": 2}]]
    }
    write_config(dirs, scenario)
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        blocking_call(dirs.socket, "project.add", {"path": str(repo), "name": "demo"})
        session = blocking_call(dirs.socket, "session.create", {"project": "demo"})["result"]
        done = run_mimirctl(dirs, "prompt", session["id"][:8], "hello there", timeout=60)
        assert done.returncode == 0, done.stderr
        assert "hello there" in done.stdout
        assert "[agent started]" in done.stdout, "the first prompt starts the agent"
        assert "⚙ Edit [pending]" in done.stdout
        assert "chunk0chunk1" in done.stdout
        assert "[turn ended: end_turn]" in done.stdout
        as_json = run_mimirctl(dirs, "log", session["id"], "--json", timeout=60)
        kinds = [json.loads(line)["kind"] for line in as_json.stdout.splitlines()]
        assert "prompt" in kinds
        assert "turn_ended" in kinds
        idle = run_mimirctl(dirs, "cancel", session["id"])
        assert idle.stdout == "no turn was running\n", idle.stderr
        logs = run_mimirctl(dirs, "logs", session["id"])
        assert logs.returncode == 0
        assert "starting" in logs.stdout
        stopped = run_mimirctl(dirs, "stop", session["id"])
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped" in stopped.stdout
        # attach replays the last turn, and ends since the agent is at rest.
        attached = run_mimirctl(dirs, "attach", session["id"], timeout=30)
        assert attached.returncode == 0, attached.stderr
        assert attached.stdout.startswith("> hello there\n")
        assert "[turn ended: end_turn]" in attached.stdout
        assert attached.stdout.rstrip().endswith("[session stopped]")


async def test_after_id_cursors_for_one_session_and_for_all(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [[{"do": "chunks", "count": 5}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "go"})
        stored = (await c.call("session.events", {"session": session_id}))["events"]
        third = stored[2]
        one = await c.call("subscribe", {"session": session_id, "after_id": third["id"]})
        assert (one["cursor_kind"], one["cursor"]) == ("seq", 3)
        every = await c.call("subscribe", {"after_id": third["id"]})
        assert (every["cursor_kind"], every["cursor"]) == ("id", third["id"])
        for sub in (one, every):
            last = stored[-1]["id"]
            await c.wait_for(lambda e, n=last: e["id"] == n, subscription=sub["subscription"])
        # Both have caught up; a second turn's events follow on each, and the last of
        # them closes the list: a duplicate or a gap anywhere before it would show.
        await c.call("session.prompt", {"session": session_id, "text": "again"})
        stored = (await c.call("session.events", {"session": session_id}))["events"]
        for sub in (one, every):
            last = stored[-1]["id"]
            await c.wait_for(lambda e, n=last: e["id"] == n, subscription=sub["subscription"])
        got_one = [p["event"]["seq"] for p in c.events if p["subscription"] == one["subscription"]]
        got_all = [p["event"]["id"] for p in c.events if p["subscription"] == every["subscription"]]
        assert got_one == [e["seq"] for e in stored[3:]]
        assert got_all == [e["id"] for e in stored[3:]]
        error = await c.error("subscribe", {"after_seq": 1})
        assert error["data"]["field"] == "after_seq"
