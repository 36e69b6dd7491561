"""The objects a Model becomes on Kubernetes: a Deployment and a Service, a ConfigMap for its plain
environment and a Secret for the values that come from references. Pure: no I/O but reading secrets.

Ownership: every object is labelled `app.kubernetes.io/managed-by: recon` and `recon.dev/model: NAME`
(label values cannot hold the "/" of an address). The pod template carries a digest of the ConfigMap
and Secret data, so that a changed value rolls the replicas, as `kubectl rollout restart` would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from providers.kube import semantics
from providers.secrets import keyed
from specs.model import EnvFrom, ModelSpec
from specs.stack import Stack

MANAGED = "app.kubernetes.io/managed-by"
MODEL = "recon.dev/model"
STACK = "recon.dev/stack"  # the id of the stack whose specs made the object (specs/stack.py); on objects, not pods
STACK_NAME = "recon.dev/stack-name"  # an annotation: its readable name
SELECTOR = f"{MANAGED}=recon"
CONFIG_DIGEST = "recon.dev/config-digest"
COMMIT = "recon.dev/commit"  # set on apply; never compared (it changes with every commit)
CONTAINER = "model"


@dataclass(frozen=True)
class Obj:
    """One object to apply: its API coordinates and the configuration recon applies."""

    kind: str  # Deployment, Service, ConfigMap, Secret
    name: str
    namespace: str
    model: str  # the Model's name
    config: dict[str, Any] = field(repr=False)  # what is applied: may hold secret data
    _flats: dict[str | None, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def resource(self) -> str:
        return self.kind.lower()

    @cached_property
    def flat(self) -> dict[str, Any]:
        """The configuration as dotted paths to leaves (flatten, by the newest Kubernetes' schema), secrets as they
        are."""
        return self.flat_at(None)

    @cached_property
    def shown(self) -> dict[str, Any]:
        """`flat` as a plan may show it: Secret data as keyed hashes."""
        return mask(self.kind, self.flat)

    def flat_at(self, version: str | None) -> dict[str, Any]:
        """`flat` by the schema of a Kubernetes version (the cluster's); flattened once per version (a plan asks
        for it in the read, the dry run and the diff)."""
        if version not in self._flats:
            self._flats[version] = flatten(self.config, root(self.config, version))
        return self._flats[version]

    def shown_at(self, version: str | None) -> dict[str, Any]:
        return mask(self.kind, self.flat_at(version))


def _quantity_memory(docker: str) -> str:
    """Docker's 256m / 1g (binary units) as Kubernetes writes them: 256Mi / 1Gi."""
    m = re.match(r"^([0-9]+)([kmg]?)$", docker)
    assert m is not None
    return m.group(1) + {"": "", "k": "Ki", "m": "Mi", "g": "Gi"}[m.group(2)]


def _quantity_cpu(cpus: float) -> str:
    """As the API server writes CPU quantities back: whole CPUs as integers, else millicores."""
    milli = round(cpus * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def build(name: str, body: ModelSpec, labels: dict[str, str], base: Path, secrets: bool = True,
          stack: Stack | None = None) -> list[Obj]:
    """The objects of a Model; with secrets=False (offline validation) secret values are left empty. `stack`:
    labelled on each object (not its pods, whose template it would change), so prune sees only its own."""
    k8s = body.k8s
    ns = k8s.namespace
    own = {MANAGED: "recon", MODEL: name}
    meta_labels = {**{k: v for k, v in sorted(labels.items())}, "app.kubernetes.io/name": name, **own}
    plain = {k: v for k, v in body.env.items() if isinstance(v, str)}
    secret = {k: v.valueFrom.resolve(base).get_secret_value() if secrets else ""
              for k, v in body.env.items() if isinstance(v, EnvFrom)}
    out: list[Obj] = []

    def meta(obj_name: str) -> dict[str, Any]:
        if stack is None:
            return {"name": obj_name, "namespace": ns, "labels": dict(meta_labels)}
        return {"name": obj_name, "namespace": ns, "labels": {**meta_labels, STACK: stack.id},
                "annotations": {STACK_NAME: stack.name}}

    if plain:
        out.append(Obj("ConfigMap", name, ns, name, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name),
                                                     "data": dict(sorted(plain.items()))}))
    if secret:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(secret.items())}
        out.append(Obj("Secret", f"{name}-env", ns, name, {"apiVersion": "v1", "kind": "Secret",
                                                           "metadata": meta(f"{name}-env"), "type": "Opaque",
                                                           "data": data}))
    digest = hashlib.sha256(json.dumps([plain, {k: keyed(v) for k, v in secret.items()}],
                                       sort_keys=True).encode()).hexdigest()[:16]
    env: list[dict[str, Any]] = [{"name": "PORT", "value": str(body.containerPort)}]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": f"{name}-env", "key": k}}} for k in sorted(secret)]
    container: dict[str, Any] = {"name": CONTAINER, "image": body.image,
                                 "ports": [{"name": "http", "containerPort": body.containerPort, "protocol": "TCP"}],
                                 "env": env}
    if plain:
        container["envFrom"] = [{"configMapRef": {"name": name}}]
    if body.command:
        container["command"] = list(body.command)
    res = body.resources
    amounts: dict[str, str] = {}
    if res.cpus is not None:
        amounts["cpu"] = _quantity_cpu(res.cpus)
    if res.memory is not None:
        amounts["memory"] = _quantity_memory(res.memory)
    limits = {**amounts, **({res.gpuResource: str(res.gpus)} if res.gpus else {})}
    if limits:
        container["resources"] = {"limits": limits, **({"requests": amounts} if amounts else {})}
    h = body.health
    check: dict[str, Any] = ({"httpGet": {"path": h.path, "port": body.containerPort}} if h.protocol == "http"
                             else {"tcpSocket": {"port": body.containerPort}})
    container["readinessProbe"] = {**check, "periodSeconds": max(1, round(h.interval)),
                                   "timeoutSeconds": max(1, round(h.timeout))}
    # the cluster itself marks a rollout failed (Progressing: ProgressDeadlineExceeded) when it stalls for as
    # long as recon waits for one, so `kubectl rollout status` and recon agree on when it failed
    spec: dict[str, Any] = {"selector": {"matchLabels": {MODEL: name}},
                            "progressDeadlineSeconds": max(1, math.ceil(k8s.rolloutTimeout)),
                            "template": {"metadata": {"labels": dict(meta_labels),
                                                      "annotations": {CONFIG_DIGEST: digest}},
                                         "spec": {"containers": [container]}}}
    if k8s.manageReplicas:
        spec = {"replicas": body.replicas, **spec}
    out.append(Obj("Deployment", name, ns, name, {"apiVersion": "apps/v1", "kind": "Deployment",
                                                  "metadata": meta(name), "spec": spec}))
    out.append(Obj("Service", name, ns, name, {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(name),
        "spec": {"type": k8s.serviceType, "selector": {MODEL: name},
                 "ports": [{"name": "http", "port": body.port, "targetPort": body.containerPort, "protocol": "TCP"}]},
    }))
    return out


