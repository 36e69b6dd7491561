"""The Kubernetes provider: a Model is up to four objects (ConfigMap, Secret, Deployment, Service) in
one namespace, the target; each is one resource, applied server-side with field manager `recon`.

- read: one LIST per kind and namespace, by recon's label, for every Model at once. An object whose
  live fields already hold every value recon applies (and nothing recon applied before and dropped)
  is unchanged, with no further call. Any other object gets one server-side dry run of the apply
  (dryRun=All); its answer against the live object, restricted to the fields recon manages, is the
  diff, so defaulted and server-set fields never show. A conflict with another field manager is
  read from the dry run's 409 and shown in the plan with who owns the field.
- apply: server-side apply, forced only where the plan said a field changes owner; a Deployment is
  then watched until its rollout is done (observedGeneration, updated and available replicas), and
  with `rollback: true` a rollout that does not finish in time has its previous template restored.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from providers.context import Context, Reading, StepDone
from providers.contract import Action, Change, FieldChange, Instance, Live, Output, Provider, Result, fingerprint
from providers.kube import quantity
from providers.kube.client import ACTIONS, KINDS, ApiFailure, Where, cluster, server_of, session
from providers.kube.manifests import (
    COMMIT,
    MODEL,
    SELECTOR,
    STACK,
    STACK_NAME,
    Obj,
    build,
    flatten,
    mask,
    owned_paths,
    root,
)
from providers.kube.rollout import wait_rollout
from specs.errors import TransportError
from specs.model import Kubernetes, ModelSpec
from specs.project import Project, Spec

IGNORED = (f"metadata.annotations.{COMMIT}",)
DELETING = "being deleted"  # a FieldChange path: the object is made again once it is gone (apply waits)
OWNER = "owner of "  # a FieldChange path prefix: the field changes manager (the apply is forced)


UNREAD = "(not read)"  # the live value of an object recon did not make


@dataclass(frozen=True)
class KubeObject:
    obj: Obj
    where: Where
    settings: Kubernetes


@dataclass(frozen=True)
class Orphan:
    kind: str
    name: str
    namespace: str
    model: str
    where: Where
    prune: bool
    legacy: bool = False  # no stack recorded on it (an earlier recon): shown, never pruned


Item = Instance[KubeObject | Orphan]
ObjectState = dict[str, Any]  # the live object on the fields recon manages, its owners, what a dry run changes


def target_of(where: Where, namespace: str) -> str:
    return f"k8s{':' + where.context if where.context else ''}/{namespace}"


class KubeProvider:
    kinds: ClassVar[tuple[str, ...]] = ("Model",)

    def __init__(self) -> None:
        self.wheres: dict[str, Where] = {}  # target -> cluster, as the specs expanded in this run name it

    def _locate(self, spec: Spec) -> tuple[Where, str]:
        """The cluster and the target (its namespace) of a Model, remembered for the orphans of this run."""
        body = spec.body
        assert isinstance(body, ModelSpec)
        k8s, config = body.k8s, body.kubeconfig_path(spec.doc)
        where = Where(str(config.resolve()) if config is not None else None, k8s.context)
        target = target_of(where, k8s.namespace)
        self.wheres[target] = where
        return where, target

    def expand(self, spec: Spec, project: Project) -> list[Item]:
        body = spec.body
        assert isinstance(body, ModelSpec)
        k8s = body.k8s
        base = Path(spec.doc.file).parent
        where, target = self._locate(spec)
        out: list[Item] = []
        for obj in build(spec.name, body, spec.labels, base, stack=project.stack):
            digest = fingerprint([obj.shown, k8s.model_dump()])
            out.append(Instance(f"{spec.address}/{obj.resource}", target, spec.address, obj.resource,
                                KubeObject(obj, where, k8s), digest))
        return out

    def lock_key(self, inst: Item) -> str:
        """Applies to one namespace of one cluster take turns, however the specs name the cluster (kubeconfig,
        context): keyed by its API server's URL."""
        namespace = inst.target.rsplit("/", 1)[1]
        return f"k8s/{server_of(inst.desired.where)}/{namespace}"

    def orphans(self, specs: Sequence[Spec], ctx: Context, prune: bool) -> list[Item]:
        declared: dict[str, set[str]] = {}
        for spec in specs:
            body = spec.body
            if isinstance(body, ModelSpec) and body.runtime == "kubernetes":
                declared.setdefault(self._locate(spec)[1], set()).add(spec.name)
        out = []
        ours = ctx.stack.id if ctx.stack else None
        for target, names in sorted(declared.items()):
            where = self.wheres[target]
            ns = target.rsplit("/", 1)[1]
            for kind in KINDS:
                for item in _listed(ctx, where, ns, kind):
                    labels = item["metadata"].get("labels", {})
                    model, stack = labels.get(MODEL, ""), labels.get(STACK)
                    if model and model not in names and (stack is None or ours is None or stack == ours):
                        # no stack recorded (an earlier recon): shown, never pruned; another stack's: not ours
                        out.append(_orphan(target, Orphan(kind, item["metadata"]["name"], ns, model, where,
                                                          prune and (stack is not None or ours is None),
                                                          legacy=stack is None)))
        return out

    def orphan(self, change: Change) -> Item:
        model = change.spec.split("/", 1)[1]
        kind = next(k for k in KINDS if change.address.endswith("/" + k.lower()))
        name = f"{model}-env" if kind == "Secret" else model
        ns = change.target.rsplit("/", 1)[1]
        where = self.wheres.get(change.target) or Where(None, change.target.partition(":")[2].rsplit("/", 1)[0] or None)
        return _orphan(change.target, Orphan(kind, name, ns, model, where, prune=True))

    def read(self, instances: Sequence[Item], ctx: Context) -> dict[str, ObjectState]:
        out: dict[str, ObjectState] = {}
        todo: list[tuple[Instance, dict[str, Any]]] = []
        for inst in instances:
            if isinstance(inst.desired, Orphan):
                o = inst.desired
                found = [i for i in _listed(ctx, o.where, o.namespace, o.kind) if i["metadata"]["name"] == o.name]
                held = _finalizers(found[0]) if found else None
                out[inst.id] = {"exists": bool(found), **({"terminating": held} if held is not None else {})}
                continue
            d: KubeObject = inst.desired
            ctx.reporter.report(Reading(inst.target, inst.address))
            live = next((i for i in _listed(ctx, d.where, d.obj.namespace, d.obj.kind)
                         if i["metadata"]["name"] == d.obj.name), None)
            _same_stack(inst, live, ctx)
            state = _state(d, live, cluster(ctx, d.where).schema())
            out[inst.id] = state
            if not state["same"] and "terminating" not in state:  # (one being deleted is made anew: no dry run)
                todo.append((inst, state))
        session(ctx).lists.clear()  # a later read (before and after apply) lists again
        force = ctx.force_conflicts
        if todo and not ctx.fingerprint_only:  # the fingerprint is of the live object alone
            with ThreadPoolExecutor(max(1, min(16, ctx.concurrency, len(todo)))) as pool:
                for inst, dry in zip([i for i, _ in todo], pool.map(lambda t: _dry_run(ctx, t[0], t[1], force), todo),
                                     strict=True):
                    out[inst.id].update(dry)
        return out

    def diff(self, instances: Sequence[Item], live: Mapping[str, ObjectState]) -> list[Change]:
        return [_orphan_diff(i, live.get(i.id)) if isinstance(i.desired, Orphan) else _diff(i, live[i.id])
                for i in instances]

    def apply(self, target: str, steps: Sequence[tuple[Item, Change]], ctx: Context) -> Iterator[Result]:
        unapplied: dict[str, str] = {}  # Model -> its ConfigMap or Secret that failed
        for inst, change in steps:
            started = time.monotonic()
            kind = inst.desired.obj.kind if isinstance(inst.desired, KubeObject) else ""
            if kind == "Deployment" and inst.spec in unapplied:  # its pods would read what is there instead
                ctx.reporter.report(StepDone(target, change.id, False))
                yield Result(change.id, False, f"not applied: its {unapplied[inst.spec]} was not applied, and its "
                             "pods would read the values there instead", 0.0)
                continue
            try:
                note = _apply_one(inst, change, ctx)
            except ApiFailure as exc:
                if kind in ("ConfigMap", "Secret"):
                    unapplied[inst.spec] = kind
                ctx.reporter.report(StepDone(target, change.id, False))
                yield Result(change.id, False, _failure(exc), time.monotonic() - started)
                continue
            except _RolloutFailed as exc:
                ctx.reporter.report(StepDone(target, change.id, False))
                yield Result(change.id, False, str(exc), time.monotonic() - started)
                continue
            ctx.reporter.report(StepDone(target, change.id, True))
            yield Result(change.id, True, seconds=time.monotonic() - started, note=note)

    def actions(self, inst: Item) -> tuple[str, ...]:
        d = inst.desired
        return ("restart", "scale", "logs", "health") if isinstance(d, KubeObject) and d.obj.kind == "Deployment" \
            else ()

    def act(self, action: str, target: str, instances: Sequence[Item], params: Any, ctx: Context,
            emit: Callable[[Output], None]) -> Result:
        from providers.kube.actions import ActionFailed, act

        inst = instances[0]
        started = time.monotonic()
        try:
            note = act(ctx, action, inst.desired, params, emit)
        except (ApiFailure, ActionFailed) as exc:
            why = _failure(exc) if isinstance(exc, ApiFailure) else str(exc)
            return Result(inst.id, False, why, time.monotonic() - started)
        return Result(inst.id, True, seconds=time.monotonic() - started, note=note)


