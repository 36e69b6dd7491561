"""`recon audit` (list the audit log), `recon audit verify` (its hash chain) and `recon lock list|break`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from specs.errors import ExitCode

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where recon keeps its journal, audit log and locks.")]
lock_app = typer.Typer(help="See and break apply locks.", no_args_is_help=True, rich_markup_mode=None)
audit_app = typer.Typer(help="The audit log: every plan and apply, who ran it where, from which commit, and what "
                        "happened.", rich_markup_mode=None, invoke_without_command=True)


@audit_app.callback()
def audit(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="Only runs since: 30m, 2h, 7d or a date.")] = None,
    resource: Annotated[str | None, typer.Option("--resource", help="Only runs (and events) touching this "
                                                 "resource: an id, a prefix of one, or a glob.")] = None,
    plan_id: Annotated[str | None, typer.Option("--plan", help="Only runs of this plan id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs and their events as JSON.")] = False,
    state_dir: StateDir = Path(".recon"),
) -> int:
    """List the audit log: every plan and apply, who ran it where, from which commit, and what happened."""
    if ctx.invoked_subcommand is not None:
        return ExitCode.OK
    from reconciler.audit import Audit, default_path, parse_since
    from reconciler.state import backend

    where = backend(state_dir)
    path = where.where if where.kind == "postgres" else str(default_path(state_dir))
    broken = ""
    if where.kind == "sqlite" and not default_path(state_dir).exists():
        runs: list[dict[str, Any]] = []
    else:
        log = Audit(where)
        try:
            runs = log.runs(parse_since(since) if since else None, resource or "", plan_id or "", limit)
            broken = log.verify().broken
        finally:
            log.close()
    if broken:
        sys.stderr.write(f"warning: the audit log {path} has been tampered with: {broken}; "
                         "see `recon audit verify`\n")
    if as_json:
        sys.stdout.write(json.dumps(runs, indent=2) + "\n")
        return ExitCode.OK
    from rich.console import Console

    from reconciler.render.safe import esc as escape

    console = Console(highlight=False, soft_wrap=True)
    if not runs:
        console.print(f"No audited runs{' matching' if since or resource or plan_id else ''} in {path}.")
    colours = {"ok": "green", "failed": "red", "refused": "yellow", "interrupted": "magenta"}
    for run in runs:
        git = run.get("git") or {}
        commit = f" {git.get('sha', '')[:10]}{'+dirty' if git.get('dirty') else ''}" if git else ""
        colour = colours.get(run["outcome"], "white")
        ci_run = (run.get("ci") or {}).get("GITHUB_RUN_ID")
        console.print(f"{run['at'][:19]}  {run['command']:<5} [{colour}]{run['outcome']:<11}[/] plan {run['plan_id']}  "
                      f"{escape(str(run.get('user')))}@{escape(str(run.get('host')))}{commit}"
                      + (f"  part {escape(str(run['part']))}" if run.get("part") else "")
                      + (f"  {escape(str(run['action']))} {escape(str(run.get('target', '')))}" + "".join(
                          f" --{escape(str(k))} {escape(str(v))}" for k, v in (run.get("params") or {}).items())
                         if run["command"] == "do" and run.get("action") else "")
                      + (f"  request {escape(run['request_id'])}" if run["request_id"] else "")
                      + (f"  ci run {ci_run}" if ci_run else ""))
        for e in run["events"]:
            if e["event"] in ("result", "refused", "unconverged", "unverified") or (resource and e["change"]):
                mark = "✓" if e["ok"] else "✗"
                detail = f"  [dim]{escape(e['message'])}[/dim]" if e["message"] else ""
                console.print(f"    {mark} {e['event']:<8} {escape(e['change'])}{detail}")
    return ExitCode.OK


@audit_app.command("verify")
def verify(state_dir: StateDir = Path(".recon")) -> int:
    """Check the audit log's hash chain from its first event: exit 0 when it holds, 2 naming the first
    broken link (an event changed, removed or inserted after it was written)."""
    from reconciler.audit import open_audit

    log = open_audit(state_dir)
    try:
        verdict = log.verify()
        where = log.where
    finally:
        log.close()
    older = f" ({verdict.unchained} written before the log was chained)" if verdict.unchained else ""
    if verdict.broken:
        print(f"The audit log {where} is broken: {verdict.broken}. The {verdict.events - 1} events before it "
              "hold.")
        return ExitCode.CHANGES
    print(f"The audit log {where} holds: {verdict.events} events{older}, each chained to the one before it.")
    return ExitCode.OK


@lock_app.command("list")
def lock_list(state_dir: StateDir = Path(".recon"),
              as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> int:
    """Every lock: held now or left by a holder that is gone."""
    from reconciler.audit import open_audit
    from reconciler.locks import holder_text, status
    from reconciler.state import backend

    found = status(backend(state_dir))
    audit = open_audit(state_dir)
    try:
        claims = audit.claims()
    finally:
        audit.close()
    if as_json:
        sys.stdout.write(json.dumps({"locks": found, "claims": claims}, indent=2) + "\n")
        return ExitCode.OK
    if not found and not claims:
        print("No locks.")
    for lock in found:
        state = "held by" if lock["held"] else "free; last held by"
        print(f"{lock['key']}: {state} {holder_text(lock['holder'])}")
    for c in claims:
        print(f"{c['key']}: claimed by {c['owner']} (plan {c['holder'].get('plan_id', '?')}, since {c['at']}) until "
              "it is merged or closed")
    return ExitCode.OK


@lock_app.command("release")
def lock_release(owner: Annotated[str, typer.Option("--owner", help="Whose claims: e.g. pr:12.")],
                 state_dir: StateDir = Path(".recon")) -> int:
    """Let go of the targets an owner (a pull request) claimed with `recon plan --claim`: it was merged or
    closed."""
    from reconciler.audit import open_audit

    audit = open_audit(state_dir)
    try:
        keys = audit.release(owner)
    finally:
        audit.close()
    print(f"Released {len(keys)} target(s) {owner} held" + (f": {', '.join(keys)}" if keys else "") + ".")
    return ExitCode.OK


@lock_app.command("break")
def lock_break(key: Annotated[str, typer.Argument(help="The lock, as `recon lock list` names it.")],
               state_dir: StateDir = Path(".recon")) -> int:
    """Remove a lock left by a holder that is gone; refused while a live process holds it."""
    from reconciler.locks import break_lock, holder_text
    from reconciler.state import backend

    info = break_lock(backend(state_dir), key)
    print(f"Removed the lock {key}, left by {holder_text(info)}; nobody held it.")
    return ExitCode.OK
