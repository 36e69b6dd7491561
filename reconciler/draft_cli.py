"""`recon draft "REQUEST"`: a request in plain language becomes spec YAML, reviewed and committed like any other."""

from __future__ import annotations

import datetime
import importlib
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from specs.errors import ExitCode, UsageError


def _planner() -> object:
    """The built-in rule-based planner, or the class RECON_DRAFT_PLANNER names (module:Class), e.g. one that
    asks a language model; its drafts are validated the same way."""
    named = os.environ.get("RECON_DRAFT_PLANNER", "")
    if not named:
        from reconciler.draft.rules import RuleDrafter

        return RuleDrafter()
    module, _, cls = named.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(f"RECON_DRAFT_PLANNER={named}: cannot load it ({exc}); give module:Class") from None


def draft(
    request: Annotated[str, typer.Argument(help='What you want, e.g. "restart apache on all web servers".')],
    paths: Annotated[list[str] | None, typer.Option("--specs", metavar="DIR",
                                                    help="The specs directory (default: specs/).")] = None,
    write: Annotated[bool, typer.Option("--write", help="Write the draft under the specs directory, then plan.")]
    = False,
    yes: Annotated[bool, typer.Option("--yes", help="Write a draft that needs a confirmation (it stops, removes "
                                      "or restarts something) without asking.")] = False,
    no_plan: Annotated[bool, typer.Option("--no-plan", help="With --write: do not run recon plan after.")] = False,
) -> int:
    """Draft specs from a request in plain language: printed (a new file, or a diff of the spec it changes), or
    written with --write and followed by the ordinary plan. Names are resolved against the existing specs; what
    is missing or ambiguous is asked (on a terminal) or listed, never guessed."""
    from rich.console import Console

    from reconciler.draft import write as out
    from reconciler.draft.catalog import Catalog
    from specs.project import load_project

    console = Console(highlight=False, soft_wrap=True)
    specs = [str(p) for p in (paths or ["specs"])]
    specs_dir = Path(specs[0])
    if not specs_dir.is_dir():
        raise UsageError(f"{specs_dir} is not a directory of specs; give --specs DIR")
    catalog = Catalog.of(load_project(specs, preflight=False))
    planner = _planner()
    today = datetime.date.today().isoformat()
    made = planner.draft(request, catalog, specs_dir, today)  # type: ignore[attr-defined]
    tries = 0
    while made.questions and sys.stdin.isatty() and tries < 3:
        for q in made.questions:
            console.print(f"[yellow]?[/yellow] {q}")
        request = typer.prompt("Say it again with what is missing", default=request)
        made = planner.draft(request, catalog, specs_dir, today)  # type: ignore[attr-defined]
        tries += 1
    if made.questions or not made.edits:
        console.print(f"Cannot draft {request!r} yet:")
        for q in made.questions or ["the request changes nothing"]:
            console.print(f"  - {q}")
        return ExitCode.ERROR
    files = out.texts(made)
    out.check(specs_dir, files)  # a draft that would not load is never shown as a result, nor written
    console.print(out.show(made, files), markup=False)
    for note in made.notes:
        console.print(f"note: {note}")
    if made.confirm:
        console.print(f"[bold red]Needs confirmation:[/bold red] {made.confirm}.")
    if not write:
        given = "".join(f" --specs {shlex.quote(p)}" for p in (paths or []))  # the command as it was given
        console.print(f"Write it with: recon draft {shlex.quote(request)}{given} --write   (then review, commit, "
                      "plan, apply)")
        return ExitCode.OK
    asked = made.confirm and not yes
    if asked and (not sys.stdin.isatty() or typer.prompt("Type yes to write it", default="") != "yes"):
        console.print("Not written: add --yes to write a draft that needs a confirmation.")
        return ExitCode.ERROR
    out.write(files)
    console.print("Written: " + ", ".join(str(p) for p in files) + ". Review and commit it like any spec.")
    if no_plan:
        return ExitCode.OK
    from reconciler.clikit import planned, print_plan

    console.print("The plan of the specs as they are now:")
    _, the_plan = planned(specs, 100, Path(".recon"), "plan")
    print_plan(the_plan, False, False)
    return ExitCode.OK
