"""The command line. `program` does the work; `main` maps every known failure to one sentence
and an exit code (0 clean, 1 error, 2 changes pending, 3 refused). Library code never prints."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler import __version__
from reconciler.clikit import (
    Exclude,
    ForceConflicts,
    JsonOut,
    MarkdownOut,
    Parallelism,
    Paths,
    Prune,
    ShardBy,
    ShardOpt,
    StateDir,
    Target,
    claim_targets,
    console_for,
    context,
    diag,
    esc,
    load,
    lock_waiting,
    mark_drift,
    planned,
    print_lines,
    print_plan,
    read_plan,
    saved_plan,
    spec_paths,
    write_plan,
)
from specs.errors import ExitCode, ReconError, SpecError, StalePlanError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.gate import Decision, Outcome
    from reconciler.plan import Plan
    from specs.project import Project

app = typer.Typer(
    name="recon",
    help="recon: plan and apply the state your YAML specs describe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command()
def validate(paths: Paths = None) -> int:
    """Check the specs without reading any live state (and without needing their secrets); the objects of
    Models on Kubernetes are checked against the Kubernetes API's schemas, offline."""
    project = load(spec_paths(paths), preflight=False)
    from reconciler.planner import offline_checks

    checked, problems = offline_checks(project)
    if problems:
        raise SpecError(problems)
    kinds: dict[str, int] = {}
    for spec in project.specs.values():
        kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    console_for().print(f"[green]Valid:[/green] {len(project.specs)} specs in {len(project.files)} files ({detail}).")
    for line in checked:
        console_for().print(esc(line))
    return ExitCode.OK


@app.command()
def plan(
    paths: Paths = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the plan to this JSON file.")] = None,
    as_json: JsonOut = False,
    target: Target = None,
    exclude: Exclude = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes (0 when none).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list unchanged resources.")] = False,
    parallelism: Parallelism = 100,
    state_dir: StateDir = Path(".recon"),
    changed_since: Annotated[
        str | None, typer.Option("--changed-since", metavar="REF",
                                 help="Only specs changed since this git commit (and what depends on them).")
    ] = None,
    markdown: MarkdownOut = False,
    prune: Prune = False,
    force_conflicts: ForceConflicts = False,
    claim: Annotated[str | None, typer.Option(
        "--claim", metavar="OWNER", help="Hold the targets this plan changes for OWNER (a pull request: pr:N) "
        "until `recon lock release --owner OWNER`; refused (exit 3) while another owner holds one.")] = None,
    shard: ShardOpt = None,
    shard_by: ShardBy = None,
) -> int:
    """Read the live state, diff it against the specs, and show what apply would do.

    `recon plan merge FRAGMENT... --out plan.json` makes one plan of the fragments `--shard K/N` planned."""
    from reconciler import shards

    if paths and paths[0] == "merge":
        if target or exclude or changed_since or prune or claim or shard or shard_by:
            raise UsageError("recon plan merge takes only fragments and --out/--json/--markdown; the fragments were "
                             "planned with their options")
        merged = shards.merge([(name, read_plan(saved_plan([name]) or Path(name), state_dir)) for name in paths[1:]])
        if out is not None:
            write_plan(merged, out)
        from reconciler import gate

        gate.record_plan(merged, state_dir, "merge", out is not None)
        print_plan(merged, as_json, verbose, markdown)
        if out is not None and not as_json and not markdown:
            console_for().print(f"Saved to {out}. Each runner applies its part with: recon apply {out} --shard "
                                f"K/{merged.shards['count']}")
        return ExitCode.CHANGES if detailed_exitcode and merged.pending else ExitCode.OK
    chosen_shard = shards.chosen(shard, shard_by)
    project, the_plan = planned(paths, parallelism, state_dir, "plan", force_conflicts, out is not None,
                                targets=target or [], excludes=exclude or [], changed_since=changed_since or "",
                                prune=prune, shard=chosen_shard)
    if out is not None:
        write_plan(the_plan, out)
    print_plan(the_plan, as_json, verbose, markdown)
    if out is not None and not as_json and not markdown:
        console_for().print(f"Saved to {out}. Apply exactly this plan with: recon apply {out}")
    if claim:
        held = claim_targets(project, the_plan, state_dir, claim)
        if held:
            err = console_for(stderr=True)
            for key, other in sorted(held.items()):
                err.print(f"[red]error:[/red] {esc(key)} is held by {esc(other['owner'])} (plan "
                          f"{esc(other['holder'].get('plan_id', '?'))}, since {esc(other['at'])}): it changes the "
                          f"same target; {esc(claim)} can be applied once {esc(other['owner'])} is merged or closed")
            return ExitCode.REFUSED
    if detailed_exitcode and the_plan.pending:
        return ExitCode.CHANGES
    return ExitCode.OK


