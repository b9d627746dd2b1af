#!/usr/bin/env python3
"""Follow one Mimir session's events, answer its permission requests (docs/clients.md).

python3 follow.py SESSION [--after SEQ] [--allow | --deny] [--socket PATH] prints one line
per event (`seq kind what`), agent text made safe for a terminal. It survives a daemon
restart: it resumes after the last event it printed, nothing missed or printed twice."""

import argparse
import json
import os
import re
import socket
import sys
import time

PROTOCOL_VERSION = 1  # the socket API this client speaks (daemon.status says the daemon's)
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def safe(text, limit=200):
    """Agent text as it may reach a terminal: control and bidi characters made visible."""
    text = str(text)
    return CONTROLS.sub(lambda m: f"\\u{ord(m[0]):04x}", text[:limit] + "…"[: len(text) > limit])


def socket_path(flag):
    """--socket, $MIMIR_SOCKET, $MIMIR_RUNTIME_DIR, $XDG_RUNTIME_DIR/mimir, /tmp/mimir-UID."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    runtime = os.path.join(xdg, "mimir") if xdg.startswith("/") else f"/tmp/mimir-{os.geteuid()}"
    runtime = os.environ.get("MIMIR_RUNTIME_DIR") or runtime
    return flag or os.environ.get("MIMIR_SOCKET") or os.path.join(runtime, "mimird.sock")


class Connection:
    def __init__(self, sock):
        self.sock, self.lines, self.next_id = sock, sock.makefile("rb"), 0

    def send(self, method, params):
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        return self.next_id

    def read(self):
        line = self.lines.readline()  # one JSON-RPC message per line
        if not line:
            raise ConnectionError("mimird closed the connection")
        return json.loads(line)

    def call(self, method, params):
        request_id = self.send(method, params)
        while True:
            message = self.read()
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']['message']}")
                return message["result"]


def describe(event):
    kind, data = event["kind"], event["data"]
    if kind == "message":
        return f"{data.get('role')}: {safe(data.get('text', ''))}"
    if kind == "update":
        return safe(data.get("update", {}).get("sessionUpdate", ""))
    if kind == "permission_requested":
        return f"{safe(data.get('title'))} (permission {safe(data.get('permission'))})"
    return safe(json.dumps(data))


def follow(conn, session, cursor, answer):
    """Print the session's events after `cursor`; returns only by raising."""
    status = conn.call("daemon.status", {})
    if status["protocol_version"] != PROTOCOL_VERSION:
        sys.exit(f"mimird speaks protocol {status['protocol_version']}, this client {PROTOCOL_VERSION}")
    sub = conn.call("subscribe", {"session": session, "after_seq": cursor[0]})
    while True:
        message = conn.read()
        params = message.get("params") or {}
        if message.get("method") != "event" or params.get("subscription") != sub["subscription"]:
            if "error" in message:  # an answer to our permission.respond
                print(f"# answer refused: {safe(message['error']['message'])}", flush=True)
            continue
        event = params["event"]
        if event["seq"] <= cursor[0]:
            continue  # never twice
        cursor[0] = event["seq"]
        print(f"{event['seq']} {event['kind']} {describe(event)}", flush=True)
        if event["kind"] == "permission_requested" and answer:
            conn.send("permission.respond", {"permission": event["data"]["permission"], "kind": answer})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session")
    parser.add_argument("--after", type=int, default=0, help="start after this seq (0: all)")
    parser.add_argument("--socket")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--allow", action="store_const", const="allow_once", dest="answer")
    choice.add_argument("--deny", action="store_const", const="reject_once", dest="answer")
    args = parser.parse_args()
    path, cursor, last = socket_path(args.socket), [args.after], None
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
                follow(Connection(sock), args.session, cursor, args.answer)
        except (OSError, ValueError) as exc:  # mimird stopped (or restarts): try again
            if last != (last := str(exc)):  # once per kind of failure, not every 0.2 s
                print(f"# reconnecting after seq {cursor[0]} ({safe(exc)})", file=sys.stderr, flush=True)
            time.sleep(0.2)
        except RuntimeError as exc:  # the daemon refused: an unknown session, ...
            sys.exit(safe(exc))
        except KeyboardInterrupt:
            return


if __name__ == "__main__":
    main()
