"""`recon do ACTION TARGET`: restart, scale, logs and health between commits, under the Policy, confirmation and
audit of a plan (reconciler/actions.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler.clikit import StateDir, console_for, esc, load, spec_paths
from specs.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from providers.contract import Output
    from reconciler.actions import Preview, Step
    from reconciler.gate import Decision


def do(
    action: Annotated[str | None, typer.Argument(metavar="ACTION", help="restart, scale, logs or health "
                                                 "(`recon do --list`).")] = None,
    target: Annotated[str | None, typer.Argument(metavar="TARGET", help="A Model (Model/NAME, or NAME), or a "
                                                 "service: HostState/NAME/service:SVC, with @HOST for one host (a "
                                                 "prefix or a glob works too).")] = None,
    replicas: Annotated[str | None, typer.Option("--replicas", metavar="N", help="scale: how many replicas.")] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="DURATION", help="logs: only newer lines "
                                              "(30s, 10m, 2h, 1d).")] = None,
    tail: Annotated[str | None, typer.Option("--tail", metavar="N", help="logs: at most N lines per replica or "
                                             "host (default 100).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="logs: keep printing new lines until "
                                         "interrupted.")] = False,
    paths: Annotated[list[str] | None, typer.Option("--specs", metavar="PATH", help="Spec files or directories "
                                                    "(default: specs/).")] = None,
    confirm: Annotated[str | None, typer.Option("--confirm", metavar="ID", help="Confirm this action's preview id "
                                                "(for environments that need a confirmation).")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="Do it once: a retry with this id does "
                                                   "nothing more.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do a risky action without asking (not enough where "
                                      "the environment needs --confirm).")] = False,
    lock_timeout: Annotated[str, typer.Option("--lock-timeout", help="Wait this long for an apply's locks.")] = "0s",
    as_json: Annotated[bool, typer.Option("--json", help="Print the preview, output and results as JSON.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the actions and their parameters.")] = False,
    state_dir: StateDir = Path(".recon"),
) -> int:
    """Act on a Model or a service between commits: restart, scale, logs, health; previewed with an id, decided by
    the Policy, confirmed where it is risky, audited."""
    from reconciler import actions, gate, planner
    from reconciler.clikit import context, lock_waiting
    from specs.actions import action as definition

    if list_:
        return _list(as_json)
    if action is None or target is None:
        raise UsageError("give an action and a target, e.g. `recon do restart Model/churn-model`; `recon do --list` "
                         "shows the actions")
    defn = definition(action)
    given: dict[str, Any] = {k: v for k, v in (("replicas", replicas), ("since", since), ("tail", tail))
                             if v is not None}
    if follow:
        given["follow"] = True
    params = defn.parse(given)
    if follow and as_json:
        raise UsageError("--follow streams lines as they come; use it without --json")
    err = console_for(stderr=True)
    out = console_for()
    project = load(spec_paths(paths))
    items = planner.expand(project)
    preview = actions.resolve(project, items, defn, target, params)
    if not as_json:
        _preview(err, preview)
    wait = gate.duration(lock_timeout, "--lock-timeout")
    ctx = context(1, err)
    lines: list[dict[str, str]] = []

    def emit(step: Step, line: Output) -> None:
        if as_json:
            lines.append({"target": step.target, "source": line.source, "text": line.text})
        else:
            out.print(f"[dim]{esc(line.source)} |[/dim] {esc(line.text)}")

    try:
        outcome = actions.run(preview, project, ctx, state_dir, confirm=confirm, request_id=request_id, yes=yes,
                              terminal=sys.stdin.isatty(), ask=lambda d: _ask(err, d, preview), emit=emit,
                              items=items, lock_timeout=wait, on_wait=lock_waiting(err, wait))
    finally:
        ctx.close()
    ok = outcome.code == ExitCode.OK
    if as_json:
        sys.stdout.write(json.dumps({
            "preview": preview.to_json(), "nothing": outcome.nothing, "output": lines, "ok": ok,
            "seconds": round(outcome.seconds, 3), "skipped": outcome.skipped,
            "results": [{"id": r.change_id, "ok": r.ok, "message": r.message, "note": r.note,
                         "seconds": round(r.seconds, 3)} for r in outcome.results]}, indent=2) + "\n")
        return int(outcome.code)
    if outcome.nothing:
        err.print(esc(outcome.nothing))
        return int(outcome.code)
    for r in outcome.results:
        mark, text = ("[green]✓[/green]", r.note) if r.ok else ("[red]✗[/red]", r.message)
        err.print(f"{mark} {esc(r.change_id)}: {esc(text)} [dim]({r.seconds:.1f}s)[/dim]")
    for skipped in outcome.skipped:
        err.print(f"[yellow]-[/yellow] {esc(skipped)}: not started (an earlier target failed)")
    failed = sum(not r.ok for r in outcome.results)
    err.print(f"{'Done' if ok else 'Failed'}: {len(outcome.results) - failed} ok, {failed} failed"
              + (f", {len(outcome.skipped)} not started" if outcome.skipped else "")
              + f" in {outcome.seconds:.1f}s (audit: recon audit --plan {preview.id}).")
    if ok and preview.diverges:
        for text in preview.diverges:
            err.print(f"[yellow]Live now differs from the specs:[/yellow] {esc(text)}")
    return int(outcome.code)


def _preview(console: Console, preview: Preview) -> None:
    a = preview.action
    args = " ".join(f"--{k} {v}" if v is not True else f"--{k}" for k, v in preview.given().items())
    console.print(f"Action [bold]{preview.id}[/bold]: {a.name} {esc(preview.pattern)}" + (f" {esc(args)}" if args
                                                                                            else ""))
    for s in preview.steps:
        flags = [r for r in s.change.risks if r != a.name]
        denied = f" [red]denied: {esc(s.change.denied)}[/red]" if s.change.denied else ""
        console.print(f"  {'!' if a.risky else '·'} {a.name} {esc(s.change.address)} @ {esc(s.target)}"
                      + (f" [yellow]({esc(', '.join(flags))})[/yellow]" if flags else "") + denied)
    for text in preview.diverges:
        console.print(f"  [yellow]then live differs from the specs:[/yellow] {esc(text)}")


def _ask(console: Console, decision: Decision, preview: Preview) -> bool:
    if decision.verdict == "ask-environments":
        names = decision.answer
        console.print(f"\nAction {preview.id} changes [bold]{esc(names)}[/bold]. Type the environment name"
                      f"{'s' if len(decision.environments) > 1 else ''} to confirm.")
        return console.input(f"  {esc(names)}: ").strip() == names
    console.print(f"\n{preview.action.name.capitalize()} {esc(preview.pattern)} ({len(preview.steps)} target"
                  f"{'s' if len(preview.steps) != 1 else ''})? Only 'yes' will be accepted.")
    return console.input("  Enter a value: ").strip() == "yes"


def _list(as_json: bool) -> int:
    from reconciler.actions import catalogue

    found = catalogue()
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return ExitCode.OK
    console = console_for()
    for a in found:
        on = " or ".join({"model": "Model", "service": "service"}[o] for o in a["on"])
        console.print(f"[bold]{a['name']}[/bold] ({on}{', risky' if a['risky'] else ''}): {esc(a['summary'])}")
        for p in a["params"]:
            default = "required" if p["required"] else f"default {p['default']}"
            console.print(f"    --{p['name']} ({p['type']}, {default}): {esc(p['description'])}")
    return ExitCode.OK
