"""The objects of the test API server: defaulting, validation, writes with resourceVersion checks,
field ownership (managedFields) with server-side apply conflicts, and a small Deployment controller.

What it does not do (tests/peers/README.md lists it too): no ReplicaSets, and Pods only as a
Deployment's status implies them (`Store.pods`: read-only, named and labelled as a ReplicaSet's
would be, ready as its status counts; their log is what a model server prints when it starts: its
image, its environment with the Secret and ConfigMap values its envFrom names, its port); a
Deployment's status is set by `Store.tick` from its template (images on a host under `.invalid`
never become available, like an image that cannot be pulled); no watch; no authentication or RBAC; no admission
webhooks; validation and defaulting only of the fields listed here (Secret stringData is folded into
data; apply bodies must name the URL's apiVersion and kind; DELETE honours DeleteOptions' dryRun and
preconditions; finalizers and foreground deletion hold an object with a deletionTimestamp, and a namespace
turns Terminating until its contents are gone; a Deployment's selector and a Service's clusterIP cannot
change; resource quantities are validated and stored in canonical form; an apply that drops a keyed element
removes it, and a field an update removes leaves every manager's set); strategic merge without the
`$patch`/`$setElementOrder` directives; ownership at leaf granularity.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from tests.peers import kube_fields as kf

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class Kind:
    group_version: str  # v1, apps/v1
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()


KINDS = [
    Kind("v1", "namespaces", "Namespace", namespaced=False),
    Kind("v1", "configmaps", "ConfigMap"),
    Kind("v1", "secrets", "Secret"),
    Kind("v1", "services", "Service", subresources=("status",)),
    Kind("apps/v1", "deployments", "Deployment", subresources=("scale", "status")),
    Kind("apps/v1", "replicasets", "ReplicaSet", subresources=("status",)),  # made by the Deployment controller
    Kind("batch/v1", "jobs", "Job", subresources=("status",)),  # stored and validated; no controller runs them
    Kind("batch/v1", "cronjobs", "CronJob", subresources=("status",)),
    Kind("v1", "pods", "Pod", subresources=("log",)),  # read-only: what Deployments' status implies (Store.pods)
]
GROUP_VERSIONS = list(dict.fromkeys(k.group_version for k in KINDS))
BY_PLURAL = {(k.group_version, k.plural): k for k in KINDS}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None,
                 kind: str = "", name: str = "") -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes
        self.kind, self.name = kind, name

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {"name": self.name, "kind": self.kind.lower() + "s" if self.kind else ""}
        if self.causes:
            details["causes"] = self.causes
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": details, "code": self.code}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Store:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, ns, name)
    version: int = 1000
    lock: threading.RLock = field(default_factory=threading.RLock)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (verb, path with query) of every request
    settle: float = 0.2  # seconds a rollout takes in the controller

    def __post_init__(self) -> None:
        for ns in ("default", "kube-system"):
            self.create(BY_PLURAL["v1", "namespaces"], "", {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": ns}}, "kube-apiserver")

    # reads

    def get(self, kind: Kind, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((kind.plural, ns, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found', kind=kind.kind, name=name)
        return copy.deepcopy(obj)

    def list(self, kind: Kind, ns: str | None, selector: str, fields: str = "") -> dict[str, Any]:
        match = parse_selector(selector)
        by_field = field_selector(kind, fields)
        items = [copy.deepcopy(o) for (plural, o_ns, _), o in sorted(self.objects.items())
                 if plural == kind.plural and (ns is None or o_ns == ns)
                 and match(o["metadata"].get("labels") or {}) and by_field(o)]
        return {"kind": kind.kind + "List", "apiVersion": kind.group_version,
                "metadata": {"resourceVersion": str(self.version)}, "items": items}

    def pods(self, ns: str | None, selector: str) -> list[dict[str, Any]]:
        """The Pods each Deployment's status implies: status.replicas of them (spec.replicas before the first
        status), named <deployment>-<template hash>-<5 characters> as a ReplicaSet names them, the first
        readyReplicas of them Ready. A pod that is not Ready and whose container exits at once (`exit_code`) is
        restarted by the kubelet every CRASH_PERIOD seconds since its rollout began (a real kubelet backs off 10 s,
        then doubling): CrashLoopBackOff from its first restart on, its last exit in lastState."""
        match = parse_selector(selector)
        out = []
        with self.lock:
            for (plural, o_ns, name), d in sorted(self.objects.items()):
                if plural != "deployments" or (ns is not None and o_ns != ns):
                    continue
                template = d["spec"]["template"]
                digest = template_hash(template)
                status = d.get("status") or {}
                count = status.get("replicas", d["spec"].get("replicas", 1))
                ready = status.get("readyReplicas", 0)
                for i in range(count):
                    labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": digest[:10]}
                    if not match(labels):
                        continue
                    pod = f"{name}-{digest[:10]}-{hashlib.sha256(f'{digest}{i}'.encode()).hexdigest()[:5]}"
                    ok = "True" if i < ready else "False"
                    since = time.monotonic() - status.get("_progress", time.monotonic())
                    out.append({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": pod, "namespace": o_ns, "labels": labels,
                                     "creationTimestamp": d["metadata"]["creationTimestamp"],
                                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                          "name": f"{name}-{digest[:10]}", "controller": True}]},
                        "spec": copy.deepcopy(template.get("spec", {})),
                        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ok}],
                                   "containerStatuses": [_container_status(c, ok == "True", since)
                                                         for c in template.get("spec", {}).get("containers", [])]},
                    })
        return out

    def log(self, ns: str, pod: str, tail: int | None) -> str:
        """What the pod's first container printed when it started: a model server that logs its settings."""
        found = next((p for p in self.pods(ns, "") if p["metadata"]["name"] == pod), None)
        if found is None:
            raise ApiError(404, "NotFound", f'pods "{pod}" not found', kind="Pod", name=pod)
        c = found["spec"]["containers"][0]
        env = {}
        for e in c.get("env", []):
            ref = e.get("valueFrom") or {}
            if "secretKeyRef" in ref:
                data = self.objects.get(("secrets", ns, ref["secretKeyRef"]["name"]), {}).get("data", {})
                value = base64.b64decode(data.get(ref["secretKeyRef"]["key"], "")).decode(errors="replace")
            elif "configMapKeyRef" in ref:
                data = self.objects.get(("configmaps", ns, ref["configMapKeyRef"]["name"]), {}).get("data", {})
                value = data.get(ref["configMapKeyRef"]["key"], "")
            else:
                value = e.get("value", "")
            env[e["name"]] = value
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                data = self.objects.get(("secrets", ns, source["secretRef"]["name"]), {}).get("data", {})
                env.update({k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()})
            elif "configMapRef" in source:
                env.update(self.objects.get(("configmaps", ns, source["configMapRef"]["name"]), {}).get("data", {}))
        at = found["metadata"]["creationTimestamp"]
        lines = [f"{at} starting {c.get('image', '')} as {pod}", *(f"{at} env {k}={v}" for k, v in sorted(env.items())),
                 *(f"{at} listening on :{p['containerPort']}" for p in c.get("ports", []))]
        return "".join(line + "\n" for line in (lines[-tail:] if tail else [] if tail == 0 else lines))

    # writes: each returns the object as stored (or as it would be, with dry_run)

    def create(self, kind: Kind, ns: str, obj: dict[str, Any], manager: str, dry_run: bool = False,
               apply_fields: set[kf.Path] | None = None) -> dict[str, Any]:
        with self.lock:
            name = (obj.get("metadata") or {}).get("name", "")
            if kind.namespaced and ("namespaces", "", ns) not in self.objects:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', kind="Namespace", name=ns)
            if kind.namespaced and self.objects[("namespaces", "", ns)]["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden", f'{kind.plural} "{name}" is forbidden: unable to create new content '
                               f"in namespace {ns} because it is being terminated", kind=kind.kind, name=name)
            if (kind.plural, ns, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{kind.plural} "{name}" already exists', kind=kind.kind,
                               name=name)
            obj = copy.deepcopy(obj)
            obj.pop("status", None)
            meta = obj.setdefault("metadata", {})
            owned_paths = apply_fields if apply_fields is not None else {p for p, _ in kf.leaves(obj)}
            meta.update({"uid": str(uuid.uuid4()), "creationTimestamp": now()})
            if kind.namespaced:
                meta["namespace"] = ns
            if kind.kind == "Deployment":
                meta["generation"] = 1
            meta["managedFields"] = [_entry(manager, "Apply" if apply_fields is not None else "Update",
                                            kind.group_version, owned_paths)]
            default(kind, obj)
            validate(kind, obj)
            if kind.kind == "Deployment":
                obj["status"] = {}
            if kind.kind == "Namespace":
                obj["status"] = {"phase": "Active"}
            return self._store(kind, ns, name, obj, dry_run)

    def update(self, kind: Kind, ns: str, name: str, new: dict[str, Any], manager: str, dry_run: bool = False,
               subresource: str = "", check_version: bool = True) -> dict[str, Any]:
        """A write that is not an apply (PUT, or a patch already applied to the object): the manager takes
        the fields whose values it changed."""
        with self.lock:
            old = self.get(kind, ns, name)
            sent = (new.get("metadata") or {}).get("resourceVersion")
            if check_version and sent and sent != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.plural} "{name}": the '
                               "object has been modified; please apply your changes to the latest version and "
                               "try again", kind=kind.kind, name=name)
            new = copy.deepcopy(new)
            if subresource == "status":
                new = {**old, "status": new.get("status", {})}
            else:
                new["status"] = old.get("status", {})
            _keep_server_meta(old, new)
            default(kind, new)
            validate(kind, new)
            immutable(kind, old, new)
            changed = _changed(old, new)
            gone = _removed(old, new)
            if subresource != "status" and (changed or gone):
                _take(new, changed, manager, "Update", kind.group_version, subresource, gone)
            return self._store(kind, ns, name, new, dry_run, old)

    def apply(self, kind: Kind, ns: str, name: str, config: dict[str, Any], manager: str, force: bool,
              dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply: merge the configuration, conflicts with other managers' fields, removal of
        the fields this manager stopped applying."""
        with self.lock:
            config = copy.deepcopy(config)
            config.pop("status", None)
            mine = {p for p, _ in kf.leaves(config)}
            if (kind.plural, ns, name) not in self.objects:
                return self.create(kind, ns, config, manager, dry_run, apply_fields=mine)
            old = self.get(kind, ns, name)
            sent = (config.get("metadata") or {}).get("resourceVersion")
            if sent and sent != old["metadata"]["resourceVersion"]:  # an apply may pin the version it read
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.plural} "{name}": the '
                               "object has been modified; please apply your changes to the latest version and "
                               "try again", kind=kind.kind, name=name)
            entries = old["metadata"].get("managedFields") or []
            conflicts = []
            for entry in entries:
                if entry["manager"] == manager and entry["operation"] == "Apply":
                    continue
                theirs = kf.from_fields_v1(entry.get("fieldsV1") or {})
                for path in sorted(mine & theirs):
                    if _value(old, path) != _value(config, path):
                        conflicts.append((entry["manager"], entry.get("apiVersion", ""), path))
            if conflicts and not force:
                causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {v}',
                           "field": kf.dotted(p)} for m, v, p in conflicts]
                listing = "\n".join(f'- {c["message"]}: {c["field"]}' for c in causes)
                raise ApiError(409, "Conflict", f"Apply failed with {len(causes)} conflict"
                               f"{'s' if len(causes) > 1 else ''}: {listing}", causes, kind.kind, name)
            before = next((kf.from_fields_v1(e.get("fieldsV1") or {}) for e in entries
                           if e["manager"] == manager and e["operation"] == "Apply"), set())
            new = kf.merge(old, config)
            others = set().union(*(kf.from_fields_v1(e.get("fieldsV1") or {}) for e in entries
                                   if not (e["manager"] == manager and e["operation"] == "Apply")))
            for path in sorted(before - mine - others, reverse=True):
                kf.delete(new, path)
            _keep_server_meta(old, new)
            default(kind, new)
            validate(kind, new)
            immutable(kind, old, new)
            lost = {p for _, _, p in conflicts}
            for entry in new["metadata"]["managedFields"]:
                if not (entry["manager"] == manager and entry["operation"] == "Apply") and lost:
                    entry["fieldsV1"] = kf.to_fields_v1(kf.from_fields_v1(entry.get("fieldsV1") or {}) - lost)
            _set_entry(new, manager, "Apply", kind.group_version, mine, "")
            return self._store(kind, ns, name, new, dry_run, old)

    def delete(self, kind: Kind, ns: str, name: str, dry_run: bool = False, propagation: str = "") -> dict[str, Any]:
        """Gone at once, unless something must happen first: an object with finalizers (or deleted with
        propagationPolicy Foreground, which adds foregroundDeletion) gets a deletionTimestamp and stays until they
        are removed; a namespace turns Terminating, and the namespace controller (tick) deletes its contents,
        then it. Returns the object, and whether it is gone."""
        with self.lock:
            obj = self.get(kind, ns, name)
            meta = obj["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if kind.kind == "Namespace" or finalizers:
                if dry_run or meta.get("deletionTimestamp"):
                    return obj
                stored = self.objects[(kind.plural, ns, name)]
                stored["metadata"].update({"deletionTimestamp": now(), "deletionGracePeriodSeconds": 0,
                                           **({"finalizers": finalizers} if finalizers else {})})
                if kind.kind == "Namespace":
                    stored.setdefault("status", {})["phase"] = "Terminating"
                stored["metadata"]["_deleting"] = time.monotonic()
                self.version += 1
                stored["metadata"]["resourceVersion"] = str(self.version)
                return copy.deepcopy(stored)
            if not dry_run:
                del self.objects[(kind.plural, ns, name)]
            return obj

    def _finish_deletions(self) -> None:
        """The garbage collector and the namespace controller: foregroundDeletion is removed once `settle` has
        passed (no dependents here), a Terminating namespace's contents go and then it; an object whose
        finalizers are all gone, and that is being deleted, goes."""
        for key, obj in list(self.objects.items()):
            meta = obj["metadata"]
            if key not in self.objects:  # (its namespace went first)
                continue
            if not meta.get("deletionTimestamp") or time.monotonic() - meta.get("_deleting", 0) < self.settle:
                continue
            if "foregroundDeletion" in (meta.get("finalizers") or []):
                meta["finalizers"] = [f for f in meta["finalizers"] if f != "foregroundDeletion"]
            if key[0] == "namespaces":
                inside = [k for k in self.objects if k[1] == key[2]]
                for k in inside:
                    held = self.objects[k]["metadata"]
                    if not held.get("finalizers"):
                        del self.objects[k]
                    elif not held.get("deletionTimestamp"):  # deleted too, and waiting for its finalizers
                        held.update({"deletionTimestamp": now(), "deletionGracePeriodSeconds": 0,
                                     "_deleting": time.monotonic()})
                if any(k[1] == key[2] for k in self.objects):
                    continue  # something inside still has finalizers
            elif meta.get("finalizers"):
                continue
            del self.objects[key]
            self.version += 1

    def _store(self, kind: Kind, ns: str, name: str, obj: dict[str, Any], dry_run: bool,
               old: dict[str, Any] | None = None) -> dict[str, Any]:
        meta = obj["metadata"]
        meta["managedFields"] = [e for e in meta.get("managedFields", []) if e.get("fieldsV1")]
        if old is not None and kind.kind == "Deployment" and old.get("spec") != obj.get("spec"):
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        if old is not None and _same(old, obj):
            return copy.deepcopy(old)  # a write that changes nothing keeps the resourceVersion
        if dry_run:
            meta["resourceVersion"] = (old or {}).get("metadata", {}).get("resourceVersion", "")
            return copy.deepcopy(obj)
        self.version += 1
        meta["resourceVersion"] = str(self.version)
        if kind.kind == "Deployment":
            obj.setdefault("status", {})["_changed"] = time.monotonic()
        self.objects[(kind.plural, ns, name)] = obj
        return _public(obj)

    # the Deployment controller

    def tick(self) -> None:
        """The Deployment controller: each template is a ReplicaSet of the Deployment (named by the template's
        hash, numbered by `deployment.kubernetes.io/revision`; a template seen before takes its old ReplicaSet and
        the next revision, as `kubectl rollout undo` expects). After `settle` seconds all replicas are updated and
        available, unless an image is on a host under .invalid (it cannot be pulled) or a container exits at once
        (`exit_code`): then one new replica is unavailable and the old ones keep serving, as a real rollout that
        is stuck, until the progress deadline passes (Progressing False, ProgressDeadlineExceeded). The garbage
        collector removes ReplicaSets whose Deployment is gone."""
        with self.lock:
            self._finish_deletions()
            uids = {o["metadata"]["uid"] for (plural, _, _), o in self.objects.items() if plural == "deployments"}
            for key, rs in list(self.objects.items()):
                refs = rs["metadata"].get("ownerReferences") or []
                if key[0] == "replicasets" and refs and refs[0].get("uid") not in uids:
                    del self.objects[key]
                    self.version += 1
            for (plural, ns, name), obj in list(self.objects.items()):
                if plural != "deployments" or obj["metadata"].get("deletionTimestamp"):
                    continue
                status = obj.setdefault("status", {})
                if time.monotonic() - status.get("_changed", 0) < self.settle:
                    continue
                want = obj["spec"].get("replicas", 1)
                containers = obj["spec"]["template"]["spec"].get("containers", [])
                stuck = any(unpullable(c.get("image", "")) or exit_code(c) is not None for c in containers)
                gen = obj["metadata"]["generation"]
                was = status.get("availableReplicas", 0) if status.get("observedGeneration") else 0
                current, started = self._replica_set(ns, name, obj, want, stuck, was)
                if started:
                    status["_progress"] = time.monotonic()
                deadline = obj["spec"].get("progressDeadlineSeconds", 600)
                late = stuck and time.monotonic() - status.get("_progress", time.monotonic()) > deadline
                if stuck:
                    progressing = ({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                    "message": f'ReplicaSet "{current}" has timed out progressing.',
                                    "lastUpdateTime": now()} if late else _condition("Progressing", True))
                    new = {"observedGeneration": gen, "replicas": min(was, want) + 1, "updatedReplicas": 1,
                           "readyReplicas": min(was, want), "availableReplicas": min(was, want),
                           "unavailableReplicas": 1, "conditions": [_condition("Available", was >= want),
                                                                    progressing]}
                else:
                    new = {"observedGeneration": gen, "replicas": want, "updatedReplicas": want,
                           "readyReplicas": want, "availableReplicas": want,
                           "conditions": [_condition("Available", True), _condition("Progressing", True)]}
                    new = {k: v for k, v in new.items() if v != 0 or k == "observedGeneration"}
                inner = {k: status[k] for k in ("_changed", "_progress") if k in status}
                reasons = [c.get("reason") for c in status.get("conditions") or []]
                if {k: v for k, v in status.items() if not k.startswith("_") and k != "conditions"} != {
                        k: v for k, v in new.items() if k != "conditions"} or (
                        late and "ProgressDeadlineExceeded" not in reasons):
                    self.version += 1
                    obj["metadata"]["resourceVersion"] = str(self.version)
                    obj["status"] = {**new, **inner}

    def _replica_set(self, ns: str, name: str, d: dict[str, Any], want: int, stuck: bool,
                     was: int) -> tuple[str, bool]:
        """The ReplicaSet of the Deployment's template, made or taken back (then True: a rollout starts), with
        the Deployment's revision annotation, and the replicas of each ReplicaSet as the rollout has them."""
        template = d["spec"]["template"]
        digest = template_hash(template)
        uid = d["metadata"]["uid"]
        owned = {k: rs for k, rs in self.objects.items() if k[0] == "replicasets" and k[1] == ns
                 and ((rs["metadata"].get("ownerReferences") or [{}])[0].get("uid") == uid)}
        top = max((_revision(rs) for rs in owned.values()), default=0)
        rs_name = f"{name}-{digest}"
        current = owned.get(("replicasets", ns, rs_name))
        started = current is None or _revision(current) < top
        cause = (d["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
        if current is None:
            labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": digest}
            selector = copy.deepcopy(d["spec"].get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = digest
            current = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
                "name": rs_name, "namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now(),
                "labels": labels, "annotations": {},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                                     "controller": True, "blockOwnerDeletion": True}]},
                "spec": {"replicas": 0, "selector": selector,
                         "template": {**copy.deepcopy(template), "metadata": {
                             **copy.deepcopy(template.get("metadata") or {}), "labels": labels}}},
                "status": {"replicas": 0}}
            owned[("replicasets", ns, rs_name)] = self.objects[("replicasets", ns, rs_name)] = current
        if started:
            current["metadata"]["annotations"][REVISION] = str(top + 1)
            if cause:
                current["metadata"]["annotations"][CHANGE_CAUSE] = cause
        notes = d["metadata"].setdefault("annotations", {})
        if notes.get(REVISION) != current["metadata"]["annotations"][REVISION]:
            notes[REVISION] = current["metadata"]["annotations"][REVISION]
            self.version += 1
            d["metadata"]["resourceVersion"] = str(self.version)
        for rs in owned.values():
            count = (1 if stuck else want) if rs is current else (min(was, want) if stuck else 0)
            if rs["spec"]["replicas"] != count or rs["status"].get("replicas") != count:
                rs["spec"]["replicas"] = count
                rs["status"] = {"replicas": count, "observedGeneration": 1,
                                **({"readyReplicas": count, "availableReplicas": count}
                                   if count and not (stuck and rs is current) else {})}
                self.version += 1
                rs["metadata"]["resourceVersion"] = str(self.version)
        limit = d["spec"].get("revisionHistoryLimit", 10)
        old = sorted((rs for rs in owned.values() if rs is not current and not rs["spec"]["replicas"]),
                     key=_revision)
        for rs in old[:max(0, len(old) - limit)]:
            del self.objects[("replicasets", ns, rs["metadata"]["name"])]
        return rs_name, started