_: type[Provider[KubeObject | Orphan, ObjectState]] = KubeProvider  # the contract, typed (mypy checks it)


class _RolloutFailed(Exception):
    pass


def _same_stack(inst: Item, live: dict[str, Any] | None, ctx: Context) -> None:
    """An object of this Model that another stack made is refused: two projects cannot both manage it."""
    meta = (live or {}).get("metadata", {})
    theirs = (meta.get("labels") or {}).get(STACK)
    if theirs is not None and ctx.stack is not None and theirs != ctx.stack.id:
        other = (meta.get("annotations") or {}).get(STACK_NAME) or theirs
        raise TransportError(f"{inst.spec}: its {live.get('kind', 'object') if live else 'object'} "
                             f"{meta.get('namespace')}/{meta.get('name')} "
                             f"was made from another project ({other}): two projects cannot both manage one Model "
                             "in a namespace; rename the Model in one of them")


def _orphan(target: str, o: Orphan) -> Instance:
    return Instance(f"Model/{o.model}/{o.kind.lower()}", target, f"Model/{o.model}", "orphan", o,
                    "prune" if o.prune else "keep")


def _listed(ctx: Context, where: Where, namespace: str, kind: str) -> list[dict[str, Any]]:
    """One LIST per kind and namespace for a read (orphans, which come first in a plan, and read share it)."""
    key = f"{where.key}/list/{namespace}/{kind}"
    lists = session(ctx).lists
    found = lists.get(key)
    if found is None:
        conn = cluster(ctx, where)
        try:
            found = lists[key] = _Listed(conn.list(kind, namespace, SELECTOR))
        except ApiFailure as exc:
            raise TransportError(f"{conn.server}: cannot list the {kind}s of namespace {namespace} ({exc.code} "
                                 f"{exc.reason}): {exc.message or 'no message'}; check the kubeconfig's server "
                                 "and that its user may list them") from None
    return found.items


