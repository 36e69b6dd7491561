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
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

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

    @property
    def resource(self) -> str:
        return self.kind.lower()

    @cached_property
    def flat(self) -> dict[str, Any]:
        """The configuration as dotted paths to leaves (flatten), secrets as they are."""
        return flatten(self.config)

    @cached_property
    def shown(self) -> dict[str, Any]:
        """`flat` as a plan may show it: Secret data as keyed hashes."""
        return mask(self.kind, self.flat)


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
    spec: dict[str, Any] = {"selector": {"matchLabels": {MODEL: name}},
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


# Lists whose elements Kubernetes merges by a key (strategic merge and server-side apply); others are atomic.
KEYS = {"containers": ("name",), "initContainers": ("name",), "env": ("name",), "volumeMounts": ("mountPath",),
        "volumes": ("name",), "ports": ("containerPort", "port"), "imagePullSecrets": ("name",)}
SKIP_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
             "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences"}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """An object as dotted paths to leaves, e.g. spec.template.spec.containers[name=model].image; keyed
    lists element by element, other lists whole. Identity, server metadata and status are left out."""
    out: dict[str, Any] = {}
    if not isinstance(obj, dict):
        return {prefix: obj}
    for key, value in obj.items():
        if not prefix and key in ("apiVersion", "kind", "status"):
            continue
        if prefix == "metadata" and key in SKIP_META:
            continue
        path = f"{prefix}.{key}" if prefix else key
        keys = KEYS.get(key, ())
        if isinstance(value, list) and value and keys and all(isinstance(v, dict) for v in value):
            for item in value:
                k = next((k for k in keys if k in item), None)
                if k is None:
                    out[path] = value
                    break
                out.update(flatten(item, f"{path}[{k}={item[k]}]"))
        elif isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


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
            item = json.loads(name)  # e.g. {"port": 80, "protocol": "TCP"}: the first of KEYS' fields names it
            k = next((k for k in ("name", "mountPath", "containerPort", "port") if k in item), next(iter(item)))
            path = f"{prefix}[{k}={item[k]}]"
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