def _condition(kind: str, ok: bool) -> dict[str, str]:
    reason = {"Available": "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
              "Progressing": "NewReplicaSetAvailable" if ok else "ReplicaSetUpdated"}[kind]
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "lastUpdateTime": now()}


REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"


def _revision(rs: dict[str, Any]) -> int:
    return int(rs["metadata"]["annotations"].get(REVISION, "0"))


def template_hash(template: dict[str, Any]) -> str:
    """A pod template's hash, as its ReplicaSet and pods are labelled (pod-template-hash): of its content, so
    nulls a client writes for empty fields (a Go client's `creationTimestamp: null`) do not count, nor the
    pod-template-hash label `kubectl rollout undo` takes out of a ReplicaSet's template."""
    def content(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: content(x) for k, x in v.items() if x is not None and k != "pod-template-hash"}
        return [content(x) for x in v] if isinstance(v, list) else v

    return hashlib.sha256(json.dumps(content(template), sort_keys=True).encode()).hexdigest()[:10]


CRASH_PERIOD = 0.3  # seconds between two restarts of a container that exits at once


def unpullable(image: str) -> bool:
    """An image on a host under .invalid: that TLD never resolves, so no cluster can pull it."""
    return "/" in image and image.split("/", 1)[0].endswith(".invalid")


