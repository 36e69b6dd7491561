"""What every command module of the CLI shares: the common options, the console, loading and planning
specs, the context of a run, and reading, writing and printing plans. The commands live in cli.py (plan,
apply, show, validate, schema) and the *_cli.py modules; cli.py puts them together."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from specs.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from providers.context import Context
    from reconciler.plan import Plan
    from specs.project import Project

Paths = Annotated[list[str] | None, typer.Argument(metavar="[PATHS]...",
                                                   help="Spec files or directories (default: specs/).")]
Target = Annotated[list[str] | None, typer.Option("--target", "-t", metavar="ADDR",
                                                  help="Only resources matching ADDR (repeatable).")]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", "-x", metavar="ADDR",
                                                   help="Leave out resources matching ADDR (repeatable).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout.")]
MarkdownOut = Annotated[bool, typer.Option("--markdown", help="Print Markdown (PR comments, job summaries).")]
Prune = Annotated[bool, typer.Option("--prune", help="Also delete what recon made that no spec declares any "
                                    "more (without it, such things are shown and kept).")]
ForceConflicts = Annotated[bool, typer.Option(
    "--force-conflicts", help="Kubernetes: take fields another field manager owns (e.g. replicas after "
    "kubectl scale); the plan shows each field that changes owner.")]
Parallelism = Annotated[
    int,
    typer.Option("--parallelism", min=1, max=1000, help="At most this many targets at once (groups have limits too)."),
]
StateDir = Annotated[Path, typer.Option("--state-dir", help="Where recon keeps its journal, audit log and locks.")]
ShardOpt = Annotated[str | None, typer.Option(
    "--shard", metavar="K/N", help="Only shard K of N (1 <= K <= N): the targets split deterministically, each "
    "dependsOn closure across targets in one shard. Plan: a fragment for `recon plan merge`; apply: this "
    "runner's part of a merged plan.")]
ShardBy = Annotated[str | None, typer.Option(
    "--shard-by", metavar="LABEL", help="With --shard: split by this label of the hosts (e.g. zone), so the "
    "runner inside a zone plans that zone; the label's sorted values go to shards 1..N in turn.")]


def console_for(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_lines(console: Console, lines: Iterable[str]) -> None:
    """Lines of markup, each styled on its own as a print of its own would, printed at once: a print per line
    cost 0.2 s for a plan of 200 changes (a fifth of the no-op plan), while the run waited for it."""
    from rich.text import Text

    texts = [Text.from_markup(line) for line in lines]
    if texts:
        console.print(Text("\n").join(texts))


def spec_paths(paths: list[str] | None) -> list[str]:
    return list(paths) if paths else ["specs"]


def load(paths: list[str], preflight: bool = True, reviewing: bool = False) -> Project:
    """The specs, checked; and their sources, which must stay in the repository (policy.source_problems).
    `reviewing`: a plan, which may be a change's before its review: the files that decide whom recon trusts must
    not be the change's (policy.trust_problems); an apply comes after the review (a merge, an approval)."""
    from reconciler.policy import credential_problems, source_problems, trust_problems, unreviewed_files
    from specs.errors import SpecError
    from specs.project import load_project

    project = load_project(paths, preflight)
    project.unreviewed = unreviewed_files(project)
    problems = source_problems(project) + (trust_problems(project) + credential_problems(project) if reviewing else [])
    if problems:
        raise SpecError(problems)
    return project


def planned(paths: list[str] | None, parallelism: int, state_dir: Path, command: str,
            force_conflicts: bool = False, save: bool = False, **selection: Any) -> tuple[Project, Plan]:
    """Load the specs, plan them against the live state, and audit the plan (as `command`); `save`: keep the
    plan by its id in the state backend."""
    from reconciler import gate
    from reconciler.planner import make_plan

    chosen = spec_paths(paths)
    project = load(chosen, reviewing=True)
    ctx = context(parallelism, force_conflicts=force_conflicts)
    try:
        the_plan = make_plan(project, ctx, chosen, **selection)
    finally:
        ctx.close()
    the_plan = mark_drift(the_plan, state_dir)
    gate.record_plan(the_plan, state_dir, command, save)
    return project, the_plan


