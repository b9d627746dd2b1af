"""``mimirctl run``: one task given to several agents at once, followed as the
run's own events, shown as a table of its members, decided by hand."""

from __future__ import annotations

import argparse
from typing import Any, Final

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import (
    EXIT_ERROR,
    EXIT_OK,
    UsageError,
    add_command,
    add_group,
    emit,
    number_arg,
    run_merge,
    template_vars,
)
from mimirctl.stream import emit_json, next_message

#: Statuses at which ``run new`` (without --detach) stops following: the run waits
#: for the user, or is over.
SETTLED: Final = frozenset(
    {"deciding", "decided", "completed", "cancelled", "failed", "interrupted"}
)
#: Statuses at which ``run events --follow`` stops: the run is over.
OVER: Final = frozenset({"completed", "cancelled", "failed"})
PAGE_SIZE: Final = 1000
TITLE_WIDTH: Final = 40


def _v(value: Any) -> str:
    return render.visible(str(value))


def _stats(d: dict[str, Any]) -> str:
    if d.get("files_changed") is None:
        return ""
    return (
        f": {d['files_changed']} file(s), +{d.get('lines_added', 0)} -{d.get('lines_deleted', 0)}"
    )


def event_line(event: dict[str, Any]) -> str:
    """One run event on one line, every text from the daemon made visible."""
    kind, d = event["kind"], event.get("data") or {}
    text: str
    if kind == "run_created":
        members = ", ".join(f"{m['slot']} {_v(m['agent'])}" for m in d.get("members", []))
        text = f"run created: {_v(d.get('mode'))}, members {members}, judge {_v(d.get('judge'))}"
        if d.get("check_command"):
            text += f", check {_v(d['check_command'])}"
    elif kind == "run_status_changed":
        text = f"status {_v(d.get('from'))} -> {_v(d.get('to'))}"
    elif kind == "member_started":
        text = f"member {d.get('slot')} started" + (
            f" (round {d['round']})" if d.get("round", 1) != 1 else ""
        )
    elif kind == "member_finished":
        outcome = _v(d.get("outcome"))
        text = f"member {d.get('slot')} {outcome}"
        if d.get("stop_reason") and d.get("outcome") == "finished":
            text += f" ({_v(d['stop_reason'])})"
        text += _stats(d)
        if d.get("reason"):
            text += f" - {_v(d['reason'])}"
    elif kind == "check_started":
        text = f"check {d.get('slot')}: {_v(d.get('command'))}"
    elif kind == "check_finished":
        verdict = "passed" if d.get("passed") else "failed"
        how = "timed out" if d.get("timed_out") else f"exit {d.get('exit_code')}"
        text = f"check {d.get('slot')} {verdict} ({how}, {d.get('duration_s', 0):.1f}s)"
        if d.get("summary"):
            text += f": {_v(d['summary'])}"
    elif kind == "decision":
        winner = "no winner" if d.get("winner") is None else f"slot {d['winner']} wins"
        text = f"decision: {winner} (by {_v(d.get('by'))}): {_v(d.get('reasons', ''))}"
    elif kind == "run_budget_exceeded":
        text = f"run budget reached: {_v(d.get('budget'))} {d.get('used')} of {d.get('limit')}"
    elif kind == "run_note":
        slot = f" (member {d['slot']})" if d.get("slot") is not None else ""
        text = f"note{slot}: {_v(d.get('text', ''))}"
    elif kind == "run_completed":
        text = f"completed: slot {d.get('winner')}"
        if d.get("into"):
            text += f" into {_v(d['into'])} @ {render.short_commit(d.get('commit'))}"
    elif kind == "run_failed":
        text = f"failed: {_v(d.get('reason', ''))}"
    elif kind == "run_cancelled":
        text = "cancelled"
    elif kind == "run_interrupted":
        text = f"interrupted while {_v(d.get('status'))}: members {d.get('slots', [])} cut short"
    elif kind == "run_resumed":
        text = f"resumed: members {d.get('slots', [])} prompted again"
    elif kind in _MODE_EVENTS:
        text = _MODE_EVENTS[kind](d)
    else:
        text = f"{_v(kind)}: {render.visible(render.compact(d))}"
    return f"[{event['seq']}] {text}"