@dataclass
class _Listed:
    items: list[dict[str, Any]]

    def close(self) -> None:
        return None


def _recon_owned(live: dict[str, Any]) -> tuple[set[str], dict[str, list[str]]]:
    """The leaves recon applied last time, and every leaf's managers."""
    mine: set[str] = set()
    owners: dict[str, list[str]] = {}
    for entry in live["metadata"].get("managedFields") or []:
        paths = owned_paths(entry.get("fieldsV1") or {})
        if entry.get("manager") == "recon" and entry.get("operation") == "Apply":
            mine |= paths
        for p in paths:
            owners.setdefault(p, []).append(entry.get("manager", "?"))
    return mine, owners


def _state(d: KubeObject, live: dict[str, Any] | None, schema: str) -> dict[str, Any]:
    """What the plan needs of a live object, secrets masked: the values at the fields recon manages, as the
    cluster's Kubernetes version merges them (`schema`)."""
    want = d.obj.flat_at(schema)
    if live is None:
        return {"exists": False, "same": False, "live": {}, "owners": {}, "schema": schema}
    held = _finalizers(live)
    if held is not None:  # being deleted: what it holds does not count, it is made again once gone
        return {"exists": True, "same": False, "live": {}, "owners": {}, "terminating": held, "schema": schema}
    have = flatten(live, root(live, schema))
    mine, owners = _recon_owned(live)
    relevant = sorted((set(want) | mine) - set(IGNORED))
    same = all(quantity.same(p, have.get(p, KeyError), want[p]) for p in want if p not in IGNORED) and not (
        mine - set(want) - set(IGNORED))
    return {"exists": True, "same": same, "live": mask(d.obj.kind, {p: have.get(p) for p in relevant}),
            "owners": {p: owners[p] for p in relevant if p in owners}, "schema": schema}


