"""What stands between a plan and its apply, in this order, each step recorded in the audit log:

1. idempotency: a saved plan already applied, or a --request-id already done, does nothing again;
2. policy: a plan with a denied change is refused (exit 3);
3. confirmation: environments that need one want `--confirm PLAN_ID`, or their names typed on a
   terminal; other plans want `yes` on a terminal, or --auto-approve;
4. locks of the plan's targets, then the executor; the outcome of every step.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.audit import Audit, Run, default_path
from reconciler.identity import whoami
from specs.errors import ExitCode, RefusedError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from providers.context import Context
    from reconciler.plan import Plan
    from specs.project import Project


def duration(text: str, option: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if m is None:
        raise UsageError(f"{option} {text!r}: give a duration such as 30s, 5m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def record_plan(plan: Plan, state_dir: Path, command: str = "plan") -> None:
    """A plan is audited too: who planned what, from which commit, and what policy said."""
    audit = Audit(default_path(state_dir))
    try:
        run = audit.start(command, plan.plan_id, paths=list(plan.paths))
        _record_policy(run, plan)
        run.write("end", ok=True, summary=dict(plan.counts()))
    finally:
        audit.close()


def _record_policy(run: Run, plan: Plan) -> None:
    for c in plan.pending:
        if c.denied or c.environment or c.risks:
            run.write("policy", change=c.id, ok=not c.denied, message=c.denied, environment=c.environment,
                      risks=list(c.risks), action=c.action)


@contextmanager
def locked(project: Project, targets: Sequence[str], excludes: Sequence[str], state_dir: Path, timeout: float,
           console: Console, plan_id: str = "") -> Iterator[None]:
    """Hold the locks of every target set the selected specs touch (host groups, repositories)."""
    from reconciler import executor, locks, planner

    items = planner.select(project, planner.expand(project), targets, excludes)
    keys = executor.lock_keys([(p, i, None) for p, i in items])
    holder = {**whoami(), "plan_id": plan_id}
    with locks.hold(state_dir, keys, holder, timeout, lambda key, who: console.print(
            f"[yellow]Waiting for the lock {key}[/yellow], held by {who} (up to {timeout:g}s)…")):
        yield


def apply(plan: Plan, project: Project, ctx: Context, console: Console, state_dir: Path, *, saved: bool,
          auto_approve: bool, confirm: str | None, request_id: str | None) -> int:
    """Gate the plan, then apply it; the caller holds the locks."""
    from reconciler import executor, policy
    from reconciler.journal import Journal
    from reconciler.render.text import report_lines

    if not plan.pending:
        if saved:
            console.print(f"Plan {plan.plan_id} has no changes. Nothing to do.")
        return ExitCode.OK
    # policy is decided again from the specs: what a saved plan file says of it is not trusted
    plan = dataclasses.replace(plan, changes=tuple(policy.annotate(project, plan.changes)))
    audit = Audit(default_path(state_dir))
    try:
        done = audit.finished(request_id=request_id) if request_id else (
            audit.finished(plan_id=plan.plan_id) if saved else None)
        if done is not None:
            what = f"request {request_id}" if request_id else f"plan {plan.plan_id}"
            console.print(f"{what} was already applied at {done['at']} by {done.get('user', '?')}@"
                          f"{done.get('host', '?')} (audit run {done['run']}). Nothing to do.")
            return ExitCode.OK
        run = audit.start("apply", plan.plan_id, request_id or "", saved=saved, paths=list(plan.paths),
                          summary=dict(plan.counts()))
        _record_policy(run, plan)
        try:
            _allow(plan, project, console, saved, auto_approve, confirm, policy.confirmations(plan.pending, project))
        except RefusedError as exc:
            run.write("refused", ok=False, message=str(exc))
            raise
        journal = Journal(state_dir, plan.plan_id, run, plan)
        try:
            report = executor.apply(plan, project, ctx, journal)
            desired = {c.id: c.desired for c in plan.changes}
            for r in report.succeeded:  # what the specs said when the resource was last made so: drift's baseline
                run.write("applied", change=r.change_id, ok=True, desired=desired.get(r.change_id, ""))
            journal.write("end", ok=not report.failed, succeeded=len(report.succeeded), failed=len(report.failed),
                          seconds=round(report.seconds, 3))
        except BaseException as exc:
            journal.write("end", ok=False, message=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            journal.close()
    finally:
        audit.close()
    for line in report_lines(report):
        console.print(line)
    return ExitCode.ERROR if report.failed else ExitCode.OK


def _allow(plan: Plan, project: Project, console: Console, saved: bool, auto_approve: bool, confirm: str | None,
           environments: list[str]) -> None:
    """Return when the plan may go ahead; RefusedError (exit 3) saying why not."""
    if plan.denied:
        rules = sorted({c.denied for c in plan.denied})
        raise RefusedError(f"plan {plan.plan_id} has {len(plan.denied)} change(s) denied by policy ("
                           + "; ".join(rules) + "); nothing was applied")
    if confirm is not None and confirm != plan.plan_id:
        raise RefusedError(f"--confirm {confirm} confirms another plan; this plan is {plan.plan_id} (the live state "
                           "or the specs moved since). Review it, then confirm it by its id")
    if environments:
        if confirm == plan.plan_id:
            return
        names = ", ".join(environments)
        if not sys.stdin.isatty():
            raise RefusedError(f"plan {plan.plan_id} changes {names}, which needs a confirmation: re-run with "
                               f"--confirm {plan.plan_id} (--auto-approve is not enough)")
        console.print(f"\nPlan {plan.plan_id} changes [bold]{names}[/bold]. Type the environment name"
                      f"{'s' if len(environments) > 1 else ''} to confirm.")
        answer = console.input(f"  {names}: ")
        if answer.strip() != names:
            raise RefusedError(f"apply cancelled: the answer was not '{names}'")
        return
    if saved or auto_approve or confirm == plan.plan_id:
        return
    if not sys.stdin.isatty():
        raise RefusedError(
            "apply needs a confirmation and there is no terminal to ask on; "
            "re-run with --auto-approve, or save a plan with `recon plan --out plan.json` and apply that"
        )
    console.print(f"\nApply plan {plan.plan_id}? Only 'yes' will be accepted.")
    answer = console.input("  Enter a value: ")
    if answer.strip() != "yes":
        raise RefusedError("apply cancelled: the answer was not 'yes'")