def _prompt_sent(p: dict[str, Any]) -> str:
    cut = f", cut: {_v(', '.join(p['cut']))}" if p.get("cut") else ""
    return f"prompt {p.get('bytes')} bytes{cut}"


def _round_started(d: dict[str, Any]) -> str:
    sent = "; ".join(f"member {p.get('slot')}: {_prompt_sent(p)}" for p in d.get("prompts", []))
    return f"round {d.get('round')}/{d.get('rounds')} started ({sent})"


def _round_ended(d: dict[str, Any]) -> str:
    results = []
    for r in d.get("results", []):
        check = ""
        if r.get("check_summary") is not None or r.get("check_exit_code") is not None:
            check = f", check exit {r.get('check_exit_code')}"
        results.append(f"member {r.get('slot')} {_v(r.get('outcome'))}{_stats(r)}{check}")
    return f"round {d.get('round')}/{d.get('rounds')} ended: " + "; ".join(results)


def _judge_decided(d: dict[str, Any]) -> str:
    if d.get("winner") is None:
        return f"judge gave no valid answer: {_v(d.get('problem', ''))}"
    return f"judge chose slot {d['winner']}: {_v(d.get('reasons', ''))}"


def _integrated(d: dict[str, Any]) -> str:
    what = "the integration" if d.get("slot") is None else f"slot {d['slot']}"
    how = _v(str(d.get("kind", "")).replace("_", "-"))
    text = f"integrated {what} ({_v(d.get('branch'))}) into {_v(d.get('into'))}: {how}"
    text += f" {render.short_commit(d.get('previous'))}..{render.short_commit(d.get('commit'))}"
    text += f", {d.get('files_changed', 0)} file(s), +{d.get('insertions', 0)}"
    text += f" -{d.get('deletions', 0)}"
    if d.get("worktree"):
        text += f" (checkout {_v(d['worktree'])} updated)"
    return text


def _integration_refused(d: dict[str, Any]) -> str:
    what = "the integration" if d.get("slot") is None else f"slot {d['slot']}"
    text = f"integration of {what} into {_v(d.get('into'))} refused ({_v(d.get('error'))})"
    text += f": {_v(d.get('message', ''))}"
    if d.get("files"):
        text += f"; files: {_v(', '.join(str(f) for f in d['files']))}"
    return text


def _integration_ended(d: dict[str, Any]) -> str:
    text = f"integration {_v(d.get('outcome'))}{_stats(d)}"
    return text + (f" - {_v(d['reason'])}" if d.get("reason") else "")


#: The events of the modes beyond a competition: judge agent, ensemble, debate.
_MODE_EVENTS: Final = {
    "round_started": _round_started,
    "round_ended": _round_ended,
    "judge_started": lambda d: (
        f"judge {_v(d.get('agent'))} started "
        f"(session {render.short_id(d.get('session_id'))}, {_prompt_sent(d.get('prompt') or {})})"
    ),
    "judge_decided": _judge_decided,
    "integration_started": lambda d: (
        f"integration by {_v(d.get('agent'))} started on {_v(d.get('branch'))} "
        f"({_prompt_sent(d.get('prompt') or {})})"
    ),
    "integration_ended": _integration_ended,
    "integrated": _integrated,
    "integration_refused": _integration_refused,
}


def _print_event(args: argparse.Namespace, event: dict[str, Any]) -> None:
    if args.json:
        emit_json(event)
    else:
        render.say(event_line(event), exact=True)


def _settled(event: dict[str, Any], at: frozenset[str]) -> bool:
    return event["kind"] == "run_status_changed" and (event.get("data") or {}).get("to") in at


def follow(
    client: Client, args: argparse.Namespace, run_id: str, after: int, until: frozenset[str]
) -> None:
    """Print the run's events after ``after`` as they come, until its status is in ``until``."""
    client.set_timeout(None)
    result = client.call("run.subscribe", {"run": run_id, "after": after})
    current = client.call("run.get", {"run": run_id})
    subscription = result["subscription"]
    if current["status"] in until and current["last_seq"] <= after:
        return
    while True:
        message = next_message(client)
        if message.get("method") != "run_event":
            continue
        params = message.get("params") or {}
        if params.get("subscription") != subscription:
            continue
        event = params["event"]
        _print_event(args, event)
        if _settled(event, until):
            return