def _finalizers(live: dict[str, Any]) -> list[str] | None:
    """What an object being deleted waits for (its finalizers), or None when it is not being deleted."""
    meta = live.get("metadata") or {}
    return list(meta.get("finalizers") or []) if meta.get("deletionTimestamp") else None


def _waiting(finalizers: list[str]) -> str:
    return f" (waiting for its finalizers: {', '.join(finalizers)})" if finalizers else ""


def _dry_run(ctx: Context, inst: Instance, state: dict[str, Any], force: bool) -> dict[str, Any]:
    d: KubeObject = inst.desired
    force = force or d.settings.forceConflicts
    if force and not state["exists"]:
        # not among recon's objects: unforced first, to learn whether another hand holds the name and its fields
        # (a forced dry run takes them without a word); then as the apply will make it, taking them
        probe = _dry_run_once(ctx, inst, state, False)
        if not (probe.get("conflicts") or probe.get("others")):
            return probe
        return {**_dry_run_once(ctx, inst, state, True), "taken": probe.get("conflicts") or [],
                "others": probe.get("others") or sorted({m for m, _ in probe.get("conflicts") or []})}
    return _dry_run_once(ctx, inst, state, force)


def _dry_run_once(ctx: Context, inst: Instance, state: dict[str, Any], force: bool) -> dict[str, Any]:
    d: KubeObject = inst.desired
    conn = cluster(ctx, d.where)
    try:
        result = conn.apply(d.obj.kind, d.obj.config, force=force, dry_run=True)
    except ApiFailure as exc:
        if exc.code == 409 and exc.causes:
            conflicts = [(_manager(c.get("message", "")), c.get("field", "")) for c in exc.causes]
            if all(m == ACTIONS for m, _ in conflicts):  # recon's own `recon do` (a scale): taken back, no conflict
                return _dry_run_once(ctx, inst, state, True)
            return {"conflicts": conflicts, "dry": None}
        if exc.code == 422 and _immutable(exc):
            return {"immutable": _immutable(exc), "dry": None, "conflicts": []}
        if exc.code == 404 and "namespaces" in exc.message:
            raise TransportError(f"{inst.id}: the namespace {d.obj.namespace} does not exist on {conn.server}; "
                                 f"create it (kubectl create namespace {d.obj.namespace}) or change "
                                 "kubernetes.namespace") from None
        raise TransportError(f"{inst.id}: the API server refuses the {d.obj.kind}: {exc.message}") from None
    dry = flatten(result, root(result, state.get("schema")))
    relevant = set(state["live"]) | set(d.obj.flat_at(state.get("schema")))
    # not in the list of recon's objects, yet the server merged the apply into one: another hand made it
    others = [] if state["exists"] else sorted({str(e.get("manager", "?")) for e in (result.get("metadata") or {})
                                                .get("managedFields") or []} - {"recon", ACTIONS})
    return {"dry": mask(d.obj.kind, {p: dry.get(p) for p in relevant}),
            "conflicts": [], "forced": force, **({"others": others} if others else {})}


def _immutable(exc: ApiFailure) -> list[str]:
    """The fields a 422 says cannot change once set (a Deployment's selector, a Service's clusterIP)."""
    return [str(c.get("field", "")) for c in exc.causes
            if "immutable" in c.get("message", "") or "may not change once set" in c.get("message", "")]


def _manager(message: str) -> str:
    """'conflict with "kubectl" using apps/v1' -> kubectl"""
    parts = message.split('"')
    return parts[1] if len(parts) > 2 else message