def exit_code(container: dict[str, Any]) -> int | None:
    """What a container exits with at once, when its command ends in `exit N` (e.g. sh -c 'echo x; exit 3'):
    the test server runs no processes, so that is how a spec says its process fails; None for any other."""
    words = " ".join(container.get("command") or []).replace(";", " ").split()
    return int(words[-1]) if len(words) >= 2 and words[-2] == "exit" and words[-1].isdigit() else None


def _container_status(c: dict[str, Any], ready: bool, since: float) -> dict[str, Any]:
    """A container's status as the kubelet reports it: running; waiting for an image it cannot pull (a host under
    .invalid); or restarting after exits (`exit_code`), `since` seconds into its rollout."""
    image = c.get("image", "")
    out: dict[str, Any] = {"name": c["name"], "ready": ready, "restartCount": 0, "image": image}
    if not ready and unpullable(image):
        return {**out, "started": False, "state": {"waiting": {"reason": "ImagePullBackOff",
                                                               "message": f'Back-off pulling image "{image}"'}}}
    code = exit_code(c)
    restarts = int(since / CRASH_PERIOD) if not ready and code is not None else 0
    if restarts == 0:
        return {**out, "started": True, "state": {"running": {"startedAt": now()}}}
    exited = {"exitCode": code, "reason": "Error", "startedAt": now(), "finishedAt": now()}
    return {**out, "started": False, "restartCount": restarts, "lastState": {"terminated": exited}, "state": {
        "waiting": {"reason": "CrashLoopBackOff", "message": f"back-off 10s restarting failed container={c['name']}"}}}


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    if isinstance(out.get("status"), dict):
        out["status"].pop("_changed", None)
        out["status"].pop("_progress", None)
    if isinstance(out.get("metadata"), dict):
        out["metadata"].pop("_deleting", None)
    return out


