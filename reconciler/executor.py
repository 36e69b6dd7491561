"""Apply a plan: check it is still true, then carry it out wave by wave, targets in parallel.

- Before anything changes, every resource to change is re-read; a moved fingerprint or a
  changed spec refuses the whole plan (StalePlanError), naming each stale resource.
- Waves follow `dependsOn`; within a wave each target (host) gets its changes in order, in
  one provider call; targets run in parallel. A failure stops that target's later steps and
  skips every spec that depends on the failed one.
- Each wave re-reads its targets just before applying (an earlier wave may have moved them).
- After applying, the changed resources are read once more and diffed: a change that did
  not converge is reported as failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from providers.context import ApplyEnded, ApplyStarted, Context, Event, Note, Reporter, StepDone, Tick
from providers.contract import Change, Instance, Provider, Result, WithLocking
from reconciler import planner
from reconciler.journal import Journal
from reconciler.plan import Plan
from reconciler.policy import POLICY_RESOURCE
from specs.base import Strategy
from specs.errors import ReconError, StalePlanError
from specs.project import Project


@dataclass
class ApplyReport:
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    @property
    def succeeded(self) -> list[Result]:
        return [r for r in self.results if r.ok]


Step = tuple[Provider, Instance, Change]


def replan_command(plan: Plan) -> str:
    paths = " ".join(plan.paths)
    return f"recon plan {paths} --out plan.json"


def resolve(plan: Plan, project: Project, items: Sequence[tuple[Provider, Instance]] | None = None) -> list[Step]:
    """The steps of the plan's changes, or StalePlanError if the specs moved since the plan. `items`: the
    project already expanded (planner.expand), so an apply expands it once."""
    problems = []
    for addr, digest in plan.specs.items():
        spec = project.specs.get(addr)
        if spec is None:
            problems.append(f"{addr}: the spec is gone")
        elif spec.doc.digest != digest:
            problems.append(f"{addr}: the spec changed ({spec.doc.file})")
    for addr in project.specs:
        if addr not in plan.specs:
            problems.append(f"{addr}: a new spec since the plan")
    by_id = {inst.id: (prov, inst) for prov, inst in (planner.expand(project) if items is None else items)}
    steps: list[Step] = []
    for change in plan.pending:
        if change.resource == POLICY_RESOURCE:
            continue  # a Policy change is reviewed in the plan and takes effect once merged: nothing to run
        found = by_id.get(change.id) or planner.orphan(change)
        if found is None:
            problems.append(f"{change.id}: no longer in the specs")
        elif found[1].desired_digest != change.desired:
            problems.append(f"{change.id}: its desired state changed (e.g. a source file)")
        else:
            steps.append((found[0], found[1], change))
    if problems:
        raise StalePlanError(problems, replan_command(plan))
    return steps


def stale(steps: Sequence[Step], ctx: Context) -> dict[str, str]:
    """Change id -> what moved, for every step whose live state is no longer what was planned against."""
    live = planner.read_live([(p, i) for p, i, _ in steps], replace(ctx, fingerprint_only=True))
    fresh = {c.id: c for c in planner.diff_all([(p, i) for p, i, _ in steps], live)}
    out = {}
    for _, inst, change in steps:
        now = fresh[inst.id]
        if now.fingerprint != change.fingerprint:
            out[change.id] = f"live state moved since the plan (now: {now.action}, {now.reason})"
    return out


def lock_keys(steps: Sequence[tuple[Provider, Instance, object]]) -> list[str]:
    """What an apply of these instances must hold: per target set (a host group, a repository), as
    the provider names it; the spec address for providers that name none."""
    keys = set()
    for provider, inst, _ in steps:
        keys.add(provider.lock_key(inst) if isinstance(provider, WithLocking) else inst.spec)
    return sorted(keys)


Shared = Callable[[str], set[str]]  # a rolling spec -> its targets that failed in any part of the apply


def apply(plan: Plan, project: Project, ctx: Context, journal: Journal,
          items: Sequence[tuple[Provider, Instance]] | None = None, shared: Shared | None = None,
          fresh: bool = False) -> ApplyReport:
    """Carry out the plan (the caller holds the locks of its targets). `shared`: the failures of the other runners
    applying parts of the same merged plan (shards.py), counted against a rolling spec's maxFailures. `fresh`: the
    plan was read just now, under the locks held since before it, and nobody was asked in between: it is not
    read again before the first wave (that re-read would be the same read a moment later)."""
    steps = resolve(plan, project, items)
    if not steps:
        return ApplyReport()
    return _apply(plan, project, replace(ctx, stack=project.stack), journal, steps, shared, fresh)


def _apply(plan: Plan, project: Project, ctx: Context, journal: Journal, steps: list[Step],
           shared: Shared | None = None, fresh: bool = False) -> ApplyReport:
    started = time.monotonic()
    report = ApplyReport()
    moved = {} if fresh else stale(steps, ctx)
    if moved:
        problems = [f"{cid}: {why}" for cid, why in moved.items()]
        journal.write("refused", reason="stale plan", problems=problems)
        raise StalePlanError(problems, replan_command(plan))
    ctx = replace(ctx, reporter=_JournalingReporter(ctx.reporter, journal))
    per_target: dict[str, list[str]] = {}
    for _, inst, change in steps:
        per_target.setdefault(inst.target, []).append(change.id)
    ctx.reporter.report(ApplyStarted({target: tuple(ids) for target, ids in per_target.items()}))
    try:
        return _waves(plan, project, ctx, journal, steps, report, started, shared)
    finally:
        ctx.reporter.report(ApplyEnded())


def _waves(plan: Plan, project: Project, ctx: Context, journal: Journal, steps: list[Step], report: ApplyReport,
           started: float, shared: Shared | None = None) -> ApplyReport:
    failed_specs: set[str] = set()
    first = True
    in_order = {addr for wave in plan.order for addr in wave}
    last = tuple(sorted({s[2].spec for s in steps} - in_order))  # what no spec declares (orphans): last
    for wave in (*plan.order, last):
        in_wave = [s for s in steps if s[2].spec in wave]
        if not in_wave:
            continue
        blocked = planner.downstream(project, failed_specs)
        runnable = []
        for step in in_wave:
            if step[2].spec in blocked:
                _record(report, journal, Result(step[2].id, False, "skipped: a spec it depends on failed"))
            else:
                runnable.append(step)
        results = _run_rolled(runnable, project, ctx, journal, report, check=not first, shared=shared)
        first = False
        failed_ids = {r.change_id for r in results if not r.ok}
        failed_specs |= {c.spec for _, _, c in runnable if c.id in failed_ids}
    _verify(steps, report, ctx, journal)
    report.seconds = time.monotonic() - started
    return report


def _run_rolled(
    steps: list[Step], project: Project, ctx: Context, journal: Journal, report: ApplyReport, check: bool,
    shared: Shared | None = None,
) -> list[Result]:
    """A wave: specs without a strategy all at once; then each spec with one, batch by batch.

    Batches follow the order of the targets in the plan (the order of the group's hosts). A
    target fails when any of its changes fails; when more than `maxFailures` targets failed, no
    further batch of that spec starts and its remaining changes are skipped. Each failed target is
    journaled (`target-failed`); with `shared`, the failures of the other parts count too, asked
    before each batch.
    """
    plain = [s for s in steps if _strategy(project, s[2].spec) is None]
    results = _run_wave(plain, ctx, journal, report, check) if plain else []
    rolled = sorted({s[2].spec for s in steps} - {s[2].spec for s in plain})
    for spec in rolled:
        strategy = _strategy(project, spec)
        assert strategy is not None
        mine = [s for s in steps if s[2].spec == spec]
        targets = list(dict.fromkeys(s[1].target for s in mine))
        size = strategy.size(len(targets))
        batches = [targets[i:i + size] for i in range(0, len(targets), size)]
        failed: set[str] = set()
        for n, batch in enumerate(batches, 1):
            if shared is not None:
                failed |= shared(spec)
            if len(failed) > strategy.maxFailures:
                why = (f"skipped: the rollout of {spec} stopped after {len(failed)} failed targets "
                       f"(maxFailures {strategy.maxFailures})")
                for s in mine:
                    if s[1].target in batch:
                        skipped = Result(s[2].id, False, why)
                        _record(report, journal, skipped)
                        results.append(skipped)
                continue
            ctx.reporter.report(Note(f"{spec}: batch {n}/{len(batches)}: {', '.join(batch)}"))
            journal.write("batch", spec=spec, number=n, of=len(batches), targets=batch)
            got = _run_wave([s for s in mine if s[1].target in batch], ctx, journal, report, check or n > 1)
            bad = {r.change_id for r in got if not r.ok}
            now = {s[1].target for s in mine if s[2].id in bad}
            for target in sorted(now - failed):
                journal.write("target-failed", spec=spec, target=target)
            failed |= now
            results.extend(got)
    return results


def _strategy(project: Project, spec: str) -> Strategy | None:
    found = project.specs.get(spec)
    return found.body.rollout() if found is not None else None


def _run_wave(steps: list[Step], ctx: Context, journal: Journal, report: ApplyReport, check: bool) -> list[Result]:
    by_target: dict[tuple[int, str], list[Step]] = {}
    for step in steps:
        by_target.setdefault((id(step[0]), step[1].target), []).append(step)

    def one(group: list[Step]) -> list[Result]:
        provider, target = group[0][0], group[0][1].target
        if ctx.halted:
            return [Result(c.id, False, f"not run: {ctx.halted}") for _, _, c in group]
        try:
            if check:
                moved = stale(group, ctx)
                if moved:
                    return [Result(c.id, False, "refused: live state moved since the plan") if c.id in moved
                            else Result(c.id, False, "skipped: another change on this target is stale")
                            for _, _, c in group]
            journal.write("begin", target=target,
                          changes=[{"change": c.id, "action": c.action} for _, _, c in group])
            return list(provider.apply(target, [(i, c) for _, i, c in group], ctx))
        except ReconError as exc:
            return [Result(c.id, False, str(exc)) for _, _, c in group]

    out: list[Result] = []
    with ThreadPoolExecutor(max_workers=max(1, min(ctx.concurrency, len(by_target)))) as pool:
        for results in pool.map(one, list(by_target.values())):
            for r in results:
                _record(report, journal, r)
            out.extend(results)
    return out


class _JournalingReporter:
    """Writes each step's outcome to the journal the moment the provider reports it, so an apply
    killed mid-way leaves a record of every step that finished."""

    def __init__(self, inner: Reporter, journal: Journal) -> None:
        self.inner = inner
        self.journal = journal

    def report(self, event: Event) -> None:
        if isinstance(event, StepDone):
            self.journal.write("step", change=event.change_id, ok=event.ok)
        self.inner.report(event)

    def transfer(self, label: str, total: int) -> AbstractContextManager[Tick | None]:
        return self.inner.transfer(label, total)


def _record(report: ApplyReport, journal: Journal, result: Result) -> None:
    report.results.append(result)
    journal.write("result", change=result.change_id, ok=result.ok, message=result.message,
                  seconds=round(result.seconds, 3), **({"note": result.note} if result.note else {}))


def _verify(steps: Sequence[Step], report: ApplyReport, ctx: Context, journal: Journal) -> None:
    """Re-read what was applied, target by target; a successful change must now plan as no-op.

    A change that still differs is failed ("did not converge"); one whose target cannot be read
    again stays successful (the target reported it done) but is marked unverified.
    """
    ok_ids = {r.change_id for r in report.results if r.ok}
    by_target: dict[str, list[tuple[Provider, Instance]]] = {}
    for p, i, c in steps:
        if c.id in ok_ids:
            by_target.setdefault(i.target, []).append((p, i))

    after = {r.change_id: r.after[0] for r in report.results if r.ok and r.after is not None}

    def one(done: list[tuple[Provider, Instance]]) -> dict[str, tuple[bool, str]]:
        """Change id -> (still counted a success, why) for each change the re-read does not confirm. When the
        provider read the state after its changes in their own round trip, that is the re-read."""
        try:
            if all(i.id in after for _, i in done):
                live = {i.id: after[i.id] for _, i in done}
            else:
                live = planner.read_live(done, replace(ctx, verifying=True))
        except ReconError as exc:
            return {i.id: (True, f"applied; not verified, the re-read failed: {exc}") for _, i in done}
        return {c.id: (False, f"applied, but a re-read still differs: {c.reason}")
                for c in planner.diff_all(done, live) if c.is_change}

    with ThreadPoolExecutor(max_workers=max(1, min(ctx.concurrency, len(by_target) or 1))) as pool:
        for problems in pool.map(one, list(by_target.values())):
            for k, r in enumerate(report.results):
                if r.change_id not in problems:
                    continue
                ok, msg = problems[r.change_id]
                report.results[k] = Result(r.change_id, ok, msg, r.seconds, r.note)
                journal.write("unverified" if ok else "unconverged", change=r.change_id, reason=msg)