def _diff(inst: Instance, state: Live) -> Change:
    d: KubeObject = inst.desired
    kind = d.obj.kind
    shown = d.obj.shown_at(state.get("schema"))
    fields: list[FieldChange] = []
    risks: tuple[str, ...] = ()
    action: Action
    if not state["exists"] and (state.get("conflicts") or state.get("others")):
        # made by another hand (kubectl, a chart) under this name: the apply meets it, so the plan says so; its
        # live values were not read (nor are they shown: not recon's to print in a pull request's plan)
        action, risks = "update", ("conflict",)
        fields = [FieldChange(p, UNREAD, v) for p, v in sorted(shown.items())]
        fields += [FieldChange(OWNER + f, m, "recon") for m, f in state.get("taken") or []]  # (the apply forces them)
        owners = ", ".join(f"{m} owns {f}" for m, f in state.get("conflicts") or state.get("taken") or [])
        reason = (f"a {kind} {d.obj.name} that recon did not make is in {d.obj.namespace} already: " + (
            f"{owners}; apply fails unless recon takes the fields: plan and apply with --force-conflicts, or set "
            "kubernetes.forceConflicts: true" if state.get("conflicts") else
            f"{owners}; recon takes them (--force-conflicts)" if state.get("taken") else
            f"its fields are {', '.join(state['others'])}'s; apply takes over the ones recon sets"))
    elif not state["exists"] or "terminating" in state:
        action = "create"
        reason = (f"the {kind} {d.obj.name} is being deleted{_waiting(state['terminating'])}: apply waits until it "
                  "is gone, then creates it" if "terminating" in state else
                  f"no {kind} {d.obj.name} in {d.obj.namespace} yet")
        fields = [FieldChange(p, None, v) for p, v in sorted(shown.items())]
        if "terminating" in state:
            fields.insert(0, FieldChange(DELETING, state["terminating"] or "(no finalizers)", None))
    elif state["same"]:
        action, reason = "noop", f"the {kind} holds every field recon applies"
    elif "dry" not in state:  # read for its fingerprint only (the stale check before apply): no dry run
        action, reason, fields = "update", "differs (not dry-run)", _as_applied(d, state)
    elif state.get("immutable"):
        fields = _as_applied(d, state)
        action = "replace"  # (risky as every replace is: the Policy flags it)
        reason = (f"{', '.join(state['immutable'])} cannot change once set: apply deletes the {kind} and creates it "
                  "again" + (" (its pods are replaced at once, not rolled)" if kind == "Deployment" else ""))
    elif state["conflicts"]:
        fields = _as_applied(d, state)
        owners = ", ".join(f"{m} owns {f}" for m, f in state["conflicts"])
        action, risks = "update", ("conflict",)
        reason = (f"conflict: {owners}; apply fails unless recon takes the field: plan and apply with "
                  "--force-conflicts, or set kubernetes.forceConflicts: true"
                  + (", or kubernetes.manageReplicas: false to leave replicas to it"
                     if any(f == ".spec.replicas" for _, f in state["conflicts"]) else ""))
    else:
        have, dry = state["live"], state["dry"]
        paths = sorted((set(have) | set(shown)) - set(IGNORED))
        fields = [FieldChange(p, have.get(p), dry.get(p)) for p in paths if have.get(p) != dry.get(p)]
        for p, managers in sorted(state["owners"].items()):
            others = [m for m in managers if m != "recon"]
            if state.get("forced") and others and have.get(p) != shown.get(p, have.get(p)):
                fields.append(FieldChange(OWNER + p, ",".join(others), "recon"))
        action = "update" if fields else "noop"
        if kind == "Deployment" and any(f.path.startswith("spec.template.") for f in fields):
            risks = ("restart",)
        reason = _reason(kind, fields) if fields else f"the {kind} holds every field recon applies (as normalised)"
    return Change(inst.address, inst.target, inst.spec, inst.resource, action, reason, tuple(fields),
                  fingerprint({"live": state["live"], "owners": state["owners"]}), inst.desired_digest, risks=risks)


def _as_applied(d: KubeObject, state: Live) -> list[FieldChange]:
    """The fields whose live value is not the one recon applies (when no dry run says what the server makes
    of them)."""
    want, have = d.obj.shown_at(state.get("schema")), state["live"]
    return [FieldChange(p, have.get(p), want.get(p)) for p in sorted(want)
            if not quantity.same(p, have.get(p), want.get(p)) and p not in IGNORED]


def _reason(kind: str, fields: list[FieldChange]) -> str:
    if kind != "Deployment":
        return f"{len(fields)} field{'s' if len(fields) > 1 else ''} of the {kind} to change"
    template = [f for f in fields if f.path.startswith("spec.template.")]
    scale = next((f for f in fields if f.path == "spec.replicas"), None)
    parts = []
    if template:
        parts.append("a rolling update of the pods (new template)")
    if scale is not None:
        parts.append(f"scale {scale.before} → {scale.after}")
    return ", ".join(parts) or f"{len(fields)} fields of the Deployment to change"