# ---- the commands --------------------------------------------------------------------


def _agents(args: argparse.Namespace) -> dict[str, Any]:
    if args.agents is not None:
        if args.agent is not None or args.n is not None:
            raise UsageError("give --agents, or --agent with -n, not both")
        kinds = [k.strip() for k in args.agents.split(",") if k.strip()]
        if not kinds:
            raise UsageError("--agents needs at least one agent kind")
        return {"agents": kinds}
    if args.n is None:
        raise UsageError(
            "give --agents a,b,c, or --agent KIND -n N (or -n N for the default agent)"
        )
    params: dict[str, Any] = {"n": args.n}
    if args.agent is not None:
        params["agent"] = args.agent
    return params


def cmd_run_new(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"project": args.project, "task": args.task, **_agents(args)}
    for key, value in (
        ("title", args.title),
        ("mode", args.mode),
        ("check_command", args.check),
        ("judge", args.judge),
        ("base_ref", args.base),
        ("into", args.into),
        ("config", args.config),
        ("then", args.then),
        ("judge_agent", args.judge_agent),
        ("integration_agent", args.integration_agent),
    ):
        if value is not None:
            params[key] = value
    if args.manual:
        params["merge"] = "manual"
    if args.preserve:
        params["preserve_worktrees"] = True
    budget: dict[str, Any] = {}
    if args.budget_tokens is not None:
        budget["tokens"] = args.budget_tokens
    if args.budget_usd is not None:
        budget["cost_usd"] = args.budget_usd
    if budget:
        params["run_budget"] = budget
    if args.rounds is not None:
        params["rounds"] = args.rounds
    if args.template is not None:
        params["template"] = {"template": args.template, "vars": template_vars(args.var)}
    elif args.var:
        raise UsageError("--var goes with --template")
    run = client.call("run.create", params)
    if args.detach:
        emit(args, run, _run_fields)
        return EXIT_OK
    if not args.json:
        render.say(f"run {run['id']}: {len(run['members'])} member(s) on {_v(run['project'])}")
    follow(client, args, run["id"], 0, SETTLED)
    final = client.call("run.get", {"run": run["id"]})
    if not args.json:
        render.say(_members_table(final))
        if final["status"] == "deciding":
            render.say(f"pick the winner: mimirctl run pick {final['id']} SLOT")
    return EXIT_ERROR if final["status"] == "failed" else EXIT_OK


def _check_text(check: dict[str, Any] | None) -> str:
    if check is None:
        return "-"
    verdict = "pass" if check["passed"] else ("timeout" if check.get("timed_out") else "fail")
    return f"{verdict} ({check['exit_code']}, {check['duration_s']:.1f}s)"


def _members_table(run: dict[str, Any]) -> str:
    rows = []
    for m in run["members"]:
        used = m["usage"]
        diff = (
            "-"
            if m["files_changed"] is None
            else f"{m['files_changed']} +{m['lines_added']} -{m['lines_deleted']}"
        )
        rows.append(
            [
                ("*" if run.get("winner") == m["slot"] else "") + str(m["slot"]),
                m["agent"],
                render.short_id(m["session_id"]),
                m["status"],
                m["outcome"],
                render.duration(m["active_s"]),
                f"{used['total_tokens']:,}",
                f"{used['cost_usd']:.4f}",
                diff,
                _check_text(m["check"]),
            ]
        )
    table = render.table(
        [
            "SLOT",
            "AGENT",
            "SESSION",
            "STATUS",
            "OUTCOME",
            "TIME",
            "TOKENS",
            "USD",
            "FILES +/-",
            "CHECK",
        ],
        rows,
    )
    t = run["totals"]
    totals = (
        f"totals: {render.duration(t['total_duration'])}, {t['total_files_changed']} file(s), "
        f"+{t['total_lines_added']} -{t['total_lines_deleted']}, {t['total_tokens']:,} tokens, "
        f"{t['total_cost_usd']:.4f} USD"
    )
    return table + "\n" + totals