def mark_drift(the_plan: Plan, state_dir: Path) -> Plan:
    """Each pending change whose specs are what recon last applied there: the live side moved, not the specs
    (Terraform's "changed outside of Terraform"). From the state backend's baseline; a plan without pending
    changes asks nothing."""
    import dataclasses

    from reconciler.audit import open_audit

    pending = [c.id for c in the_plan.pending if c.desired]
    if not pending:
        return the_plan
    audit = open_audit(state_dir)
    try:
        applied = audit.applied(pending)
    finally:
        audit.close()
    changes = tuple(dataclasses.replace(c, drift=True) if c.is_change and c.desired and applied.get(c.id) == c.desired
                    else c for c in the_plan.changes)
    return dataclasses.replace(the_plan, changes=changes)


def claim_targets(project: Project, the_plan: Plan, state_dir: Path, owner: str) -> dict[str, dict[str, Any]]:
    """Hold the lock keys of the targets the plan changes for `owner`, in the state backend; {} when held, else
    the keys another owner holds (with its record)."""
    from reconciler import executor, planner
    from reconciler.audit import open_audit
    from reconciler.identity import ci_run, whoami

    pending = {c.id for c in the_plan.pending}
    chosen = [(p, i, None) for p, i in planner.expand(project) if i.id in pending]
    keys = executor.lock_keys(chosen)
    audit = open_audit(state_dir)
    try:
        return audit.claim(keys, owner, {**whoami(), "plan_id": the_plan.plan_id, "ci_run": ci_run()})
    finally:
        audit.close()


def context(parallelism: int, console: Console | None = None, force_conflicts: bool = False) -> Context:
    from providers.context import Context
    from reconciler.gitinfo import describe
    from reconciler.render.progress import make_reporter

    reporter = make_reporter(console or console_for(stderr=True), bars=sys.stderr.isatty())
    return Context(reporter=reporter, concurrency=parallelism, force_conflicts=force_conflicts,
                   commit=describe().get("sha", ""))


def lock_waiting(console: Console, wait: float) -> Callable[[str, str], None]:
    """What a waiting apply or rollback says, once, when another holds a lock it needs."""
    def say(key: str, holder: str) -> None:
        console.print(f"[yellow]Waiting for the lock {key}[/yellow], held by {holder} (up to {wait:g}s)…")

    return say


def print_plan(the_plan: Plan, as_json: bool, verbose: bool, markdown: bool = False) -> None:
    from reconciler.render.text import plan_lines

    if as_json:
        sys.stdout.write(json.dumps(the_plan.to_json(), indent=2) + "\n")
        return
    if markdown:
        from reconciler.render.markdown import SUMMARY_LIMIT, render

        sys.stdout.write(render(the_plan, limit=SUMMARY_LIMIT))
        return
    print_lines(console_for(), plan_lines(the_plan, verbose))


PLAN_ID = re.compile(r"^[0-9a-f]{12}$")


def saved_plan(args: list[str]) -> Path | str | None:
    """A saved plan named on the command line: a plan file, or a plan id kept in the state backend."""
    if len(args) == 1 and args[0].endswith(".json"):
        return Path(args[0])
    if len(args) == 1 and PLAN_ID.match(args[0]) and not Path(args[0]).exists():
        return args[0]
    return None


def read_plan(path: Path | str, state_dir: Path = Path(".recon")) -> Plan:
    from reconciler.plan import Plan

    if isinstance(path, str):  # a plan id
        from reconciler.audit import open_audit

        log = open_audit(state_dir)
        try:
            text = log.load_plan(path)
            where = log.where
        finally:
            log.close()
        if text is None:
            raise UsageError(f"no plan {path} is kept in {where}; plans are kept by `recon plan --out FILE`")
        return Plan.from_json(json.loads(text), f"plan {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such plan file; make one with `recon plan --out {path}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the plan: {exc}") from None
    return Plan.from_json(data, str(path))


def write_plan(the_plan: Plan, out: Path) -> None:
    try:
        out.write_text(json.dumps(the_plan.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{out}: cannot write the plan: {exc.strerror}") from None


def esc(text: str) -> str:
    from rich.markup import escape

    from reconciler.render.safe import visible

    return escape(visible(text, lines=True))


def diag(text: str) -> str:
    head, _, rest = text.partition("\n")
    return f"[red]{esc(head)}[/red]" + (f"\n[dim]{esc(rest)}[/dim]" if rest else "")