SKIP_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
             "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences"}


def root(obj: dict[str, Any], version: str | None = None) -> semantics.Node | None:
    """Where an object's schema starts, in the definitions of a Kubernetes version (the newest by default)."""
    return semantics.kind(version or semantics.newest(), str(obj.get("apiVersion", "")), str(obj.get("kind", "")))


def flatten(obj: Any, node: semantics.Node | None, prefix: str = "") -> dict[str, Any]:
    """An object as dotted paths to leaves, as server-side apply sees its fields (semantics.py): a map-list
    element by element, named by its keys (spec.template.spec.containers[name=model].ports[containerPort=8080,
    protocol=TCP].name), sets, atomic lists and atomic maps whole. Identity, server metadata and status are left
    out."""
    out: dict[str, Any] = {}
    if not isinstance(obj, dict):
        return {prefix: obj}
    for key, value in obj.items():
        if not prefix and key in ("apiVersion", "kind", "status"):
            continue
        if prefix == "metadata" and key in SKIP_META:
            continue
        path = f"{prefix}.{key}" if prefix else key
        sub = node.field(key) if node is not None else None
        keys = sub.list_keys() if sub is not None else ()
        items = sub.items() if sub is not None else None
        if isinstance(value, list) and value and keys and all(isinstance(v, dict) for v in value):
            if not all(any(k in item for k in keys) for item in value):
                out[path] = value  # an element no key names (the server refuses it): compared whole
                continue
            for item in value:
                out.update(flatten(item, items, f"{path}[{_ident(item, keys)}]"))
        elif isinstance(value, dict) and value and not (sub is not None and sub.atomic()):
            out.update(flatten(value, sub, path))
        else:
            out[path] = value
    return out


def _ident(item: dict[str, Any], keys: Any) -> str:
    """A map-list element's name in a path: its keys, in name order (as managedFields' k: entries give them)."""
    return ",".join(f"{k}={item[k]}" for k in sorted(keys) if k in item)


def owned_paths(fields_v1: dict[str, Any], prefix: str = "") -> set[str]:
    """The leaves of a managedFields entry, in flatten()'s notation."""
    out: set[str] = set()
    for key, sub in fields_v1.items():
        if key == ".":
            continue
        kind, _, name = key.partition(":")
        if kind == "f":
            path = f"{prefix}.{name}" if prefix else name
        elif kind == "k":
            item = json.loads(name)  # e.g. {"containerPort": 53, "protocol": "UDP"}: every key of the element
            path = f"{prefix}[{_ident(item, item)}]"
        else:
            continue
        children = {c: s for c, s in sub.items() if c != "."}
        out |= owned_paths(children, path) if children else {path}
    return out


def mask(kind: str, flat: dict[str, Any]) -> dict[str, Any]:
    if kind != "Secret":
        return flat
    out = {}
    for path, value in flat.items():
        if path.startswith(("data.", "stringData.")) and isinstance(value, str):
            raw = base64.b64decode(value).decode(errors="replace") if path.startswith("data.") else value
            out[path] = f"(secret) {keyed(raw)}"
        else:
            out[path] = value
    return out
