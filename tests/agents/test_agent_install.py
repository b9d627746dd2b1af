"""agent.install / update / remove from a registry: binary archives served by a local
HTTP server on 127.0.0.1, hostile manifests and archives refused, installed agents
listed and started as kinds; the snapshot that ships with Mimir."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import os
import sys
import tarfile
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.agents.registry import platform_key, snapshot
from mimird.wire.codes import ErrorCode
from tests.support.agents import FAKE_AGENT, Client, agent_world
from tests.support.helpers import DaemonDirs

CALL_TIMEOUT_S = 60


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[str]:
    """A static file server of ``root`` on 127.0.0.1; its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def tar_gz(path: Path, files: dict[str, tuple[bytes, int]]) -> str:
    """A .tar.gz of ``{name: (content, mode)}``; its sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, (content, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def fake_agent_script(scenario: Path) -> bytes:
    """A launcher for the scripted fake ACP agent, as an agent's archive would hold."""
    return f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_AGENT}" "{scenario}" "$@"\n'.encode()


def binary_manifest(
    agent_id: str, version: str, url: str, sha256: str | None, **extra: Any
) -> dict[str, Any]:
    target: dict[str, Any] = {"archive": url, "cmd": "./bin/agent", "args": ["--acp"], **extra}
    if sha256 is not None:
        target["sha256"] = sha256
    return {
        "id": agent_id,
        "name": f"Agent {agent_id}",
        "version": version,
        "description": "a test agent",
        "license": "MIT",
        "distribution": {"binary": {platform_key(): target}},
    }