def obj_without_status(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "status"}


def _value(obj: dict[str, Any], path: kf.Path) -> Any:
    try:
        return kf.get(obj, path)
    except KeyError:
        return KeyError


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("resourceVersion", "managedFields", "generation")

    def core(o: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in o.items() if k != "status"},
                "metadata": {k: v for k, v in o["metadata"].items() if k not in strip}}

    owners = [(e["manager"], e["operation"], e.get("fieldsV1")) for e in a["metadata"].get("managedFields", [])]
    owners_b = [(e["manager"], e["operation"], e.get("fieldsV1")) for e in b["metadata"].get("managedFields", [])]
    return core(a) == core(b) and owners == owners_b


def _changed(old: dict[str, Any], new: dict[str, Any]) -> set[kf.Path]:
    before = dict(kf.leaves(obj_without_status(old)))
    after = dict(kf.leaves(obj_without_status(new)))
    return {p for p, v in after.items() if before.get(p, KeyError) != v}


def _entry(manager: str, op: str, api_version: str, paths: set[kf.Path], subresource: str = "") -> dict[str, Any]:
    entry = {"manager": manager, "operation": op, "apiVersion": api_version, "time": now(),
             "fieldsType": "FieldsV1", "fieldsV1": kf.to_fields_v1(paths)}
    if subresource:
        entry["subresource"] = subresource
    return entry


