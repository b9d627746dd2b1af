"""``mimirctl export`` and ``mimirctl import``: projects, sessions, runs and their
journals as a JSON Lines file, out of one mimird and into another.

Both stream: ``export`` writes each page as it arrives, ``import`` reads the file
a batch of lines at a time, so that memory stays flat whatever the file's size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, Any, Final

from mimirctl import render
from mimirctl.client import Client, loads
from mimirctl.commands import EXIT_ALREADY_EXISTS, EXIT_OK, UsageError, add_command
from mimirctl.commands.session import time_arg

#: Records per export page and per import batch.
PAGE: Final = 500
#: An import batch is sent once it holds this many bytes (a longer line goes alone).
BATCH_BYTES: Final = 1 << 20
#: The longest line an import reads (the daemon's largest record, with room for JSON).
MAX_LINE_BYTES: Final = 9 << 20
#: The largest ait42 file read (it is one JSON document, read whole).
MAX_AIT42_BYTES: Final = 64 << 20


def _line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    if args.output is None and sys.stdout.isatty():
        raise UsageError("export writes JSON Lines: redirect it to a file (> FILE) or give -o FILE")
    client.set_timeout(None)  # a page of a big journal may take a while
    params: dict[str, Any] = {"limit": PAGE}
    for name in ("project", "session", "since"):
        if (value := getattr(args, name)) is not None:
            params[name] = value
    out: IO[str]
    if args.output is not None:
        try:
            out = open(args.output, "x", encoding="utf-8")  # noqa: SIM115 (closed below)
        except FileExistsError:
            raise UsageError(f"{args.output} exists already; export never overwrites") from None
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    else:
        out = sys.stdout
    counts: dict[str, int] = {}
    try:
        while True:
            page = client.call("export.page", params)
            if page.get("header") is not None:
                out.write(_line(page["header"]))
            for record in page["records"]:
                kind = record.get("type", "?")
                counts[kind] = counts.get(kind, 0) + 1
                out.write(_line(record))
            if page["cursor"] is None:
                break
            params["cursor"] = page["cursor"]
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    shown = ", ".join(f"{kind} {n}" for kind, n in counts.items())
    render.say(
        f"exported {sum(counts.values())} records" + (f" ({shown})" if shown else ""), err=True
    )
    return EXIT_OK


def _records(stream: IO[bytes], name: str, first_line: int) -> Any:
    """``(line number, record)`` for every line of ``stream`` after the header."""
    number = first_line
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES:
            raise UsageError(f"{name}:{number}: the line is longer than {MAX_LINE_BYTES} bytes")
        try:
            record = loads(line)
        except ValueError as exc:
            raise UsageError(
                f"{name}:{number}: not JSON ({exc}); the import stopped there (the session "
                "it belongs to and everything after it were not imported)"
            ) from None
        yield number, record, len(line)
        number += 1


def _send(client: Client, header: Any, records: Any) -> dict[str, Any]:
    client.call("import.begin", {"header": header})
    batch: list[Any] = []
    size = 0
    first = 0
    try:
        for number, record, length in records:
            if batch and (size + length > BATCH_BYTES or len(batch) >= PAGE):
                client.call("import.records", {"records": batch, "first_line": first})
                batch, size = [], 0
            if not batch:
                first = number
            batch.append(record)
            size += length
    except UsageError:
        # The records before the bad line go in (each session before it whole); the
        # session in progress is dropped as the connection closes.
        if batch:
            client.call("import.records", {"records": batch, "first_line": first})
        raise
    if batch:
        client.call("import.records", {"records": batch, "first_line": first})
    report: dict[str, Any] = client.call("import.end")
    return report


def _report_text(r: dict[str, Any], where: str = "line") -> str:
    lines = [
        f"imported: projects {r['projects']}, runs {r['runs']}, sessions {r['sessions']} "
        f"(events {r['events']}, run events {r['run_events']}, usage rows {r['usage']})"
    ]
    if r["statuses_changed"]:
        lines.append(
            f"{r['statuses_changed']} sessions had an agent at work: they are stopped here"
        )
    for foreign in r.get("foreign_workspaces", []):
        lines.append(
            f"session {foreign['session_id']}: its workspace's path {foreign['path']} holds a "
            "directory this mimird did not make; it is left alone, and no agent works in it "
            f"until 'mimirctl session repair {foreign['session_id']}' adopts it"
        )
    acting = r.get("acting_settings_total", 0)
    if acting:
        lines.append(
            f"{acting} settings came with the file that run commands or let agents act "
            "without asking here; look at them before starting sessions (mimirctl project "
            "show, session show, run show; change them with project update, session update):"
        )
        lines.extend(
            f"  {s['type']} {s['id']}: {s['key']} = {render.visible(s['value'])}"
            for s in r["acting_settings"]
        )
        if acting > len(r["acting_settings"]):
            lines.append(f"  ... and {acting - len(r['acting_settings'])} more")
    for missing in r["missing_paths"]:
        lines.append(
            f"project {missing['name']} ({missing['project_id']}): {missing['path']} is not on "
            "this machine; imported anyway, its sessions' workspaces are missing"
        )
    if r["conflicts_total"]:
        lines.append(
            f"{r['conflicts_total']} conflicts (not imported, nothing overwritten)"
            + (f", {r['skipped']} records of theirs skipped" if r["skipped"] else "")
            + ":"
        )
        lines.extend(
            f"  {where} {c['line']}: {c['type']} {c['id']}: {c['reason']}" for c in r["conflicts"]
        )
        if r["conflicts_total"] > len(r["conflicts"]):
            lines.append(f"  ... and {r['conflicts_total'] - len(r['conflicts'])} more")
    return "\n".join(lines)


def cmd_import(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)  # a session's journal is written in one transaction
    if args.file == "-":
        stream = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    else:
        try:
            stream = open(args.file, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    with stream:
        if args.source == "ait42":
            from mimirctl import ait42

            data = stream.read(MAX_AIT42_BYTES + 1)
            if len(data) > MAX_AIT42_BYTES:
                raise UsageError(f"{args.file} is larger than {MAX_AIT42_BYTES} bytes")
            project_path = os.path.realpath(args.project or os.getcwd())
            try:
                converted = ait42.convert(data, project_path, _projects(client))
            except ait42.Ait42Error as exc:
                raise UsageError(f"{args.file}: {exc}") from None
            records = (
                (number, record, len(_line(record)))
                for number, record in enumerate(converted.records, start=2)
            )
            report = _send(client, converted.header, records)
        else:
            first = stream.readline(MAX_LINE_BYTES + 1)
            try:
                header = loads(first)
            except ValueError:
                raise UsageError(
                    f"{args.file}:1: not the header of a mimir-export file (not JSON)"
                ) from None
            report = _send(client, header, _records(stream, args.file, 2))
    if args.json:
        render.say(render.json_text(report), exact=True)
    else:
        # An ait42 file is converted into records first: a conflict names its record.
        render.say(_report_text(report, "record" if args.source == "ait42" else "line"))
    return EXIT_ALREADY_EXISTS if report["conflicts_total"] else EXIT_OK


def _projects(client: Client) -> list[dict[str, Any]]:
    projects: list[dict[str, Any]] = client.call("project.list", {"include_archived": True})[
        "projects"
    ]
    return projects


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    export = add_command(
        commands,
        common,
        "export",
        cmd_export,
        "write projects, runs, sessions and their journals as JSON Lines",
    )
    export.add_argument("--project", metavar="P", help="only this project (name or id)")
    export.add_argument("--session", metavar="ID", help="only this session (with its run)")
    export.add_argument(
        "--since",
        type=time_arg,
        metavar="TIME",
        help="only sessions and runs updated since TIME (e.g. 2h, 2026-01-31)",
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (must not exist)")
    imp = add_command(
        commands,
        common,
        "import",
        cmd_import,
        "restore an export file into this mimird (exits 5 when some records conflict)",
    )
    imp.add_argument(
        "file", metavar="FILE", help="the file (JSON Lines, or ait42 JSON); - for stdin"
    )
    imp.add_argument(
        "--from",
        dest="source",
        choices=("mimir", "ait42"),
        default="mimir",
        help="the file's format (default: a mimirctl export)",
    )
    imp.add_argument(
        "--project",
        metavar="PATH",
        help="with --from ait42: the repository the sessions worked on (default: .)",
    )
