"""Operational actions (`recon do`): typed (specs/actions.py), previewed with an id as a plan is, judged by the
same Policy, confirmed as a risky change is, held to its targets' locks as an apply is, and audited.

resolve -> Preview (pure data: steps per spec and target, the Policy's word on each, the id) -> run:
request id done? -> audit start + policy -> decide (gate.decide_on) -> locks (writes) -> provider.act per
target, in order; a write stops at the first failure -> audit end. This module neither prints nor reads a
terminal: `emit` and `ask` are the CLI's.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from providers.contract import Action, Change, FieldChange, Instance, Output, Result, WithActions
from specs.actions import ActionDef, Params
from specs.errors import ExitCode, RefusedError, UsageError

if TYPE_CHECKING:
    from providers.context import Context
    from reconciler.gate import Decision, Items
    from specs.project import Project


@dataclass(frozen=True)
class Step:
    """The action on one target, for the instances of one spec there that take it."""

    target: str
    spec: str
    instances: tuple[Instance[Any], ...] = field(compare=False)
    change: Change  # how the Policy and the audit log see it: its action is the operation's name


@dataclass(frozen=True)
class Preview:
    action: ActionDef
    params: Params
    pattern: str  # the TARGET as given
    steps: tuple[Step, ...]
    provider: WithActions = field(compare=False)
    diverges: tuple[str, ...] = ()  # per spec: how the live state will differ from it afterwards
    policy: dict[str, Any] = field(default_factory=dict)  # the Governing record
    id: str = ""

    @property
    def denied(self) -> list[str]:
        return [s.change.denied for s in self.steps if s.change.denied]

    def confirmations(self, needed: set[str]) -> list[str]:
        """Environments of this risky action that want a confirmation."""
        if not self.action.risky:
            return []
        return sorted({s.change.environment for s in self.steps if s.change.environment in needed})

    def given(self) -> dict[str, Any]:
        return self.params.model_dump(exclude_defaults=True)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action.name, "params": self.params.model_dump(), "target": self.pattern,
                "risky": self.action.risky, "writes": self.action.writes, "diverges": list(self.diverges),
                "steps": [{"id": s.change.id, "spec": s.spec, "target": s.target, "environment": s.change.environment,
                           "risks": list(s.change.risks), "denied": s.change.denied} for s in self.steps]}


def resolve(project: Project, items: Items, action: ActionDef, pattern: str, params: Params) -> Preview:
    """What `recon do ACTION TARGET` would do, and what the Policy says of it; UsageError when TARGET names nothing
    the action acts on."""
    from reconciler import planner, policy

    matched = [(p, i) for p, i in items if planner.matches([pattern], i)]
    if not matched and "/" not in pattern:
        pattern = f"Model/{pattern}"  # a bare name is a Model's
        matched = [(p, i) for p, i in items if planner.matches([pattern], i)]
    if not matched:
        raise UsageError(f"{pattern} matches nothing these specs declare; {planner.closest(pattern, items)}")
    takes = [(p, i) for p, i in matched if isinstance(p, WithActions) and action.name in p.actions(i)]
    if not takes:
        what = sorted({i.resource for _, i in matched})
        example = _example(items, action)
        raise UsageError(f"{action.name} acts on {' or '.join(_ON[o] for o in action.on)}; {pattern} is "
                         f"{' and '.join(_a(w) for w in what)}" + (f" (e.g. {example})" if example else ""))
    providers = {id(p) for p, _ in takes}
    if len(providers) > 1:
        raise UsageError(f"{pattern} matches resources of more than one kind; name one kind's (e.g. Model/NAME)")
    provider = cast(WithActions, takes[0][0])
    if action.refused is not None:
        for spec in dict.fromkeys(i.spec for _, i in takes):
            kind = project.specs[spec].kind
            why = action.refused([(s.body, s.doc) for s in project.of_kind(kind)], project.specs[spec].name, params)
            if why:
                raise UsageError(f"{action.name} {spec}: {why}")
    grouped: dict[tuple[str, str], list[Instance[Any]]] = {}
    for _, inst in takes:
        grouped.setdefault((inst.spec, inst.target), []).append(inst)
    changes = []
    for (spec, target), insts in grouped.items():
        fields = _fields(action, params, project, spec)
        address = insts[0].address if len(insts) == 1 else spec
        changes.append(Change(address, target, spec, insts[0].resource, cast(Action, action.name),
                              f"recon do {action.name}", fields, desired=""))
    gov = policy.governing(project)
    judged = policy.annotate_with(gov, changes, dict(project.specs))
    if action.risky:  # restart is risky by its action already; scale says so itself
        judged = [c if action.name in c.risks else _with_risk(c, action.name) for c in judged]
    steps = tuple(Step(c.target, c.spec, tuple(grouped[c.spec, c.target]), c) for c in judged)
    diverges = tuple(dict.fromkeys(
        f"{spec}: {text}" for spec in dict.fromkeys(s.spec for s in steps)
        if action.diverges is not None and (text := action.diverges(project.specs[spec].body, params))))
    ident = hashlib.sha256(json.dumps({
        "action": action.name, "params": params.model_dump(), "steps": [s.change.id for s in steps],
        "specs": sorted({project.specs[s.spec].doc.digest for s in steps}), "policy": gov.digest,
    }, sort_keys=True).encode()).hexdigest()[:12]
    return Preview(action, params, pattern, steps, provider, diverges, gov.record(), ident)


_ON = {"model": "a Model", "service": "a service (a HostState's service resource)"}


def _a(resource: str) -> str:
    return f"an {resource}" if resource[:1] in "aeiou" else f"a {resource}"


def _example(items: Items, action: ActionDef) -> str:
    for p, i in items:
        if isinstance(p, WithActions) and action.name in p.actions(i):
            return i.spec if i.spec.startswith("Model/") else i.address
    return ""


def _with_risk(c: Change, risk: str) -> Change:
    import dataclasses

    return dataclasses.replace(c, risks=(risk, *c.risks))


def _fields(action: ActionDef, params: Params, project: Project, spec: str) -> tuple[FieldChange, ...]:
    """The parameters as fields of the change, for the Policy's field conditions (scale: replicas from the spec's
    count to the new one, so `field: {path: replicas, above: 10}` holds a scale to 20)."""
    out = []
    for name, value in params.model_dump().items():
        before = getattr(project.specs[spec].body, name, None) if name == "replicas" else None
        out.append(FieldChange(name, before, value))
    return tuple(out)


@dataclass
class Outcome:
    code: ExitCode
    results: list[Result] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # steps not started after a failure
    nothing: str = ""  # why nothing was done (a request id already done)
    seconds: float = 0.0


def run(preview: Preview, project: Project, ctx: Context, state_dir: Path, *, confirm: str | None,
        request_id: str | None, yes: bool, terminal: bool, ask: Callable[[Decision], bool],
        emit: Callable[[Step, Output], None], items: Items, lock_timeout: float,
        on_wait: Callable[[str, str], None]) -> Outcome:
    """Gate the action, then carry it out, target after target; RefusedError (exit 3) when it may not go ahead."""
    from reconciler import gate
    from reconciler.audit import open_audit
    from reconciler.policy import governing

    audit = open_audit(state_dir)
    try:
        if request_id:
            done = audit.finished(request_id=request_id, command="do")
            if done is not None:
                return Outcome(ExitCode.OK, nothing=(
                    f"request {request_id} was already done at {done['at']} by {done.get('user', '?')}@"
                    f"{done.get('host', '?')} (audit run {done['run']}): {done.get('action', '?')} "
                    f"{done.get('target', '?')}. Nothing to do."))
        a = preview.action
        run_ = audit.start("do", preview.id, request_id or "", action=a.name, params=preview.given(),
                           target=preview.pattern, targets=[s.change.id for s in preview.steps], risky=a.risky)
        gate.record_policy(run_, preview.policy, [s.change for s in preview.steps])
        needed = {e.name for e in governing(project).environments if e.confirm}
        decision = gate.decide_on(preview.id, preview.denied, preview.confirmations(needed), saved=False,
                                  auto_approve=yes or not a.risky, confirm=confirm, terminal=terminal, what="action")
        refusal = decision.reason if decision.verdict == "refuse" else (
            "" if decision.verdict == "go" or ask(decision) else
            f"{a.name} cancelled: the answer was not '{decision.answer}'")
        if refusal:
            run_.write("refused", ok=False, message=refusal)
            raise RefusedError(refusal)
        started = time.monotonic()
        out = Outcome(ExitCode.OK)
        try:
            if a.writes:
                with gate.locked(project, [preview.pattern], [], state_dir, lock_timeout, on_wait, preview.id, items,
                                 ctx.halt, only={s.target for s in preview.steps}):
                    _steps(preview, ctx, run_, out, emit)
            else:
                _steps(preview, ctx, run_, out, emit)
        except BaseException as exc:
            run_.write("end", ok=False, message=f"{type(exc).__name__}: {exc}", seconds=round(
                time.monotonic() - started, 3))
            raise
        out.seconds = time.monotonic() - started
        failed = [r for r in out.results if not r.ok]
        run_.write("end", ok=not failed and not out.skipped, seconds=round(out.seconds, 3), done=len(out.results)
                   - len(failed), failed=len(failed), skipped=len(out.skipped))
        out.code = ExitCode.ERROR if failed or out.skipped else ExitCode.OK
        return out
    finally:
        audit.close()


def _steps(preview: Preview, ctx: Context, run_: Any, out: Outcome, emit: Callable[[Step, Output], None]) -> None:
    if getattr(preview.params, "follow", False) and len(preview.steps) > 1:
        _together(preview, ctx, run_, out, emit)
        return
    for n, step in enumerate(preview.steps):
        result = _one(preview, step, ctx, emit)
        out.results.append(result)
        run_.write("result", change=step.change.id, ok=result.ok, message=result.message, note=result.note,
                   seconds=round(result.seconds, 3))
        if not result.ok and preview.action.writes:  # a restart that broke one target goes no further
            out.skipped = [s.change.id for s in preview.steps[n + 1:]]
            for rest in out.skipped:
                run_.write("result", change=rest, ok=False, message="not started: an earlier target failed")
            return


def _one(preview: Preview, step: Step, ctx: Context, emit: Callable[[Step, Output], None]) -> Result:
    got = preview.provider.act(preview.action.name, step.target, step.instances, preview.params, ctx,
                               lambda line: emit(step, line))
    return Result(step.change.id, got.ok, got.message, got.seconds, got.note)


def _together(preview: Preview, ctx: Context, run_: Any, out: Outcome, emit: Callable[[Step, Output], None]) -> None:
    """Every target at once (logs --follow of several hosts, as `kubectl logs -f -l` follows several pods): lines
    as they come, one at a time."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()

    def said(step: Step, line: Output) -> None:
        with lock:
            emit(step, line)

    with ThreadPoolExecutor(len(preview.steps)) as pool:
        for result in pool.map(lambda step: _one(preview, step, ctx, said), preview.steps):
            out.results.append(result)
            run_.write("result", change=result.change_id, ok=result.ok, message=result.message, note=result.note,
                       seconds=round(result.seconds, 3))


def catalogue() -> list[dict[str, Any]]:
    """Every action and its parameters (`recon do --list`)."""
    from specs.actions import ACTIONS

    out = []
    for a in ACTIONS.values():
        params = []
        for name, f in a.params.model_fields.items():
            kind = getattr(f.annotation, "__name__", str(f.annotation))
            params.append({"name": name, "type": kind.replace("str | None", "duration"), "required": f.is_required(),
                           "default": None if f.is_required() else f.default, "description": f.description or ""})
        out.append({"name": a.name, "summary": a.summary, "on": list(a.on), "risky": a.risky, "writes": a.writes,
                    "params": params})
    return out