def _set_entry(obj: dict[str, Any], manager: str, op: str, api_version: str, paths: set[kf.Path],
               subresource: str) -> None:
    entries = obj["metadata"].setdefault("managedFields", [])
    for entry in entries:
        if entry["manager"] == manager and entry["operation"] == op and entry.get("subresource", "") == subresource:
            entry.update(_entry(manager, op, api_version, paths, subresource))
            return
    entries.append(_entry(manager, op, api_version, paths, subresource))


def _removed(old: dict[str, Any], new: dict[str, Any]) -> set[kf.Path]:
    return {p for p, _ in kf.leaves(obj_without_status(old))} - {p for p, _ in kf.leaves(obj_without_status(new))}


def _take(obj: dict[str, Any], paths: set[kf.Path], manager: str, op: str, api_version: str,
          subresource: str, gone: set[kf.Path] | None = None) -> None:
    """An update: the manager takes the fields it changed from everyone else; a field it removed is nobody's
    any more (structured-merge-diff drops removed fields from every manager's set)."""
    gone = gone or set()
    entries = obj["metadata"].setdefault("managedFields", [])
    mine: set[kf.Path] = set()
    for entry in entries:
        owned = kf.from_fields_v1(entry.get("fieldsV1") or {})
        if entry["manager"] == manager and entry["operation"] == op and entry.get("subresource", "") == subresource:
            mine = owned
        else:
            entry["fieldsV1"] = kf.to_fields_v1(owned - paths - gone)
    _set_entry(obj, manager, op, api_version, (mine | paths) - gone, subresource)