@app.command()
def apply(
    paths: Annotated[
        list[str] | None, typer.Argument(metavar="[PLAN | PATHS...]",
                                         help="A saved plan (plan.json, or a plan id kept in the state backend), "
                                         "or spec files or directories.")
    ] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Apply without asking.")] = False,
    confirm: Annotated[
        str | None, typer.Option("--confirm", metavar="PLAN_ID",
                                 help="Confirm this plan id for environments that need a confirmation.")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="Do the work once: a second apply with this id does nothing.")
    ] = None,
    lock_timeout: Annotated[
        str, typer.Option("--lock-timeout", help="Wait this long for another apply's locks (e.g. 30s, 5m).")
    ] = "0s",
    unreviewed: Annotated[
        bool, typer.Option("--unreviewed", help="CI: no pull request reviewed this plan (its plan was stale, or "
                           "there was none); goes ahead only where the trusted Policy allows (unreviewedApply).")
    ] = False,
    target: Target = None,
    exclude: Exclude = None,
    prune: Prune = False,
    force_conflicts: ForceConflicts = False,
    state_dir: StateDir = Path(".recon"),
    parallelism: Parallelism = 100,
    shard: ShardOpt = None,
    shard_by: ShardBy = None,
) -> int:
    """Carry out a saved plan, or plan and apply after confirmation; with --shard K/N, this runner's part of a
    merged plan (`recon plan merge`), or without a saved plan: plan that shard and apply it."""
    from reconciler import gate, planner, shards
    from reconciler.render.text import plan_lines

    console = console_for()
    wait = gate.duration(lock_timeout, "--lock-timeout")
    ctx = context(parallelism, console, force_conflicts)
    waiting = lock_waiting(console, wait)

    def gated(the_plan: Plan, project: Project, saved: bool, items: gate.Items) -> Outcome:
        return gate.apply(the_plan, project, ctx, state_dir, saved=saved, auto_approve=auto_approve, confirm=confirm,
                          request_id=request_id, terminal=sys.stdin.isatty(), ask=lambda d: _ask(console, d),
                          items=items, unreviewed=unreviewed)

    try:
        saved = saved_plan(paths or [])
        if saved is not None:
            if target or exclude or force_conflicts or shard_by:
                raise UsageError("--target, --exclude, --force-conflicts and --shard-by go with `recon plan`; a saved "
                                 "plan holds them")
            the_plan = read_plan(saved, state_dir)
            the_plan = shards.for_apply(the_plan, shard)
            project = load(list(the_plan.paths))
            items = planner.expand(project)  # once: for the locks, the stale check and the apply
            with gate.locked(project, the_plan.selection.get("target", ()), the_plan.selection.get("exclude", ()),
                             state_dir, wait, waiting, the_plan.plan_id, items, ctx.halt, shards.targets(the_plan)):
                outcome = gated(the_plan, project, True, items)
        else:
            chosen = spec_paths(paths)
            project = load(chosen)
            items = planner.expand(project)
            mine = shards.chosen(shard, shard_by)  # plan this shard alone and apply it
            # the locks come first, as in Terraform: the plan then sees what an apply before this one did
            with gate.locked(project, target or [], exclude or [], state_dir, wait, waiting, items=items,
                             on_lost=ctx.halt, only=shards.of(project, items, mine) if mine else None):
                the_plan = mark_drift(planner.make_plan(project, ctx, chosen, target or [], exclude or [],
                                                        prune=prune, expanded=items, shard=mine), state_dir)
                print_lines(console, plan_lines(the_plan))
                outcome = gated(the_plan, project, False, items)
    finally:
        ctx.close()
    return _outcome(console, outcome)


def _ask(console: Console, decision: Decision) -> bool:
    """Ask on the terminal for what confirms the plan: the environments' names, or 'yes'."""
    if decision.verdict == "ask-environments":
        names = decision.answer
        plural = "s" if len(decision.environments) > 1 else ""
        console.print(f"\nPlan {decision.plan_id} changes [bold]{esc(names)}[/bold]. Type the environment "
                      f"name{plural} to confirm.")
        return console.input(f"  {esc(names)}: ").strip() == names
    console.print(f"\nApply plan {decision.plan_id}? Only 'yes' will be accepted.")
    return console.input("  Enter a value: ").strip() == "yes"


def _outcome(console: Console, outcome: Outcome) -> int:
    from reconciler.render.text import report_lines

    if outcome.nothing:
        console.print(esc(outcome.nothing))
    if outcome.report is not None:
        print_lines(console, report_lines(outcome.report))
    if outcome.warning:
        console.print(f"[red]error:[/red] {esc(outcome.warning)}")
    return int(outcome.code)


