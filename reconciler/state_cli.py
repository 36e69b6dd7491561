"""`recon drift` and `recon rollback`: the live state against what was applied, and undoing a killed apply."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from reconciler import clikit as base
from reconciler.clikit import JsonOut, MarkdownOut, Parallelism, Paths, ShardBy, ShardOpt, StateDir, print_lines
from specs.errors import ExitCode, RefusedError


def rollback(
    paths: Paths = None,
    journal: Annotated[str | None, typer.Option("--journal", help="Which interrupted apply (its journal file's "
                                                "name); default: the latest.")] = None,
    list_only: Annotated[bool, typer.Option("--list", help="Only list the interrupted applies.")] = False,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Roll back without asking.")] = False,
    lock_timeout: Annotated[str, typer.Option("--lock-timeout", help="Wait this long for locks.")] = "0s",
    state_dir: StateDir = Path(".recon"),
) -> int:
    """Undo what an apply that was killed had finished (re-running apply finishes it instead)."""
    from reconciler import gate, recovery
    from reconciler.audit import open_audit

    found = recovery.interrupted(state_dir)
    console = base.console_for()
    if list_only:
        for item in found:
            console.print(item.describe())
        if not found:
            console.print("No interrupted apply.")
        return ExitCode.OK
    chosen = recovery.pick(found, journal)
    console.print(f"Interrupted apply: {chosen.describe()}")
    if not auto_approve:
        if not sys.stdin.isatty():
            raise RefusedError("rollback needs a confirmation: re-run with --auto-approve")
        if console.input(f"Undo its {len(chosen.done)} finished changes? Only 'yes' will be accepted: ").strip() \
                != "yes":
            raise RefusedError("rollback cancelled: the answer was not 'yes'")
    project = base.load(list(chosen.plan.paths) or base.spec_paths(paths))
    ctx = base.context(100, console)
    audit = open_audit(state_dir)
    try:
        run = audit.start("rollback", chosen.plan.plan_id, journal=chosen.journal.name)
        wait = gate.duration(lock_timeout, "--lock-timeout")
        with gate.locked(project, (), (), state_dir, wait, base.lock_waiting(console, wait), chosen.plan.plan_id):
            results = recovery.rollback(chosen, project, ctx, state_dir)
        for r in results:
            run.write("undone", change=r.change_id, ok=r.ok, message=r.message)
        run.write("end", ok=all(r.ok for r in results))
    finally:
        audit.close()
        ctx.close()
    for r in results:
        mark = "[green]  ↩[/green]" if r.ok else "[red]  ✗[/red]"
        console.print(f"{mark} {base.esc(r.change_id)}" + (f"\n      {base.esc(r.message)}" if r.message else ""))
    bad = [r for r in results if not r.ok]
    console.print(f"[bold]Rollback {'complete' if not bad else 'incomplete'}:[/bold] {len(results) - len(bad)} "
                  f"undone, {len(bad)} not.")
    return ExitCode.ERROR if bad else ExitCode.OK


def drift(
    paths: Paths = None,
    as_json: JsonOut = False,
    markdown: MarkdownOut = False,
    parallelism: Parallelism = 100,
    state_dir: StateDir = Path(".recon"),
    shard: ShardOpt = None,
    shard_by: ShardBy = None,
) -> int:
    """Plan everything and tell drift (live moved away from what was applied) from pending changes (the
    specs moved away from live). Exit 0 when clean, 2 when there is drift or a pending change. With --shard K/N
    only that shard's targets (a nightly check over a CI matrix or a Kubernetes Indexed Job)."""
    from reconciler import drift as driftmod
    from reconciler import shards
    from reconciler.audit import open_audit
    from reconciler.render.text import drift_lines

    project, the_plan = base.planned(paths, parallelism, state_dir, "drift", shard=shards.chosen(shard, shard_by))
    log = open_audit(state_dir)  # (planning recorded the plan in it)
    try:
        applied = log.applied()
    finally:
        log.close()
    report = driftmod.classify(the_plan, project, applied)
    if as_json:
        sys.stdout.write(json.dumps(driftmod.to_json(the_plan, report), indent=2) + "\n")
    elif markdown:
        from reconciler.render.markdown import SUMMARY_LIMIT, render_drift

        sys.stdout.write(render_drift(the_plan, report, limit=SUMMARY_LIMIT))
    else:
        console = base.console_for()
        print_lines(console, drift_lines(the_plan, report))
    return ExitCode.OK if report.clean else ExitCode.CHANGES


state_app = typer.Typer(help="The state backend: where locks, the audit log and applied plans live.",
                        no_args_is_help=True, rich_markup_mode=None)


@state_app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="The backend to copy into: postgres (as recon.yaml or "
                                    "RECON_STATE_BACKEND and RECON_STATE_DSN name it).")],
    state_dir: StateDir = Path(".recon"),
) -> int:
    """Copy this machine's audit log (the history, the drift baseline, the applied plans) into the shared
    backend, every event with its hash, so the chain verifies there; locks are not copied (they are held
    only while an apply runs)."""
    from reconciler.audit import Audit, default_path
    from reconciler.state import Backend, backend
    from specs.errors import UsageError

    if to != "postgres":
        raise UsageError(f"--to {to}: recon migrates from sqlite to postgres")
    target = backend(state_dir)
    if target.kind != "postgres":
        raise UsageError("--to postgres: no postgres backend is chosen; set state.backend and state.dsn in "
                         "recon.yaml, or RECON_STATE_BACKEND=postgres and RECON_STATE_DSN")
    source_path = default_path(state_dir)
    if not source_path.exists():
        raise UsageError(f"there is no local audit log at {source_path} to migrate")
    source, dest = Audit(Backend("sqlite", state_dir, where=str(source_path))), Audit(target)
    try:
        if source.verify().broken:
            raise UsageError(f"the local audit log {source_path} does not verify (`recon audit verify`); it was "
                             "not copied")
        copied = source.copy_to(dest)
        verdict = dest.verify()
    finally:
        source.close()
        dest.close()
    base.console_for().print(f"Copied {copied} events from {source_path} to {target.where}; its chain "
                             f"{'holds' if not verdict.broken else 'does not hold: ' + verdict.broken}.")
    return ExitCode.OK if not verdict.broken else ExitCode.ERROR
