"""Where Mimir keeps things: XDG base directories with fallbacks.

Import-light (standard library only) because ``mimirctl`` uses it to find the
socket. Precedence for every path: command-line flag, then ``MIMIR_*``
environment variable, then the config file, then the XDG default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

APP: Final = "mimir"
SOCKET_NAME: Final = "mimird.sock"
DATABASE_NAME: Final = "mimir.db"
CONFIG_NAME: Final = "config.toml"
#: Linux ``sun_path`` is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES: Final = 107


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    value = env.get(var, "")
    # The spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return _home(env) / fallback


def runtime_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The directory that holds the socket and lock files."""
    if value := env.get("MIMIR_RUNTIME_DIR"):
        return Path(value)
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP
    return fallback_runtime_dir()


def fallback_runtime_dir() -> Path:
    """Used when ``$XDG_RUNTIME_DIR`` is unset (ssh without pam_systemd, cron)."""
    return Path(f"/tmp/{APP}-{os.geteuid()}")


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    if value := env.get("MIMIR_DATA_DIR"):
        return Path(value)
    return _xdg(env, "XDG_DATA_HOME", ".local/share") / APP


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    if value := env.get("MIMIR_STATE_DIR"):
        return Path(value)
    return _xdg(env, "XDG_STATE_HOME", ".local/state") / APP


def config_file(env: Mapping[str, str] = os.environ) -> Path:
    if value := env.get("MIMIR_CONFIG"):
        return Path(value)
    return _xdg(env, "XDG_CONFIG_HOME", ".config") / APP / CONFIG_NAME


def default_socket(env: Mapping[str, str] = os.environ) -> Path:
    if value := env.get("MIMIR_SOCKET"):
        return Path(value)
    return runtime_dir(env) / SOCKET_NAME