@app.command()
def show(
    plan: Annotated[str, typer.Argument(metavar="PLAN", help="A plan saved with `recon plan --out FILE`: the file, "
                                        "or its id (kept in the state backend).")],
    as_json: JsonOut = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list unchanged resources.")] = False,
    markdown: MarkdownOut = False,
    diff: Annotated[str | None, typer.Option("--diff", metavar="NEWER", help="Compare with another saved plan "
                                             "(a file or an id): what it adds, drops and changes. Exit 2 if they "
                                             "differ.")] = None,
    state_dir: StateDir = Path(".recon"),
) -> int:
    """Show a saved plan, or how another differs from it."""
    first = read_plan(saved_plan([plan]) or Path(plan), state_dir)
    if diff is None:
        print_plan(first, as_json, verbose, markdown)
        if first.shards and "index" not in first.shards and not as_json:
            _show_parts(first, markdown, state_dir)
        return ExitCode.OK
    from reconciler.plandiff import diff_plans
    from reconciler.render.text import plan_diff_lines

    found = diff_plans(first, read_plan(saved_plan([diff]) or Path(diff), state_dir))
    if as_json:
        sys.stdout.write(json.dumps(found.to_json(), indent=2, sort_keys=True, default=str) + "\n")
    else:
        console = console_for()
        print_lines(console, plan_diff_lines(found))
    return ExitCode.OK if found.same else ExitCode.CHANGES


def _show_parts(merged: Plan, markdown: bool, state_dir: Path) -> None:
    """After a merged plan: how far each runner's part of it has been applied (from the audit log)."""
    from reconciler.audit import open_audit
    from reconciler.shards import progress

    log = open_audit(state_dir)
    try:
        states = progress(merged, log.part_runs(merged.plan_id))
    finally:
        log.close()
    if markdown:
        from reconciler.render.markdown import render_parts

        sys.stdout.write("\n" + render_parts(states))
        return
    from reconciler.render.text import parts_lines

    console = console_for()
    print_lines(console, parts_lines(states))


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> int:
    """Print the JSON Schema of every spec kind (for editors: yaml-language-server)."""
    from reconciler.schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
    return ExitCode.OK


def _add_sub_commands() -> None:
    from providers import commands
    from reconciler.audit_cli import audit_app, lock_app
    from reconciler.do_cli import do
    from reconciler.draft_cli import draft
    from reconciler.init_cli import check, init_app
    from reconciler.state_cli import drift, rollback, state_app

    for name, group in commands().items():  # the providers' own (recon bundle …), through the registry
        app.add_typer(group, name=name)
    app.add_typer(init_app, name="init")
    app.command()(drift)
    app.command()(rollback)
    app.command()(check)
    app.command()(draft)
    app.command(name="do")(do)
    app.add_typer(audit_app, name="audit")
    app.add_typer(lock_app, name="lock")
    app.add_typer(state_app, name="state")


_add_sub_commands()


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        print(f"recon {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


_COMMAND: list[Any] = []


def command() -> Any:
    """The click command typer builds from `app`, built once per process (the resident planner's
    children inherit it: reconciler/warm.py)."""
    if not _COMMAND:
        _COMMAND.append(typer.main.get_command(app))
    return _COMMAND[0]


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code; every known failure is one message on stderr."""
    # the argument parser's own errors, found through typer's public names (typer vendors click)
    usage_error: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
    )
    err = console_for(stderr=True)
    try:
        result = int(command().main(args=argv, prog_name="recon", standalone_mode=False) or 0)
        if result == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into exit code 130, silently
            err.print("[red]interrupted[/red]")
        return result
    except SpecError as exc:
        for d in exc.diagnostics:
            err.print(diag(d.render()))
        err.print(f"[red]error:[/red] {exc}")
        return ExitCode.ERROR
    except StalePlanError as exc:
        err.print("[red]error:[/red] the saved plan is stale; nothing was applied:")
        for p in exc.problems:
            err.print(f"  - {esc(p)}")
        err.print(f"Make a new plan: {esc(exc.replan)}")
        return ExitCode.ERROR
    except ReconError as exc:
        err.print(f"[red]error:[/red] {esc(str(exc))}")
        return int(exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except usage_error as exc:
        exc.show()  # type: ignore[attr-defined]
        return ExitCode.ERROR
    except (typer.Abort, KeyboardInterrupt):
        err.print("[red]interrupted[/red]")
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug in recon: one sentence, the traceback only on request
        if os.environ.get("RECON_DEBUG"):
            raise
        err.print(f"[red]internal error:[/red] {type(exc).__name__}: {esc(str(exc))}")
        err.print("This is a bug in recon; run again with RECON_DEBUG=1 for the traceback and report it.")
        return ExitCode.ERROR


