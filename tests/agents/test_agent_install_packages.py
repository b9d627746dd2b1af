"""agent.install of npx and uvx distributions: a real npm package from the npm
registry, a wheel built here installed with pip into a venv, missing npm, two
installs of one agent at once; and ``mimirctl agent ls`` saying how to get a kind."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.wire.codes import ErrorCode
from tests.agents.test_agent_install import (
    binary_manifest,
    call,
    error_of,
    http_server,
    kinds,
    tar_gz,
    write_registry,
)
from tests.support.agents import Client, agent_world
from tests.support.helpers import DaemonDirs


def package_manifest(kind: str, agent_id: str, package: str, version: str) -> dict[str, Any]:
    return {
        "id": agent_id,
        "name": agent_id,
        "version": version,
        "description": "a test agent",
        "license": "ISC",
        "distribution": {kind: {"package": f"{package}@{version}", "env": {"TINY": "1"}}},
    }


@pytest.mark.slow
async def test_an_npm_package_installs_pinned_into_the_data_dir_and_runs(
    dirs: DaemonDirs,
) -> None:
    # semver: a small package on the npm registry with a bin and no dependencies.
    registry = write_registry(
        dirs.root / "registry.json", package_manifest("npx", "semver", "semver", "7.6.3")
    )
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as client:
        with trio.fail_after(300):
            result = await client.call("agent.install", {"name": "semver", "registry": registry})
        agent = result["agent"]
        home = dirs.data / "agents" / "semver" / "7.6.3"
        assert (agent["distribution"], agent["package"], agent["version"]) == (
            "npx",
            "semver",
            "7.6.3",
        )
        assert agent["path"] == str(home / "node_modules" / ".bin" / "semver")
        listed = (await kinds(client))["semver"]
        assert (listed["found"], listed["source"], listed["path"]) == (
            True,
            "installed",
            agent["path"],
        )
        ran = await trio.run_process([agent["path"], "1.2.3"], capture_stdout=True)
        assert ran.stdout.decode().strip() == "1.2.3"
        package = (home / "node_modules" / "semver" / "package.json").read_text()
        assert '"version": "7.6.3"' in package


def tiny_wheel(directory: Path) -> None:
    """A pure-Python wheel of ``tiny-agent`` 1.0.0 whose console script prints 'tiny'."""
    directory.mkdir(parents=True, exist_ok=True)
    info = "tiny_agent-1.0.0.dist-info"
    files = {
        "tinyagent/__init__.py": "def main():\n    print('tiny')\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: tiny-agent\nVersion: 1.0.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\ntiny-agent = tinyagent:main\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    (directory / "tiny_agent-1.0.0-py3-none-any.whl").write_bytes(buffer.getvalue())


@pytest.mark.slow
async def test_a_uvx_package_installs_with_pip_into_a_venv(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = dirs.root / "wheels"
    tiny_wheel(wheels)
    # The daemon hands pip its PIP_* settings: here, this directory and no index.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    registry = write_registry(
        dirs.root / "registry.json", package_manifest("uvx", "tiny-agent", "tiny-agent", "1.0.0")
    )
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as client:
        with trio.fail_after(300):
            result = await client.call(
                "agent.install", {"name": "tiny-agent", "registry": registry}
            )
        path = dirs.data / "agents" / "tiny-agent" / "1.0.0" / "venv" / "bin" / "tiny-agent"
        assert result["agent"]["path"] == str(path)
        assert (await kinds(client))["tiny-agent"]["found"]
        ran = await trio.run_process([str(path)], capture_stdout=True)
        assert ran.stdout.decode().strip() == "tiny"


async def test_missing_npm_is_a_clear_error_saying_how_to_get_it(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = write_registry(
        dirs.root / "registry.json", package_manifest("npx", "semver", "semver", "7.6.3")
    )
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as client:
        empty = dirs.root / "empty-bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        error = await error_of(client, "agent.install", {"name": "semver", "registry": registry})
        monkeypatch.undo()
        assert error["code"] == ErrorCode.AGENT_UNAVAILABLE
        assert "'npm' is not on mimird's PATH" in error["message"]
        assert "nodejs" in error["message"]
        assert "semver" not in await kinds(client)


async def test_a_second_install_of_an_agent_being_installed_is_refused(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = dirs.root / "fake-bin"
    fake_bin.mkdir(parents=True)
    started, release = dirs.root / "npm-started", dirs.root / "npm-release"
    (fake_bin / "node").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "npm").write_text(
        f"#!/bin/sh\ntouch {started}\nwhile [ ! -e {release} ]; do sleep 0.02; done\n"
        "echo 'npm ERR! no network' >&2\nexit 1\n"
    )
    for tool in ("node", "npm"):
        (fake_bin / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    registry = write_registry(
        dirs.root / "registry.json", package_manifest("npx", "semver", "semver", "7.6.3")
    )
    params = {"name": "semver", "registry": registry}
    async with (
        agent_world(dirs, {}) as world,
        Client.connect(world.daemon.socket) as first,
        Client.connect(world.daemon.socket) as second,
    ):
        errors: list[dict[str, Any]] = []

        async def install_first() -> None:
            errors.append(await error_of(first, "agent.install", params))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(install_first)
            with trio.fail_after(30):
                # npm is a subprocess: it can only tell by a file.
                while not await trio.Path(started).exists():  # noqa: ASYNC110
                    await trio.sleep(0.02)
            try:
                with trio.fail_after(20):  # a second npm would wait for the release too
                    refused = await second.error("agent.install", params)
            finally:
                await trio.Path(release).touch()
        assert refused["code"] == ErrorCode.BUSY
        assert "being installed" in refused["message"]
        # The first one ran npm to its end, and says how it failed.
        assert errors[0]["code"] == ErrorCode.AGENT_UNAVAILABLE
        assert "npm ERR! no network" in errors[0]["message"]
        assert "semver" not in await kinds(client=second)


async def test_agent_ls_says_where_each_kind_came_from_and_how_to_get_a_missing_one(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with agent_world(dirs, {}) as world:
        served = dirs.root / "served"
        sha = tar_gz(served / "a.tar.gz", {"bin/agent": (b"#!/bin/sh\n", 0o755)})
        with http_server(served) as base:
            registry = write_registry(
                dirs.root / "registry.json",
                binary_manifest("tiny-bin", "1.0.0", f"{base}/a.tar.gz", sha),
            )
            async with Client.connect(world.daemon.socket) as client:
                await call(client, "agent.install", {"name": "tiny-bin", "registry": registry})
        # No preset's command on the daemon's PATH.
        monkeypatch.setenv("PATH", str(dirs.root / "nothing"))
        listed = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                [sys.executable, "-m", "mimirctl", "agent", "ls"],
                env=dirs.env(PATH=os.defpath),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    [tiny] = [line for line in lines if line.startswith("tiny-bin ")]
    assert "1.0.0" in tiny
    assert f"from {registry}" in tiny
    [fake] = [line for line in lines if line.startswith("fake ")]
    assert " config " in fake
    assert "get opencode: mimirctl agent install opencode" in lines
    assert "get claude: mimirctl agent install claude" in lines
    assert any(line.startswith("goose: install it yourself") for line in lines)


@pytest.mark.slow
async def test_stopping_the_daemon_mid_install_kills_the_tool_and_installs_nothing(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = dirs.root / "fake-bin"
    fake_bin.mkdir(parents=True)
    pid_file = dirs.root / "npm.pid"
    (fake_bin / "node").write_text("#!/bin/sh\nexit 0\n")
    # An npm that never ends by itself.
    (fake_bin / "npm").write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 3600\n")
    for tool in ("node", "npm"):
        (fake_bin / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    registry = write_registry(
        dirs.root / "registry.json", package_manifest("npx", "semver", "semver", "7.6.3")
    )
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as client:
        request = {"jsonrpc": "2.0", "id": 1, "method": "agent.install"}
        params = {"name": "semver", "registry": registry}
        await client.stream.send_all(json.dumps({**request, "params": params}).encode() + b"\n")
        with trio.fail_after(30):
            # npm is a subprocess: it can only tell by a file.
            while not (await trio.Path(pid_file).exists() and pid_file.read_text().strip()):  # noqa: ASYNC110
                await trio.sleep(0.02)
        # Leaving the block stops the daemon, with the install still running.
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (dirs.data / "agents" / "semver" / "7.6.3").exists()
    assert not (dirs.data / "agents" / "semver" / "installed.json").exists()
