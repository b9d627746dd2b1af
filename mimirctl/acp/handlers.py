"""The ACP methods ``mimirctl acp`` answers, each relayed to mimird.

``initialize`` says what is true of Mimir and of the agent kind behind it;
``session/new`` finds (or registers) the project holding ``cwd`` and makes a
Mimir session; ``session/load`` replays a session's journal and follows it live;
``session/list`` lists a directory's sessions; ``session/prompt`` hands the prompt
to mimird with ``session.submit`` (the turn belongs to mimird, not to this
process) and is answered at the turn's end; ``session/cancel``,
``session/set_mode``, ``session/set_model`` and ``session/set_config_option``
(model and mode options) are relayed.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Final

from mimirctl.acp import errors
from mimirctl.acp.errors import DEFERRED, AcpError, invalid
from mimirctl.acp.relay import PendingPrompt
from mimirctl.acp.replay import updates_for
from mimird.wire import jsonrpc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mimirctl.acp.loop import Bridge

PROTOCOL_VERSION: Final = 1
#: Sessions per page of ``session/list``.
LIST_PAGE: Final = 100
#: The longest title given to a new session (its first prompt's first line).
TITLE_CHARS: Final = 80
#: The most content blocks of one prompt (mimird's bound).
MAX_BLOCKS: Final = 1000


def _session_param(bridge: Bridge, params: Any) -> str:
    """The ``sessionId`` of a request for a session this editor attached."""
    session_id = params.get("sessionId") if isinstance(params, dict) else None
    if not isinstance(session_id, str) or not session_id:
        raise invalid("sessionId is missing (a string)")
    if session_id in bridge.lost:
        # Its connection broke (mimird restarted?): follow it again from where it
        # stopped, so that nothing is missed; mimird still gone is an error here.
        bridge.follow(session_id, bridge.lost[session_id])
    if session_id not in bridge.followers:
        raise AcpError(
            errors.RESOURCE_NOT_FOUND,
            f"unknown session {session_id!r}: start it with session/new or session/load first",
        )
    return session_id


def _object(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise invalid("params must be an object")
    return params


def _cwd(params: dict[str, Any], *, required: bool = True) -> str | None:
    cwd = params.get("cwd")
    if cwd is None and not required:
        return None
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or "\0" in cwd:
        raise invalid("cwd must be an absolute path")
    return os.path.realpath(cwd)


# ---- initialize ----------------------------------------------------------------------


def _known_state(bridge: Bridge, kind: str | None) -> dict[str, Any] | None:
    """What Mimir last heard from an agent of this kind when it started (the
    ``--session``'s, else the newest session's of that kind), or None."""
    if bridge.options.session:
        given = bridge.call("session.get", {"session": bridge.options.session})["agent_state"]
        return given if isinstance(given, dict) else None
    if kind is None:
        return None
    listed = bridge.call("session.list", {"agent": kind, "limit": 20, "include_archived": True})
    for session in listed["sessions"]:
        if isinstance(session.get("agent_state"), dict):
            state: dict[str, Any] = session["agent_state"]
            return state
    return None


def _agent_kind(bridge: Bridge) -> str | None:
    options = bridge.options
    if options.agent:
        return str(options.agent)
    if options.session:
        agent = bridge.call("session.get", {"session": options.session}).get("agent")
        return agent if isinstance(agent, str) else None
    return None


def initialize(bridge: Bridge, params: Any) -> Any:
    params = _object(params)
    version = params.get("protocolVersion")
    if not isinstance(version, int) or isinstance(version, bool):
        raise invalid("protocolVersion must be an integer")
    caps = params.get("clientCapabilities")
    bridge.client_capabilities = caps if isinstance(caps, dict) else {}
    status = bridge.call("daemon.status", {})
    kind = _agent_kind(bridge)
    state = _known_state(bridge, kind)
    capabilities = (state or {}).get("capabilities")
    prompt_caps: dict[str, bool] = {"image": False, "audio": False, "embeddedContext": False}
    if isinstance(capabilities, dict) and isinstance(capabilities.get("promptCapabilities"), dict):
        known = capabilities["promptCapabilities"]
        prompt_caps = {k: known.get(k) is True for k in prompt_caps}
    mcp_caps = {"http": False, "sse": False}
    if isinstance(capabilities, dict) and isinstance(capabilities.get("mcpCapabilities"), dict):
        known_mcp = capabilities["mcpCapabilities"]
        mcp_caps = {k: known_mcp.get(k) is True for k in mcp_caps}
    bridge.initialized = True
    bridge.start_delegate()
    behind = kind or "the project's default agent"
    return {
        "protocolVersion": PROTOCOL_VERSION,
        "agentCapabilities": {
            "loadSession": True,
            "promptCapabilities": prompt_caps,
            "mcpCapabilities": mcp_caps,
            "sessionCapabilities": {"list": {}},
        },
        "authMethods": [],
        "agentInfo": {
            "name": "mimir",
            "title": f"Mimir ({behind})",
            "version": str(status.get("version", "unknown")),
        },
    }


# ---- sessions --------------------------------------------------------------------------


def _git_root(cwd: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", cwd, "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    root = done.stdout.strip()
    return os.path.realpath(root) if done.returncode == 0 and root else None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def find_project(bridge: Bridge, cwd: str, *, add: bool) -> dict[str, Any] | None:
    """The project whose directory holds ``cwd`` (the deepest), registered when
    ``add`` and none does (the git repository around ``cwd``, else ``cwd``)."""
    if bridge.options.project:
        project: dict[str, Any] = bridge.call("project.get", {"project": bridge.options.project})
        return project
    projects = bridge.call("project.list", {})["projects"]
    holding = [
        p
        for p in projects
        if isinstance(p.get("path"), str) and _inside(cwd, os.path.realpath(p["path"]))
    ]
    if holding:
        found: dict[str, Any] = max(holding, key=lambda p: len(p["path"]))
        return found
    if not add:
        return None
    worktrees = (bridge.call("daemon.status", {}).get("paths") or {}).get("worktrees")
    if isinstance(worktrees, str) and _inside(cwd, os.path.realpath(worktrees)):
        raise invalid(
            f"{cwd} is a workspace Mimir made for a session, not a project: open the "
            "project's directory, or attach to that session ('mimirctl acp --session ID')"
        )
    added: dict[str, Any] = bridge.call("project.add", {"path": _git_root(cwd) or cwd})
    return added


def _mcp_servers(params: dict[str, Any]) -> list[Any]:
    """The editor's ``mcpServers``, each value marked secret (env variables and
    headers carry credentials: mimird then never shows nor journals them). mimird
    checks the rest (``config.mcp_servers``)."""
    servers = params.get("mcpServers", [])
    if not isinstance(servers, list):
        raise invalid("mcpServers must be an array")
    marked = []
    for server in servers:
        if isinstance(server, dict):
            server = dict(server)
            for key in ("env", "headers"):
                if isinstance(server.get(key), list):
                    server[key] = [_secret(entry) for entry in server[key]]
        marked.append(server)
    return marked


def _secret(entry: Any) -> Any:
    if isinstance(entry, dict) and isinstance(entry.get("value"), str) and entry["value"]:
        return {**entry, "value": {"value": entry["value"], "secret": True}}
    return entry


def _session_state(session: dict[str, Any]) -> dict[str, Any]:
    """``modes``, ``configOptions`` and the legacy ``models`` as the agent last said
    them, for the editor."""
    state = session.get("agent_state")
    out: dict[str, Any] = {}
    if isinstance(state, dict):
        if isinstance(state.get("modes"), dict):
            out["modes"] = state["modes"]
        if isinstance(state.get("config_options"), list):
            out["configOptions"] = state["config_options"]
        if isinstance(state.get("models"), dict):
            out["models"] = state["models"]
    return out


def new_session(bridge: Bridge, params: Any) -> Any:
    params = _object(params)
    cwd = _cwd(params)
    assert cwd is not None
    servers = _mcp_servers(params)
    if bridge.options.session:
        # ``--session``: the editor's new session is that Mimir session, its history
        # replayed first as for session/load.
        if servers:
            bridge.say("--session: the session keeps the MCP servers it was made with")
        return _attach(bridge, bridge.options.session, replay_after=True)
    if not os.path.isdir(cwd):
        raise invalid(f"cwd {cwd!r} is not a directory")
    project = find_project(bridge, cwd, add=True)
    assert project is not None
    create: dict[str, Any] = {
        "project": project["id"],
        "workspace": bridge.options.workspace,
    }
    if bridge.options.agent:
        create["agent"] = bridge.options.agent
    if servers:
        create["config"] = {"mcp_servers": servers}
    session = bridge.call("session.create", create, long=True)
    follower = bridge.follow(session["id"], session["last_seq"])
    follower.untitled = True
    try:
        # Started now, so that the answer carries the agent's modes and options.
        session = bridge.call("session.resume", {"session": session["id"]}, long=True)
    except AcpError as exc:  # it starts again at the first prompt, which then fails
        bridge.say(f"the agent of session {session['id']} did not start: {exc.message}")
    return {"sessionId": session["id"], **_session_state(session)}


def load_session(bridge: Bridge, params: Any) -> Any:
    params = _object(params)
    session_id = params.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        raise invalid("sessionId is missing (a string)")
    _cwd(params)
    if _mcp_servers(params):  # the session keeps those it was made with
        bridge.say("session/load: mcpServers are those the session was made with")
    result = _attach(bridge, session_id)
    del result["sessionId"]  # not in session/load's answer
    return result


def _attach(bridge: Bridge, session_id: str, *, replay_after: bool = False) -> dict[str, Any]:
    """Replay a session's journal to the editor and follow it live; the answer of
    ``session/new`` with ``--session`` (``session/load``'s, without ``sessionId``).
    The replay comes before the answer (``session/load``), or right after it
    (``replay_after``: the editor learns the session's id from the answer)."""
    session = bridge.call("session.get", {"session": session_id})
    session_id = session["id"]
    last = session["last_seq"]
    # The history up to the seq read, then the live stream from there: no gap, nothing twice.
    history = bridge.history(session_id, last)
    for update in updates_for(history):
        if replay_after:
            params = {"sessionId": session_id, "update": update}
            bridge.after_answer.append(bridge.peer.notify("session/update", params))
        else:
            bridge.update(session_id, update)
    followed = bridge.followers.get(session_id)
    follower = bridge.follow(session_id, last)
    if followed is not None:
        # Loaded again while followed: this editor's prompt still waiting for its
        # turn's end waits on the new connection, or is answered now if its turn
        # ended in the history just read (the old connection is not read again).
        follower.own_prompts |= followed.own_prompts
        follower.prompt = followed.prompt
        for event in history:
            if (ended := follower.turn_end(event)) is not None:
                pending, data = ended
                bridge.after_answer.append(bridge.prompt_answer(pending.request_id, data))
                break
    # Requests waiting now were asked before the cursor: ask the editor once, after
    # the answer (the editor knows the session then).
    pending = bridge.call("permission.list", {"session": session_id})["permissions"]
    for waiting in pending:
        if (line := bridge.permissions.ask(session_id, waiting)) is not None:
            bridge.after_answer.append(line)
    return {"sessionId": session_id, **_session_state(session)}


def list_sessions(bridge: Bridge, params: Any) -> Any:
    params = _object(params)
    cwd = _cwd(params, required=False)
    query: dict[str, Any] = {"limit": LIST_PAGE}
    cursor = params.get("cursor")
    if cursor is not None:
        if not isinstance(cursor, str) or not cursor:
            raise invalid("cursor must be a string given by an earlier session/list")
        query["cursor"] = cursor
    if cwd is not None:
        project = find_project(bridge, cwd, add=False)
        if project is None:
            return {"sessions": []}
        query["project"] = project["id"]
    listed = bridge.call("session.list", query)
    sessions = [
        {
            "sessionId": s["id"],
            "cwd": s["workspace"]["path"],
            "title": s["title"] or s["task"][:200] or s["id"],
            "updatedAt": s["updated_at"],
        }
        for s in listed["sessions"]
    ]
    result: dict[str, Any] = {"sessions": sessions}
    if listed.get("next_cursor"):
        result["nextCursor"] = listed["next_cursor"]
    return result


# ---- the turn --------------------------------------------------------------------------


def prompt(bridge: Bridge, request: jsonrpc.Request) -> Any:
    params = _object(request.params)
    session_id = _session_param(bridge, params)
    blocks = params.get("prompt")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= MAX_BLOCKS:
        raise invalid(f"prompt must be an array of 1 to {MAX_BLOCKS} content blocks")
    for index, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"prompt[{index}] is not a content block (an object with a type)")
    follower = bridge.followers[session_id]
    if follower.prompt is not None:
        raise AcpError(errors.INVALID_REQUEST, f"session {session_id} is running a prompt already")
    submitted = bridge.call("session.submit", {"session": session_id, "content": blocks}, long=True)
    follower.own_prompts.add(submitted["prompt_seq"])
    follower.prompt = PendingPrompt(request.id, submitted["prompt_seq"])
    if follower.untitled:
        follower.untitled = False
        _title(bridge, session_id, blocks)
    return DEFERRED


def _title(bridge: Bridge, session_id: str, blocks: list[dict[str, Any]]) -> None:
    """A new session is named after its first prompt's first line (as ``session/list``
    and ``mimirctl session ls`` show it), and the editor is told."""
    text = next((b["text"] for b in blocks if isinstance(b.get("text"), str)), "")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    title = line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"
    if not title:
        return
    try:
        bridge.call("session.update", {"session": session_id, "title": title})
    except AcpError as exc:
        bridge.say(f"could not name session {session_id}: {exc.message}")
        return
    bridge.update(session_id, {"sessionUpdate": "session_info_update", "title": title})


def cancel(bridge: Bridge, params: Any) -> None:
    session_id = _session_param(bridge, _object(params))
    bridge.call("session.cancel", {"session": session_id})


def set_mode(bridge: Bridge, params: Any) -> Any:
    params = _object(params)
    session_id = _session_param(bridge, params)
    mode = params.get("modeId")
    if not isinstance(mode, str):
        raise invalid("modeId is missing (a string)")
    bridge.call("session.set_mode", {"session": session_id, "mode": mode})
    return {}


def set_model(bridge: Bridge, params: Any) -> Any:
    params = _object(params)
    session_id = _session_param(bridge, params)
    model = params.get("modelId")
    if not isinstance(model, str):
        raise invalid("modelId is missing (a string)")
    bridge.call("session.set_model", {"session": session_id, "model": model})
    return {}


def set_config_option(bridge: Bridge, params: Any) -> Any:
    """Relayed for the agent's options of category ``model`` and ``mode`` (what
    mimird sets and journals); any other option is refused as invalid params."""
    params = _object(params)
    session_id = _session_param(bridge, params)
    config_id, value = params.get("configId"), params.get("value")
    if not isinstance(config_id, str) or not isinstance(value, str):
        raise invalid("configId and value must be strings (Mimir relays select options only)")
    session = bridge.call("session.get", {"session": session_id})
    options = (session.get("agent_state") or {}).get("config_options") or []
    category = next(
        (o.get("category") for o in options if isinstance(o, dict) and o.get("id") == config_id),
        None,
    )
    if category not in ("model", "mode"):
        raise invalid(
            f"config option {config_id!r}: Mimir relays only the agent's model and mode options "
            "(set others in the agent's own configuration)"
        )
    bridge.call(f"session.set_{category}", {"session": session_id, category: value})
    session = bridge.call("session.get", {"session": session_id})
    return {"configOptions": (session.get("agent_state") or {}).get("config_options") or []}


# ---- dispatch ----------------------------------------------------------------------------

_PLAIN: Final = {
    "session/new": new_session,
    "session/load": load_session,
    "session/list": list_sessions,
    "session/set_mode": set_mode,
    "session/set_model": set_model,
    "session/set_config_option": set_config_option,
}


def request(bridge: Bridge, req: jsonrpc.Request) -> Any:
    if req.method == "initialize":
        return initialize(bridge, req.params)
    if not bridge.initialized:
        raise AcpError(errors.INVALID_REQUEST, f"{req.method} before initialize")
    if req.method == "session/prompt":
        return prompt(bridge, req)
    if req.method == "authenticate":
        raise AcpError(
            errors.METHOD_NOT_FOUND, "Mimir offers no auth methods: agents log in on their own"
        )
    handler = _PLAIN.get(req.method)
    if handler is None:
        raise AcpError(errors.METHOD_NOT_FOUND, f"method not found: {req.method}")
    return handler(bridge, req.params)


def notification(bridge: Bridge, method: str, params: Any) -> None:
    if method == "session/cancel" and bridge.initialized:
        cancel(bridge, params)
    # Others (extensions: "_..."; unknown) are ignored, as ACP asks.


def cancel_request(bridge: Bridge, request_id: Any) -> None:
    """``$/cancel_request`` for a prompt waiting for its turn's end: cancel the turn
    (it then ends ``cancelled``, which answers the request)."""
    for follower in bridge.followers.values():
        if follower.prompt is not None and follower.prompt.request_id == request_id:
            bridge.call("session.cancel", {"session": follower.session_id})


def permission_answer(bridge: Bridge, request_id: int, result: Any) -> None:
    chosen = bridge.permissions.editor_answered(request_id, result)
    if chosen is None:
        return
    permission, option = chosen
    try:
        bridge.call("permission.respond", {"permission": permission, "option_id": option})
    except AcpError as exc:  # another client answered first: first answer wins
        bridge.say(f"the editor's answer to permission {permission} was not taken: {exc.message}")
