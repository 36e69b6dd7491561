"""How Kubernetes merges and owns the fields of an object, read from Kubernetes' own published OpenAPI.

A list is either a map keyed by some of its elements' fields (`x-kubernetes-list-type: map` with
`x-kubernetes-list-map-keys`: containers by name, container ports by containerPort and protocol, Service
ports by port and protocol), a set, or atomic (replaced whole: envFrom, args, a selector's matchExpressions);
a map is granular or atomic (`x-kubernetes-map-type: atomic`: a LabelSelector). Server-side apply and its
managedFields follow exactly these markers, so recon's diff, and which fields it says it owns, follow them
too, for the Kubernetes version of the cluster it talks to. The definitions are those kubernetes-validate
ships (one set per Kubernetes minor version, offline): no table of recon's own to drift from Kubernetes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

_ROOT = "#/$defs/"


@lru_cache(maxsize=1)
def versions() -> tuple[str, ...]:
    """The Kubernetes versions whose definitions are here, oldest first ("1.25.0", …)."""
    found = []
    for d in _schemas().iterdir():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-local", d.name)
        if m and (d / "_definitions.json").is_file():
            found.append(tuple(int(x) for x in m.groups()))
    return tuple(".".join(map(str, v)) for v in sorted(found))


def choose(server: str | None) -> str:
    """The definitions for a server's version (its gitVersion, e.g. v1.31.4-gke.1): the same minor version, else
    the newest older one, else the oldest here; the newest when the version is not known."""
    have = versions()
    m = re.match(r"v?(\d+)\.(\d+)", server or "")
    if not m:
        return have[-1]
    want = (int(m.group(1)), int(m.group(2)))
    older = [v for v in have if tuple(int(x) for x in v.split(".")[:2]) <= want]
    return older[-1] if older else have[0]


@dataclass(frozen=True)
class Node:
    """A place in an object's schema: what a field's value is, and how its lists and maps merge. A kind's root is
    made once (kind() is cached) and each node keeps the children asked of it, so flattening many objects of a
    kind walks the schema once."""

    schema: dict[str, Any]
    defs: dict[str, Any]
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def _resolved(self) -> dict[str, Any]:
        if "" in self._memo:
            return self._memo[""]
        s = self.schema
        while True:
            ref = s.get("$ref") or next((a.get("$ref") for a in s.get("allOf") or [] if "$ref" in a), None)
            if not ref:
                break
            s = {**self.defs.get(ref[len(_ROOT):], {}), **{k: v for k, v in s.items() if k not in ("$ref", "allOf")}}
        self._memo[""] = s
        return s

    def field(self, name: str) -> Node | None:
        key = "f:" + name
        if key not in self._memo:
            s = self._resolved()
            sub = (s.get("properties") or {}).get(name)
            if sub is None and isinstance(s.get("additionalProperties"), dict):
                sub = s["additionalProperties"]
            self._memo[key] = Node(sub, self.defs) if sub is not None else None
        return self._memo[key]

    def items(self) -> Node | None:
        if "items" not in self._memo:
            s = self._resolved()
            self._memo["items"] = Node(s["items"], self.defs) if isinstance(s.get("items"), dict) else None
        return self._memo["items"]

    def list_keys(self) -> tuple[str, ...]:
        """The keys that identify a list's elements (a map-list); () for a set or an atomic list."""
        s = self._resolved()
        kind = s.get("x-kubernetes-list-type")
        if kind == "map":
            return tuple(s.get("x-kubernetes-list-map-keys") or ())
        if kind is None and "merge" in str(s.get("x-kubernetes-patch-strategy", "")):
            key = s.get("x-kubernetes-patch-merge-key")
            return (key,) if key else ()
        return ()

    def atomic(self) -> bool:
        """A map (or struct) replaced whole."""
        return self._resolved().get("x-kubernetes-map-type") == "atomic"


@lru_cache(maxsize=4)
def _definitions(version: str) -> dict[str, Any]:
    data = json.loads((_schemas() / f"v{version}-local" / "_definitions.json").read_text())
    return dict(data.get("$defs") or data.get("definitions") or {})


@lru_cache(maxsize=64)
def kind(version: str, api_version: str, kind_name: str) -> Node | None:
    """The root of an object of this apiVersion and kind, in the definitions of `version`."""
    group, _, ver = api_version.rpartition("/")
    defs = _definitions(version)
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) == (group, ver, kind_name):
                return Node({"$ref": _ROOT + name}, defs)
    return None


def newest() -> str:
    return versions()[-1]


def _schemas() -> Path:
    import kubernetes_validate

    return Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