def _keep_server_meta(old: dict[str, Any], new: dict[str, Any]) -> None:
    meta = new.setdefault("metadata", {})
    for key in ("uid", "creationTimestamp", "namespace", "name", "generation", "resourceVersion", "deletionTimestamp",
                "deletionGracePeriodSeconds", "_deleting"):
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
    meta["managedFields"] = copy.deepcopy(old["metadata"].get("managedFields", []))
    if old.get("kind") == "Service":
        for key in ("clusterIP", "clusterIPs"):
            if key in old.get("spec", {}) and key not in (new.get("spec") or {}):
                new.setdefault("spec", {})[key] = old["spec"][key]


_BINARY = (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10))
_DECIMAL = (("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3), ("", 0), ("m", -3), ("u", -6), ("n", -9))
_QUANTITY_RE = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")


def canonical_quantity(text: Any) -> str | None:
    """A resource quantity as the API server stores it (k8s.io/apimachinery resource.Quantity: the value rounded
    up to nano units, written with the largest suffix of its format that keeps it whole: 1024Mi is 1Gi, 0.5 is
    500m, 1.5Gi is 1536Mi); None when it is not a quantity."""
    m = _QUANTITY_RE.fullmatch(str(text).strip()) if isinstance(text, str | int | float) else None
    if m is None:
        return None
    suffix = m.group(2) or ""
    number = Fraction(m.group(1))
    if suffix[:1] in ("e", "E"):
        value, style = number * Fraction(10) ** int(suffix[1:]), "exponent"
    elif suffix in dict(_BINARY):
        value, style = number * 2 ** dict(_BINARY)[suffix], "binary"
    else:
        value, style = number * Fraction(10) ** dict(_DECIMAL)[suffix], "decimal"
    value = Fraction(math.ceil(value * 10**9), 10**9)
    if style == "binary" and value.denominator == 1 and value >= 1024:
        for name, bits in _BINARY:
            if value % 2**bits == 0:
                return f"{value // 2**bits}{name}"
    for name, exp in _DECIMAL:
        scaled = value / Fraction(10) ** exp
        if scaled.denominator == 1:
            return f"{scaled.numerator}e{exp}" if style == "exponent" and exp else f"{scaled.numerator}{name}"
    return str(value)


def _resources(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, limits or requests) of every container of a Deployment's pod template."""
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [(f"spec.template.spec.containers[{i}].resources.{part}", amounts)
            for i, c in enumerate(pod.get("containers") or [])
            for part, amounts in ((c.get("resources") or {}).items()) if isinstance(amounts, dict)]


def default(kind: Kind, obj: dict[str, Any]) -> None:
    """What the API server fills in, for the fields of these kinds."""
    obj["apiVersion"], obj["kind"] = kind.group_version, kind.kind
    if kind.kind == "Deployment":
        for _, amounts in _resources(obj):
            for key, amount in amounts.items():
                amounts[key] = canonical_quantity(amount) or amount  # (validate refuses what is not one)
    spec = obj.setdefault("spec", {}) if kind.kind in ("Deployment", "Service") else None
    if kind.kind == "Secret":
        obj.setdefault("type", "Opaque")
        folded = obj.pop("stringData", None) or {}  # write-only: folded into data, as the API server does
        if folded:
            data = obj.setdefault("data", {})
            data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in folded.items()})
    if kind.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    if kind.kind == "Service" and spec is not None:
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if "clusterIP" not in spec:
            n = abs(hash(obj["metadata"].get("name", ""))) % 65000
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 2}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports", []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    if kind.kind == "Deployment" and spec is not None:
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        pod = spec.setdefault("template", {}).setdefault("spec", {})
        for key, value in (("restartPolicy", "Always"), ("terminationGracePeriodSeconds", 30),
                           ("dnsPolicy", "ClusterFirst"), ("securityContext", {}),
                           ("schedulerName", "default-scheduler")):
            pod.setdefault(key, value)
        for c in pod.get("containers", []):
            tag = c.get("image", "").rsplit("/", 1)[-1]
            c.setdefault("imagePullPolicy", "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for port in c.get("ports", []):
                port.setdefault("protocol", "TCP")
            for probe in (c.get("readinessProbe"), c.get("livenessProbe")):
                if probe:
                    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                                       ("failureThreshold", 3)):
                        probe.setdefault(key, value)
                    if "httpGet" in probe:
                        probe["httpGet"].setdefault("scheme", "HTTP")