def write_registry(path: Path, *agents: dict[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.0.0", "agents": list(agents), "extensions": []}))
    return str(path)


async def call(client: Client, method: str, params: Any = None) -> Any:
    with trio.fail_after(CALL_TIMEOUT_S):
        return await client.call(method, params)


async def error_of(client: Client, method: str, params: Any) -> dict[str, Any]:
    with trio.fail_after(CALL_TIMEOUT_S):
        return await client.error(method, params)


async def kinds(client: Client) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in (await call(client, "agent.list"))["agents"]}


def test_the_snapshot_ships_with_its_date_source_and_licence() -> None:
    registry = snapshot()
    assert registry.date == "2026-02-07"
    assert registry.commit is not None
    assert {"opencode", "gemini", "claude-code-acp", "codex-acp"} <= set(registry.agents)
    assert registry.agents["gemini"].distributions["npx"].package == "@google/gemini-cli"
    licence = resources.files("mimird.agents").joinpath("registry_snapshot/LICENSE")
    assert "Apache License" in licence.read_text()


async def test_a_binary_agent_installs_from_a_registry_url_lists_and_starts(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {"prompts": [[{"do": "chunks", "count": 1}]]}) as world:
        served = dirs.root / "served"
        sha = tar_gz(
            served / "agent.tar.gz", {"bin/agent": (fake_agent_script(world.scenario_path), 0o644)}
        )
        with http_server(served) as base:
            write_registry(
                served / "registry.json",
                binary_manifest("tiny-bin", "1.2.3", f"{base}/agent.tar.gz", sha),
            )
            async with Client.connect(world.daemon.socket) as client:
                result = await call(
                    client,
                    "agent.install",
                    {"name": "tiny-bin", "registry": f"{base}/registry.json"},
                )
                agent = result["agent"]
                home = dirs.data / "agents" / "tiny-bin" / "1.2.3"
                assert (agent["kind"], agent["version"], agent["distribution"]) == (
                    "tiny-bin",
                    "1.2.3",
                    "binary",
                )
                assert agent["path"] == str(home / "bin" / "agent")
                assert os.access(agent["path"], os.X_OK)  # marked executable

                listed = (await kinds(client))["tiny-bin"]
                assert (listed["found"], listed["source"], listed["version"]) == (
                    True,
                    "installed",
                    "1.2.3",
                )
                assert listed["registry"] == f"{base}/registry.json"
                assert listed["args"] == ["--acp"]
                # agent.probe (mimirctl doctor) finds it as agent.list and a start do.
                probed = await call(client, "agent.probe", {"kind": "tiny-bin"})
                assert probed["ok"], probed

                session = await call(
                    client,
                    "session.create",
                    {"project": world.project, "title": "t", "agent": "tiny-bin"},
                )
                prompt = await call(
                    client, "session.prompt", {"session": session["id"], "text": "hi"}
                )
                assert prompt["stop_reason"] == "end_turn"
                started = await call(
                    client, "session.events", {"session": session["id"], "kind": "agent_starting"}
                )
                assert started["events"][0]["data"]["command"] == agent["path"]


async def test_an_archive_whose_sha256_differs_from_the_manifest_is_refused(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world:
        served = dirs.root / "served"
        tar_gz(served / "agent.tar.gz", {"bin/agent": (b"#!/bin/sh\n", 0o755)})
        with http_server(served) as base:
            registry = write_registry(
                dirs.root / "registry.json",
                binary_manifest("tiny-bin", "1.0.0", f"{base}/agent.tar.gz", "0" * 64),
            )
            async with Client.connect(world.daemon.socket) as client:
                error = await error_of(
                    client, "agent.install", {"name": "tiny-bin", "registry": registry}
                )
                assert error["code"] == ErrorCode.AGENT_UNAVAILABLE
                assert "sha256" in error["message"]
                assert "refused" in error["message"]
                assert "tiny-bin" not in await kinds(client)
        assert not (dirs.data / "agents" / "tiny-bin" / "1.0.0").exists()


@pytest.mark.parametrize(
    ("entry", "why"),
    [("../escaped", "outside"), ("{root}/absolute-escape", "outside"), ("bin/../../up", "outside")],
)
async def test_an_archive_with_an_entry_outside_its_directory_is_refused(
    dirs: DaemonDirs, entry: str, why: str
) -> None:
    entry = entry.format(root=dirs.root)  # absolute: where the test can look
    async with agent_world(dirs, {}) as world:
        served = dirs.root / "served"
        sha = tar_gz(
            served / "agent.tar.gz",
            {"bin/agent": (b"#!/bin/sh\n", 0o755), entry: (b"gotcha", 0o644)},
        )
        with http_server(served) as base:
            registry = write_registry(
                dirs.root / "registry.json",
                binary_manifest("tiny-bin", "1.0.0", f"{base}/agent.tar.gz", sha),
            )
            async with Client.connect(world.daemon.socket) as client:
                error = await error_of(
                    client, "agent.install", {"name": "tiny-bin", "registry": registry}
                )
        assert error["code"] == ErrorCode.AGENT_UNAVAILABLE
        assert why in error["message"]
        agents = dirs.data / "agents"
        assert not (agents / "escaped").exists()
        assert not (agents / "tiny-bin" / "up").exists()
        assert not (dirs.root / "absolute-escape").exists()
        assert not (agents / "tiny-bin" / "1.0.0").exists()


async def test_an_archive_with_a_link_is_refused(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world:
        served = dirs.root / "served"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            link = tarfile.TarInfo("bin/agent")
            link.type, link.linkname = tarfile.SYMTYPE, "/bin/sh"
            tar.addfile(link)
        served.mkdir()
        (served / "agent.tar.gz").write_bytes(buffer.getvalue())
        with http_server(served) as base:
            registry = write_registry(
                dirs.root / "registry.json",
                binary_manifest("tiny-bin", "1.0.0", f"{base}/agent.tar.gz", None),
            )
            async with Client.connect(world.daemon.socket) as client:
                error = await error_of(
                    client, "agent.install", {"name": "tiny-bin", "registry": registry}
                )
        assert error["code"] == ErrorCode.AGENT_UNAVAILABLE
        assert "link" in error["message"]


async def test_update_installs_the_newer_version_and_remove_waits_for_the_session(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world:
        served = dirs.root / "served"
        script = fake_agent_script(world.scenario_path)
        sha1 = tar_gz(served / "v1.tar.gz", {"bin/agent": (script, 0o755)})
        sha2 = tar_gz(served / "v2.tar.gz", {"bin/agent": (script, 0o755)})
        with http_server(served) as base:
            registry = dirs.root / "registry.json"
            write_registry(
                registry, binary_manifest("tiny-bin", "1.0.0", f"{base}/v1.tar.gz", sha1)
            )
            async with Client.connect(world.daemon.socket) as client:
                await call(client, "agent.install", {"name": "tiny-bin", "registry": str(registry)})
                again = await call(client, "agent.update", {})
                assert (again["updated"], again["unchanged"]) == ([], ["tiny-bin"])

                # The update reads the registry the agent came from.
                write_registry(
                    registry, binary_manifest("tiny-bin", "1.1.0", f"{base}/v2.tar.gz", sha2)
                )
                updated = await call(client, "agent.update", {"name": "tiny-bin"})
                [one] = updated["updated"]
                assert (one["agent"]["version"], one["previous_version"]) == ("1.1.0", "1.0.0")
                home = dirs.data / "agents" / "tiny-bin"
                assert sorted(p.name for p in home.iterdir()) == ["1.1.0", "installed.json"]

                session = await call(
                    client,
                    "session.create",
                    {"project": world.project, "title": "t", "agent": "tiny-bin"},
                )
                await call(client, "session.resume", {"session": session["id"]})
                refused = await error_of(client, "agent.remove", {"name": "tiny-bin"})
                assert refused["code"] == ErrorCode.INVALID_STATE
                assert session["id"] in refused["message"]
                assert (home / "1.1.0" / "bin" / "agent").exists()

                await call(client, "session.stop", {"session": session["id"]})
                removed = await call(client, "agent.remove", {"name": "tiny-bin"})
                assert (removed["id"], removed["version"]) == ("tiny-bin", "1.1.0")
                assert not home.exists()
                assert "tiny-bin" not in await kinds(client)
                missing = await error_of(client, "agent.remove", {"name": "tiny-bin"})
                assert missing["code"] == ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: m.update(id="../evil"), "id"),
        (lambda m: m.update(version="1.0.0/../../x"), "version"),
        (lambda m: m.update(version=".."), "version"),
        (lambda m: m["distribution"]["binary"][platform_key()].update(cmd="../../bin/sh"), "cmd"),
        (lambda m: m["distribution"]["binary"][platform_key()].update(cmd="/bin/sh"), "cmd"),
        (lambda m: m["distribution"]["binary"][platform_key()].update(sha256="xyz"), "sha256"),
        (
            lambda m: m["distribution"]["binary"][platform_key()].update(archive="file:///etc/x"),
            "archive",
        ),
        (lambda m: m["distribution"]["binary"][platform_key()].update(env={"A=B": "1"}), "env"),
        (lambda m: m["distribution"]["binary"][platform_key()].update(args=["x"] * 65), "args"),
        (lambda m: m["distribution"].update(npx={"package": "../../etc@1.0.0"}), "package"),
        (lambda m: m["distribution"].update(uvx={"package": "a b"}), "package"),
    ],
)
async def test_a_hostile_manifest_is_refused_saying_what_is_wrong(
    dirs: DaemonDirs, mutate: Any, field: str
) -> None:
    manifest = binary_manifest("tiny-bin", "1.0.0", "http://127.0.0.1:9/a.tar.gz", None)
    mutate(manifest)
    registry = write_registry(dirs.root / "registry.json", manifest)
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as client:
        error = await error_of(client, "agent.install", {"name": "tiny-bin", "registry": registry})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert field in error["message"]
        assert not (dirs.data / "agents").exists() or not any((dirs.data / "agents").iterdir())


@pytest.mark.parametrize("name", ["../x", "Tiny", "a/b", "x" * 65])
async def test_a_hostile_name_is_refused(dirs: DaemonDirs, name: str) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as client:
        error = await error_of(client, "agent.install", {"name": name})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        error = await error_of(client, "agent.remove", {"name": name})
        assert error["code"] == ErrorCode.INVALID_PARAMS


async def test_an_agent_not_in_the_registry_is_refused_with_what_it_has(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as client:
        error = await error_of(client, "agent.install", {"name": "no-such-agent"})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert "opencode" in error["message"]
        assert "snapshot of 2026-02-07" in error["message"]


async def test_reinstalling_the_version_a_running_session_uses_is_refused(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, {}) as world:
        served = dirs.root / "served"
        sha = tar_gz(
            served / "a.tar.gz", {"bin/agent": (fake_agent_script(world.scenario_path), 0o755)}
        )
        with http_server(served) as base:
            registry = write_registry(
                dirs.root / "registry.json",
                binary_manifest("tiny-bin", "1.0.0", f"{base}/a.tar.gz", sha),
            )
            params = {"name": "tiny-bin", "registry": registry}
            async with Client.connect(world.daemon.socket) as client:
                await call(client, "agent.install", params)
                session = await call(
                    client,
                    "session.create",
                    {"project": world.project, "title": "t", "agent": "tiny-bin"},
                )
                await call(client, "session.resume", {"session": session["id"]})
                refused = await error_of(client, "agent.install", params)
                assert refused["code"] == ErrorCode.INVALID_STATE
                assert session["id"] in refused["message"]
                await call(client, "session.stop", {"session": session["id"]})
                again = await call(client, "agent.install", params)
                assert again["agent"]["version"] == "1.0.0"
