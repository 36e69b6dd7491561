"""What stands between a plan and its apply, in this order, each step recorded in the audit log:

1. idempotency: a saved plan already applied, or a --request-id already done, does nothing again;
2. policy: a plan with a denied change is refused (exit 3);
3. confirmation: environments that need one want `--confirm PLAN_ID`, or their names typed on a
   terminal; other plans want `yes` on a terminal, or --auto-approve;
4. locks of the plan's targets, then the executor; the outcome of every step.

The decision (`decide`) is pure data; this module neither prints nor reads a terminal. Asking is the
caller's (`ask`, given by the CLI), and so is every word shown to the user (`Outcome`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from reconciler.audit import Run, open_audit
from reconciler.identity import ci_run, whoami
from specs.errors import ExitCode, RefusedError, UsageError

if TYPE_CHECKING:
    from providers.context import Context
    from providers.contract import Change, Instance, Provider
    from reconciler.executor import ApplyReport
    from reconciler.plan import Plan
    from specs.project import Project

Items = list[tuple["Provider", "Instance[Any]"]]  # a project expanded once (planner.expand): locks, plan, apply


def duration(text: str, option: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if m is None:
        raise UsageError(f"{option} {text!r}: give a duration such as 30s, 5m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def record_plan(plan: Plan, state_dir: Path, command: str = "plan", save: bool = False) -> None:
    """A plan is audited too: who planned what, from which commit, and what policy said. `save`: keep the
    plan itself by its id (`recon plan --out`), so any runner of the backend can show or apply it by id."""
    audit = open_audit(state_dir)
    try:
        if save:
            import json

            audit.save_plan(plan.plan_id, json.dumps(plan.to_json(), sort_keys=True))
        run = audit.start(command, plan.plan_id, paths=list(plan.paths))
        _record_policy(run, plan)
        run.write("end", ok=True, summary=dict(plan.counts()))
    finally:
        audit.close()


def _record_policy(run: Run, plan: Plan) -> None:
    record_policy(run, plan.policy, plan.pending)


def record_policy(run: Run, policy: dict[str, Any], pending: Sequence[Change]) -> None:
    """Who was checked against which Policy, and what it said of each change it had a word on."""
    if policy:
        run.write("policy", ok=True, **{k: v for k, v in policy.items() if k not in ("ok", "kind")})
    for c in pending:
        if c.denied or c.environment or c.risks or c.resource == "policy":
            run.write("policy", change=c.id, ok=not c.denied, message=c.denied, environment=c.environment,
                      risks=list(c.risks), action=c.action)


@contextmanager
def locked(project: Project, targets: Sequence[str], excludes: Sequence[str], state_dir: Path, timeout: float,
           on_wait: Callable[[str, str], None], plan_id: str = "", items: Items | None = None,
           on_lost: Callable[[str], None] | None = None, only: set[str] | None = None) -> Iterator[None]:
    """Hold the locks of every target the selected specs touch (hosts, repositories, engines, namespaces).
    `on_wait(key, holder)` is called when another apply holds one; `on_lost(why)` when held locks are lost
    (the shared backend cannot renew them); `items`: the project already expanded; `only`: of these targets
    alone (one runner's part of a merged plan)."""
    from reconciler import executor, locks, planner
    from reconciler.state import backend

    chosen = planner.select(project, planner.expand(project) if items is None else items, targets, excludes)
    if only is not None:
        chosen = [(p, i) for p, i in chosen if i.target in only]
    keys = executor.lock_keys([(p, i, None) for p, i in chosen])
    run = ci_run()
    holder = {**whoami(), "plan_id": plan_id, **({"ci_run": run} if run else {})}
    with locks.hold(backend(state_dir), keys, holder, timeout, on_wait, on_lost):
        yield


@dataclass(frozen=True)
class Decision:
    """Whether a plan may go ahead: go; refuse (why); or ask on a terminal, for the names of the
    environments that need a confirmation, or for 'yes'."""

    verdict: Literal["go", "refuse", "ask-environments", "ask-yes"]
    plan_id: str
    reason: str = ""  # refuse: why
    environments: tuple[str, ...] = ()  # ask-environments: the names to type

    @property
    def answer(self) -> str:
        """What confirms, when asked."""
        return ", ".join(self.environments) if self.verdict == "ask-environments" else "yes"

    @property
    def cancelled(self) -> str:
        """The refusal when the answer was something else."""
        return f"apply cancelled: the answer was not '{self.answer}'"


def decide(plan: Plan, environments: Sequence[str], *, saved: bool, auto_approve: bool, confirm: str | None,
           terminal: bool) -> Decision:
    """Pure: policy's denials, a confirmation by id, the environments that need one, and whether a terminal
    can be asked (`terminal`: standard input is one)."""
    return decide_on(plan.plan_id, [c.denied for c in plan.denied], environments, saved=saved,
                     auto_approve=auto_approve, confirm=confirm, terminal=terminal)


def decide_on(pid: str, denied: Sequence[str], environments: Sequence[str], *, saved: bool, auto_approve: bool,
              confirm: str | None, terminal: bool, what: str = "plan") -> Decision:
    """`decide` for a plan or an operational action (`what`: "action", whose id is its preview's): `denied`, the
    rule that denies each denied change."""
    if denied:
        rules = sorted(set(denied))
        return Decision("refuse", pid, f"{what} {pid} has {len(denied)} change(s) denied by policy ("
                        + "; ".join(rules) + f"); nothing was {'applied' if what == 'plan' else 'done'}")
    if confirm is not None and confirm != pid:
        return Decision("refuse", pid, f"--confirm {confirm} confirms another {what}; this {what} is {pid} (the "
                        f"{'live state or the specs' if what == 'plan' else 'target, parameters or specs'} moved "
                        "since). Review it, then confirm it by its id")
    if environments:
        if confirm == pid:
            return Decision("go", pid)
        if not terminal:
            return Decision("refuse", pid, f"{what} {pid} changes {', '.join(environments)}, which needs a "
                            f"confirmation: re-run with --confirm {pid} "
                            f"({'--auto-approve' if what == 'plan' else '--yes'} is not enough)")
        return Decision("ask-environments", pid, environments=tuple(environments))
    if saved or auto_approve or confirm == pid:
        return Decision("go", pid)
    if not terminal:
        if what != "plan":
            return Decision("refuse", pid, f"this {what} needs a confirmation and there is no terminal to ask on; "
                            f"re-run with --yes, or --confirm {pid}")
        return Decision("refuse", pid, "apply needs a confirmation and there is no terminal to ask on; re-run with "
                        "--auto-approve, or save a plan with `recon plan --out plan.json` and apply that")
    return Decision("ask-yes", pid)


@dataclass
class Outcome:
    """What an apply came to: its exit code, and either the report or why nothing was done."""

    code: ExitCode
    report: ApplyReport | None = None
    nothing: str = ""  # a line saying why nothing was done (no changes; already applied)
    warning: str = ""  # a line to show after the report (the audit log was lost mid-apply)


def apply(plan: Plan, project: Project, ctx: Context, state_dir: Path, *, saved: bool, auto_approve: bool,
          confirm: str | None, request_id: str | None, terminal: bool, ask: Callable[[Decision], bool],
          items: Items | None = None, unreviewed: bool = False) -> Outcome:
    """Gate the plan, then apply it; the caller holds the locks. `ask(decision)`: True when the user confirmed
    on the terminal. RefusedError (exit 3) when the plan may not go ahead."""
    from reconciler import executor, policy
    from reconciler.journal import Journal, sync

    if not plan.pending:
        what = f"Part {plan.shards['index']}/{plan.shards['count']} of plan" if plan.shards.get("applying") else "Plan"
        return Outcome(ExitCode.OK, nothing=f"{what} {plan.plan_id} has no changes. Nothing to do." if saved else "")
    # policy is decided again from the specs: what a saved plan file says of it is not trusted
    gov = policy.governing(project)
    if saved and plan.policy.get("digest", "") != gov.digest:
        from reconciler.executor import replan_command
        from specs.errors import StalePlanError

        raise StalePlanError([f"the Policy moved since the plan (now: {gov.source})"], replan_command(plan))
    plan = dataclasses.replace(plan, changes=tuple(policy.annotate(project, plan.changes)), policy=gov.record())
    audit = open_audit(state_dir)
    try:
        sync(state_dir, audit)  # what an apply that lost the audit log did, recorded now
        part = f"{plan.shards['index']}/{plan.shards['count']}" if plan.shards.get("applying") else ""
        parts = int(plan.shards.get("count", 0)) if not part and "index" not in plan.shards else 0
        done = audit.finished(request_id=request_id) if request_id else (
            audit.finished(plan_id=plan.plan_id, part=part, parts=parts) if saved else None)
        if done is not None:
            return Outcome(ExitCode.OK, nothing=_already(done, request_id, plan.plan_id, part))
        run = audit.start("apply", plan.plan_id, request_id or "", saved=saved, paths=list(plan.paths),
                          summary=dict(plan.counts()), **({"unreviewed": True} if unreviewed else {}),
                          **({"part": part} if part else {}))
        _record_policy(run, plan)
        refused = policy.unreviewed_refusal(project) if unreviewed else ""
        if refused:
            run.write("refused", ok=False, message=refused)
            raise RefusedError(refused)
        decision = decide(plan, policy.confirmations(plan.pending, project), saved=saved, auto_approve=auto_approve,
                          confirm=confirm, terminal=terminal)
        refusal = decision.reason if decision.verdict == "refuse" else (
            "" if decision.verdict == "go" or ask(decision) else decision.cancelled)
        if refusal:
            run.write("refused", ok=False, message=refusal)
            raise RefusedError(refusal)
        journal = Journal(state_dir, plan.plan_id, run, plan, on_lost=ctx.halt)
        try:
            # a part of a merged plan counts a rolling spec's failed targets across every part (maxFailures)
            shared = (lambda spec: audit.rollout_failures(plan.plan_id, spec)) if part else None
            # planned by this apply, under its locks, nobody asked since: no re-read before the first wave
            fresh = not saved and decision.verdict == "go"
            report = executor.apply(plan, project, ctx, journal, items, shared, fresh)
            desired = {c.id: c.desired for c in plan.changes}
            with journal.batch():
                for r in report.succeeded:  # what the specs said when the resource was last made so: drift's baseline
                    journal.write("applied", change=r.change_id, ok=True, desired=desired.get(r.change_id, ""))
                journal.write("end", ok=not report.failed, succeeded=len(report.succeeded),
                              failed=len(report.failed), seconds=round(report.seconds, 3))
        except BaseException as exc:
            journal.write("end", ok=False, message=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            journal.close()
    finally:
        audit.close()
    if journal.lost:
        return Outcome(ExitCode.ERROR, report, warning=f"the audit log could not be written during the apply "
                       f"({journal.lost}); no step started after that. What was done is in {journal.path}; the next "
                       "apply records it in the audit log")
    return Outcome(ExitCode.ERROR if report.failed else ExitCode.OK, report)


def _already(done: dict[str, Any], request_id: str | None, plan_id: str, part: str = "") -> str:
    what = f"request {request_id}" if request_id else (
        f"part {part} of plan {plan_id}" if part and done.get("part") else f"plan {plan_id}")
    if done.get("parts"):
        what += f" (each of its {done['parts']} parts)"
    return (f"{what} was already applied at {done['at']} by {done.get('user', '?')}@{done.get('host', '?')} "
            f"(audit run {done['run']}). Nothing to do.")
