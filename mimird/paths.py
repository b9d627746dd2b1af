"""Where Mimir keeps things: XDG base directories with fallbacks.

Import-light (``os`` only, not even ``pathlib``) because ``mimirctl`` uses it to
find the socket on every start. Precedence for every path: command-line flag,
then ``MIMIR_*`` environment variable, then the config file, then the XDG
default; this module knows the environment and the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Not even typing at run time (~3 ms with contextlib): annotations are strings
# (PEP 563), and mypy takes any TYPE_CHECKING name for typing.TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

APP: Final = "mimir"
SOCKET_NAME: Final = "mimird.sock"
DATABASE_NAME: Final = "mimir.db"
CONFIG_NAME: Final = "config.toml"
#: Linux ``sun_path`` is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES: Final = 107


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> str:
    value = env.get(var, "")
    # The spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return value
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, fallback)


def fallback_runtime_dir() -> str:
    """Used when ``$XDG_RUNTIME_DIR`` is unset (ssh without pam_systemd, cron)."""
    return f"/tmp/{APP}-{os.geteuid()}"


def runtime_dir(env: Mapping[str, str] = os.environ) -> str:
    """The directory that holds the socket and lock files."""
    if value := env.get("MIMIR_RUNTIME_DIR"):
        return value
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, APP)
    return fallback_runtime_dir()


def data_dir(env: Mapping[str, str] = os.environ) -> str:
    if value := env.get("MIMIR_DATA_DIR"):
        return value
    return os.path.join(_xdg(env, "XDG_DATA_HOME", ".local/share"), APP)


def state_dir(env: Mapping[str, str] = os.environ) -> str:
    if value := env.get("MIMIR_STATE_DIR"):
        return value
    return os.path.join(_xdg(env, "XDG_STATE_HOME", ".local/state"), APP)


def config_file(env: Mapping[str, str] = os.environ) -> str:
    if value := env.get("MIMIR_CONFIG"):
        return value
    return os.path.join(_xdg(env, "XDG_CONFIG_HOME", ".config"), APP, CONFIG_NAME)