def _orphan_diff(inst: Instance, state: Live) -> Change:
    o: Orphan = inst.desired
    exists = bool((state or {}).get("exists"))
    what = f"{o.kind} {o.namespace}/{o.name}"
    if exists and "terminating" in (state or {}):  # deleted already (by a prune, or by someone): nothing to do
        return Change(inst.address, inst.target, inst.spec, inst.resource, "noop",
                      f"no spec declares Model/{o.model}: its {what} is being deleted"
                      f"{_waiting(state['terminating'])}", (), fingerprint(state), inst.desired_digest)
    action: Action = "delete" if exists and o.prune else "noop"
    reason = (f"no spec declares Model/{o.model}: its {what} is deleted" if action == "delete"
              else f"no spec declares Model/{o.model}: its {what}, made by a recon that did not record its project, "
              "is kept (--prune does not delete it); delete it with kubectl, or declare the Model to take it over"
              if exists and o.legacy
              else f"no spec declares Model/{o.model}: its {what} is kept; plan and apply with --prune delete it"
              if exists else f"{what} is gone")
    return Change(inst.address, inst.target, inst.spec, inst.resource, action, reason, (),
                  fingerprint(state), inst.desired_digest)


def _apply_one(inst: Instance, change: Change, ctx: Context) -> str:
    if isinstance(inst.desired, Orphan):
        o = inst.desired
        cluster(ctx, o.where).delete(o.kind, o.namespace, o.name)
        return f"{o.kind} {o.namespace}/{o.name} deleted (no spec declares Model/{o.model})"
    d: KubeObject = inst.desired
    conn = cluster(ctx, d.where)
    force = d.settings.forceConflicts or any(f.path.startswith(OWNER) for f in change.fields)
    config = _with_commit(d.obj.config, ctx.commit)
    if change.action == "replace":  # a field that cannot change once set: deleted, then made anew
        conn.delete(d.obj.kind, d.obj.namespace, d.obj.name)
    if change.action == "replace" or any(f.path == DELETING for f in change.fields):
        _gone(conn, d, d.settings.rolloutTimeout)  # (a deletion waits for finalizers and foreground dependents)
    before = conn.get(d.obj.kind, d.obj.namespace, d.obj.name) if d.obj.kind == "Deployment" else None
    applied = conn.apply(d.obj.kind, config, force=force, dry_run=False)
    if d.obj.kind != "Deployment":
        return ""
    problem, last = wait_rollout(conn, applied, d.settings.rolloutTimeout)
    if problem is None:
        return f"rolled out: {last.get('status', {}).get('availableReplicas', 0)} replicas available"
    if not d.settings.rollback or before is None:
        raise _RolloutFailed(f"the rollout did not finish: {problem}" + (
            "" if before is None else "; set kubernetes.rollback: true to restore the previous template"))
    restored = copy.deepcopy(config)
    restored["spec"]["template"] = before["spec"]["template"]
    conn.apply("Deployment", restored, force=True, dry_run=False)
    raise _RolloutFailed(f"the rollout did not finish: {problem}; rolled back: the previous template is restored")


def _gone(conn: Any, d: KubeObject, timeout: float) -> None:
    """Wait while the object is being deleted (finalizers, foreground deletion), up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        live = conn.get(d.obj.kind, d.obj.namespace, d.obj.name)
        waiting = _finalizers(live) if live is not None else None
        if waiting is None:
            return
        if time.monotonic() >= deadline:
            raise _RolloutFailed(f"the {d.obj.kind} {d.obj.name} is still being deleted after {timeout:g}s"
                                 f"{_waiting(waiting)}; apply again once it is gone")
        time.sleep(0.2)


def _with_commit(config: dict[str, Any], commit: str) -> dict[str, Any]:
    if not commit:
        return config
    out = copy.deepcopy(config)
    out["metadata"].setdefault("annotations", {})[COMMIT] = commit
    return out


def _failure(exc: ApiFailure) -> str:
    if exc.code == 409 and exc.causes:
        owners = ", ".join(f"{_manager(c.get('message', ''))} owns {c.get('field', '')}" for c in exc.causes)
        return (f"conflict: {owners}; re-plan and apply with --force-conflicts (or kubernetes.forceConflicts: "
                "true) to take it")
    return f"the API server refused it ({exc.code} {exc.reason}): {exc.message}"

