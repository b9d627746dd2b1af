"""``mimirctl status`` and ``mimirctl metrics``: the daemon itself."""

from __future__ import annotations

import argparse

from mimirctl import render
from mimirctl.client import protocol_skew
from mimirctl.commands import EXIT_OK, add_command, emit

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    from typing import Any

    from mimirctl.client import Client


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    status = client.call("daemon.status")

    def human(s: dict[str, Any]) -> str:
        c = s["counts"]
        text = render.fields(
            [
                ("mimird", f"{s['version']} (protocol {s['protocol_version']}), pid {s['pid']}"),
                ("uptime", render.duration(s["uptime_s"])),
                (
                    "socket",
                    s["paths"]["socket"] + (" (socket-activated)" if s["socket_activated"] else ""),
                ),
                (
                    "database",
                    f"{s['paths']['database']} ({render.human_bytes(s['database_size_bytes'])}, "
                    f"schema {s['schema_revision']}"
                    f"{', encrypted' if s['database_encrypted'] else ''})",
                ),
                ("config", s["paths"]["config"] or "(none: embedded defaults)"),
                ("projects", f"{c['projects']} ({c['archived_projects']} archived)"),
                ("sessions", c["sessions"]),
                ("connections", c["connections"]),
            ]
            + ([("usage today", render.usage(u))] if (u := s.get("usage_today")) else [])
        )
        if skew := protocol_skew(s):
            text += f"\nwarning: {skew}"
        return text

    emit(args, status, human)
    return EXIT_OK


def cmd_metrics(client: Client, args: argparse.Namespace) -> int:
    metrics = client.call("daemon.metrics")
    if args.json:
        render.say(render.json_text(metrics), exact=True)
    else:
        # The exposition as it is (for a node-exporter textfile), control characters
        # made visible (its label values escape newlines already).
        render.write_exact(render.visible(metrics["text"], multiline=True))
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    add_command(commands, common, "status", cmd_status, "show the daemon's status")
    add_command(
        commands,
        common,
        "metrics",
        cmd_metrics,
        "print the daemon's metrics in the Prometheus text format (for a textfile collector)",
    )