def _run_fields(run: dict[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = [
        ("id", run["id"]),
        ("project", run["project"]),
        ("title", run["title"] or "-"),
        (
            "mode",
            run["mode"]
            + (f" (round {run['round']}/{run['rounds']})" if run["mode"] == "debate" else ""),
        ),
        ("status", run["status"]),
        ("judge", run["judge"]),
        ("check", run["check_command"] or "-"),
        ("base", f"{run['base_ref']} @ {render.short_commit(run['base_commit'])}"),
        ("into", f"{run['into'] or '-'} (merge {run['merge']})"),
    ]
    if run.get("integration_phase"):
        session = run.get("integration_session_id")
        pairs.append(
            (
                "integration",
                run["integration_phase"]
                + (f" (slot 0, session {render.short_id(session)})" if session else ""),
            )
        )
    if run.get("decision"):
        d = run["decision"]
        pairs.append(("decision", f"slot {d['winner']} by {d['by']}: {d['reasons']}"))
    if run.get("failure"):
        pairs.append(("failure", run["failure"]))
    pairs += [("task", run["task"]), ("created", run["created_at"])]
    if run.get("finished_at"):
        pairs.append(("finished", run["finished_at"]))
    return render.fields(pairs)


def cmd_run_show(client: Client, args: argparse.Namespace) -> int:
    run = client.call("run.get", {"run": args.run_id})
    emit(
        args,
        run,
        lambda r: _run_fields(r) + "\n\n" + render.visible(_members_table(r), multiline=True),
        styled=True,
    )
    return EXIT_OK


def cmd_run_ls(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.project is not None:
        params["project"] = args.project
    if args.status:
        params["status"] = [s for v in args.status for s in v.split(",") if s]
    result = client.call("run.list", params)

    def human(r: dict[str, Any]) -> str:
        if not r["runs"]:
            return "no runs"
        return render.table(
            ["ID", "PROJECT", "MODE", "STATUS", "MEMBERS", "WINNER", "TITLE", "UPDATED"],
            [
                [
                    render.short_id(run["id"]),
                    run["project"],
                    run["mode"],
                    run["status"],
                    len(run["members"]),
                    "-" if run["winner"] is None else run["winner"],
                    render.truncate(run["title"] or render.first_line(run["task"]), TITLE_WIDTH),
                    render.age(run["updated_at"]),
                ]
                for run in r["runs"]
            ],
        )

    emit(args, result, human)
    return EXIT_OK


def cmd_run_cancel(client: Client, args: argparse.Namespace) -> int:
    run = client.call("run.cancel", {"run": args.run_id})
    emit(args, run, lambda r: f"cancelled run {r['id']}")
    return EXIT_OK


def cmd_run_rm(client: Client, args: argparse.Namespace) -> int:
    removed = client.call("run.delete", {"run": args.run_id, "force": args.force})
    emit(
        args,
        removed,
        lambda r: f"deleted run {r['run']} and {len(r['sessions'])} member session(s)",
    )
    return EXIT_OK


def cmd_run_resume(client: Client, args: argparse.Namespace) -> int:
    run = client.call("run.resume", {"run": args.run_id})
    emit(args, run, lambda r: f"resumed run {r['id']} ({r['status']})")
    return EXIT_OK


def cmd_run_pick(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"run": args.run_id, "slot": args.slot}
    if args.reason is not None:
        params["reason"] = args.reason
    run = client.call("run.pick", params)
    emit(args, run, lambda r: f"run {r['id']}: slot {r['winner']} wins ({r['status']})")
    return EXIT_OK


def cmd_run_events(client: Client, args: argparse.Namespace) -> int:
    after = args.after
    while True:
        page = client.call("run.events", {"run": args.run_id, "after": after, "limit": PAGE_SIZE})
        for event in page["events"]:
            _print_event(args, event)
            after = event["seq"]
        if len(page["events"]) < PAGE_SIZE:
            break
    if args.follow:
        run = client.call("run.get", {"run": args.run_id})
        if run["status"] not in OVER:
            follow(client, args, run["id"], after, OVER)
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    run = add_group(commands, common, "run", "one task, several agents: runs")

    new = add_command(run, common, "new", cmd_run_new, "give one task to several agents at once")
    new.add_argument("project", metavar="PROJECT", help="project id or name")
    new.add_argument("--task", "-t", required=True, help="what every member is asked to do")
    new.add_argument("--agents", help="one agent kind per slot, comma-separated (claude,codex)")
    new.add_argument("--agent", help="one agent kind for every slot (with -n)")
    new.add_argument("-n", type=int, help="how many members (with --agent, or the default agent)")
    new.add_argument("--mode", choices=["competition", "ensemble", "debate"])
    new.add_argument("--check", help="a shell command run in each member's worktree (pytest -q)")
    new.add_argument("--judge", choices=["user", "checks", "agent"], help="who decides")
    new.add_argument("--title")
    new.add_argument("--base", help="the commit or branch the members start from")
    new.add_argument("--into", help="the branch the winner is integrated into")
    new.add_argument("--manual", action="store_true", help="wait for 'run merge' once decided")
    new.add_argument("--preserve", action="store_true", help="keep the losers' worktrees")
    new.add_argument("--budget-tokens", type=int, help="tokens the whole run may use")
    new.add_argument(
        "--budget-usd", type=number_arg(0, 1_000_000, "USD"), help="USD the whole run may cost"
    )
    new.add_argument("--rounds", type=int, help="debate: how many rounds (1-5)")
    new.add_argument("--then", choices=["decide", "ensemble"], help="debate: after the last round")
    new.add_argument("--judge-agent", help="the judge session's agent kind (--judge agent)")
    new.add_argument("--integration-agent", help="the integration session's agent kind (ensemble)")
    new.add_argument("--config", help="the members' session config overrides (a JSON object)")
    new.add_argument("--template", help="the members' prompt: this template, rendered for each")
    new.add_argument("--var", action="append", metavar="KEY=VALUE", help="a template var")
    new.add_argument(
        "--detach", "-d", action="store_true", help="print the run and return (do not follow it)"
    )

    show = add_command(run, common, "show", cmd_run_show, "a run: its members, checks and totals")
    show.add_argument("run_id", metavar="ID", help="run id or unique prefix (4+)")

    ls = add_command(run, common, "ls", cmd_run_ls, "runs, newest first")
    ls.add_argument("--project", "-p", help="only this project's (id or name)")
    ls.add_argument("--status", "-s", action="append", help="only these statuses (a,b or repeated)")
    ls.add_argument("--limit", type=int, default=100)

    for name, fn, summary in (
        ("cancel", cmd_run_cancel, "cancel a run: every member's turn and check"),
        ("resume", cmd_run_resume, "go on with an interrupted run"),
    ):
        sub = add_command(run, common, name, fn, summary)
        sub.add_argument("run_id", metavar="ID", help="run id or unique prefix (4+)")

    rm = add_command(
        run, common, "rm", cmd_run_rm, "delete a run and its members (work snapshotted)"
    )
    rm.add_argument("run_id", metavar="ID", help="run id or unique prefix (4+)")
    rm.add_argument("--force", action="store_true", help="cancel it first if it still works")

    pick = add_command(run, common, "pick", cmd_run_pick, "decide a run: the member in SLOT wins")
    pick.add_argument("run_id", metavar="ID", help="run id or unique prefix (4+)")
    pick.add_argument(
        "slot",
        metavar="SLOT",
        type=int,
        help="the winning member's slot (0: an ensemble's integration)",
    )
    pick.add_argument("--reason", help="why (kept in the decision)")

    events = add_command(
        run, common, "events", cmd_run_events, "a run's own journal, one line per event"
    )
    events.add_argument("run_id", metavar="ID", help="run id or unique prefix (4+)")
    events.add_argument("--after", type=int, default=0, help="only events after this seq")
    events.add_argument("--follow", "-f", action="store_true", help="then follow it until it ends")
    run_merge.add_commands(run, common)