def validate(kind: Kind, obj: dict[str, Any]) -> None:
    """422 Invalid, with one cause per field, for what the real server would refuse among these fields."""
    causes: list[dict[str, str]] = []
    name = obj.get("metadata", {}).get("name", "")

    def bad(path: str, why: str) -> None:
        causes.append({"reason": "FieldValueInvalid", "message": f"Invalid value: {why}", "field": path})

    pattern = _DNS_LABEL if kind.kind in ("Service", "Namespace", "Deployment") else _DNS_SUBDOMAIN
    if not name or len(name) > 63 or not pattern.match(name):
        bad("metadata.name", f'"{name}": a lowercase RFC 1123 name must consist of lower case alphanumeric '
            "characters or '-', and must start and end with an alphanumeric character")
    for key, value in (obj.get("metadata", {}).get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not re.match(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]?$",
                                                                         value):
            bad(f"metadata.labels.{key}", f'"{value}": a valid label must be 63 characters or less')
    if kind.kind == "Secret":
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (ValueError, TypeError):
                bad(f"data[{key}]", "not base64")
    if kind.kind in ("Job", "CronJob"):
        spec = obj.get("spec") or {}
        path = "spec"
        if kind.kind == "CronJob":
            if not re.fullmatch(r"(@\w+|(\S+\s+){4}\S+)", str(spec.get("schedule", "")).strip()):
                bad("spec.schedule", f"{spec.get('schedule')!r}: a cron schedule of five fields")
            spec, path = (spec.get("jobTemplate") or {}).get("spec") or {}, "spec.jobTemplate.spec"
        pod = (spec.get("template") or {}).get("spec") or {}
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            bad(f"{path}.template.spec.restartPolicy", f"{pod.get('restartPolicy')!r}: supported values: "
                '"OnFailure", "Never"')
        if not pod.get("containers"):
            causes.append({"reason": "FieldValueRequired", "message": "Required value",
                           "field": f"{path}.template.spec.containers"})
        if spec.get("completionMode", "NonIndexed") == "Indexed" and spec.get("completions") is None:
            causes.append({"reason": "FieldValueRequired", "message": "Required value: when completion mode is "
                           "Indexed", "field": f"{path}.completions"})
    if kind.kind == "Deployment":
        spec = obj["spec"]
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = spec["template"].get("metadata", {}).get("labels") or {}
        if not selector:
            bad("spec.selector", "empty selector is invalid for deployment")
        elif any(labels.get(k) != v for k, v in selector.items()):
            bad("spec.template.metadata.labels", "`selector` does not match template `labels`")
        if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
            bad("spec.replicas", f"{spec.get('replicas')}: must be greater than or equal to 0")
        containers = spec["template"]["spec"].get("containers") or []
        if not containers:
            bad("spec.template.spec.containers", "Required value")
        for path, amounts in _resources(obj):
            for key, amount in amounts.items():
                if canonical_quantity(amount) is None:
                    bad(f"{path}[{key}]", f'"{amount}": quantities must match the regular expression '
                        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        for i, c in enumerate(containers):
            if not c.get("name") or not _DNS_LABEL.match(c["name"]):
                bad(f"spec.template.spec.containers[{i}].name", f"\"{c.get('name', '')}\"")
            if not c.get("image"):
                bad(f"spec.template.spec.containers[{i}].image", "Required value")
    if kind.kind == "Service":
        for i, port in enumerate(obj["spec"].get("ports") or []):
            if not isinstance(port.get("port"), int) or not 1 <= port["port"] <= 65535:
                bad(f"spec.ports[{i}].port", f"{port.get('port')}: must be between 1 and 65535, inclusive")
    if causes:
        listing = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        raise ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: {listing}', causes, kind.kind, name)


def immutable(kind: Kind, old: dict[str, Any], new: dict[str, Any]) -> None:
    """422 for a change of a field that cannot change once set (apps/v1 validation: ValidateDeploymentUpdate
    keeps spec.selector; core/v1 ValidateServiceUpdate keeps spec.clusterIP once allocated)."""
    causes: list[dict[str, str]] = []
    name = old["metadata"]["name"]
    if kind.kind == "Deployment" and (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get("selector"):
        causes.append({"reason": "FieldValueInvalid", "field": "spec.selector", "message": "Invalid value: "
                       f"{json.dumps(new['spec'].get('selector'))}: field is immutable"})
    if kind.kind == "Service":
        was, now = (old.get("spec") or {}).get("clusterIP"), (new.get("spec") or {}).get("clusterIP")
        if was and now and was != now:
            causes.append({"reason": "FieldValueInvalid", "field": "spec.clusterIPs[0]",
                           "message": f"Invalid value: []string{{\"{now}\"}}: may not change once set"})
    if causes:
        listing = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        raise ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: {listing}', causes, kind.kind, name)


def field_selector(kind: Kind, text: str) -> Any:
    """A field selector (`metadata.name=web,metadata.namespace!=kube-system`): every kind supports metadata.name
    and metadata.namespace, with =, == and !=; another field is 400, as the API server answers for a field its
    kind does not index ("field label not supported")."""
    checks = []
    for term in (t.strip() for t in text.split(",") if t.strip()):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", term)
        if m is None:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
        field, op, value = m.groups()
        if field not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest", f'field label not supported: {field}', kind=kind.kind)
        key = field.split(".")[1]
        checks.append(lambda o, k=key, v=value, neg=op == "!=": (o["metadata"].get(k, "") == v) != neg)
    return lambda o: all(c(o) for c in checks)


def parse_selector(text: str) -> Any:
    """A label selector: k=v, k==v, k!=v, k in (a,b), k notin (a,b), k, !k; comma separated."""
    terms = [t.strip() for t in re.split(r",(?![^()]*\))", text) if t.strip()]
    checks = []
    for term in terms:
        if m := re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            checks.append(lambda lb, k=key, o=op, vs=values: (lb.get(k) in vs) == (o == "in") and
                          (o == "notin" or k in lb))
        elif m := re.match(r"^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$", term):
            key, op, value = m.groups()
            checks.append(lambda lb, k=key, o=op, v=value: (lb.get(k) == v) == (o != "!="))
        elif m := re.match(r"^(!?)([\w./-]+)$", term):
            neg, key = m.groups()
            checks.append(lambda lb, k=key, n=neg: (k in lb) != bool(n))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels) for check in checks)
