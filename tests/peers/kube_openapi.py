"""The test API server's /openapi/v2 and /openapi/v3, made from Kubernetes' published definitions (kube_schema).

What clients read there: kubectl's client-side validation and `explain` (the schemas, found by their
`x-kubernetes-group-version-kind`), and whether the server takes `fieldValidation` (the PATCH operation's
parameters, which kubectl checks before it sends `--validate=strict` to the server). The definitions are
JSON Schema as kubernetes-validate ships them; they are turned back into OpenAPI as a real server publishes
it: `type` one name, `$ref` beside a description as `allOf`, int-or-string and quantity as formats.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from tests.peers import kube_schema
from tests.peers.kube_store import KINDS, Kind

_SPECIAL = {"io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
            "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string", "format": "quantity"}}
_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _convert(node: Any, ref: str, v3: bool) -> Any:
    if isinstance(node, list):
        return [_convert(n, ref, v3) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v, ref, v3) for k, v in node.items()}
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        out["type"] = types[0] if types else "object"
    if isinstance(out.get("$ref"), str):  # (not a property named $ref, as JSONSchemaProps has)
        out["$ref"] = ref + out["$ref"].removeprefix(kube_schema.REF)
        if v3 and len(out) > 1:
            out = {**{k: v for k, v in out.items() if k != "$ref"}, "allOf": [{"$ref": out["$ref"]}]}
    return out


@cache
def _schemas(v3: bool) -> dict[str, Any]:
    ref = "#/components/schemas/" if v3 else "#/definitions/"
    return {name: _SPECIAL.get(name) or _convert(schema, ref, v3)
            for name, schema in kube_schema.definitions().items()}


def _prefix(gv: str) -> str:
    return "/api/v1" if gv == "v1" else f"/apis/{gv}"


def _gvk(k: Kind) -> dict[str, str]:
    group, _, version = k.group_version.rpartition("/")
    return {"group": group, "version": version, "kind": k.kind}


def _operations(k: Kind, v3: bool) -> dict[str, Any]:
    """The paths of a kind: its collection and its objects, with the operations and query parameters served."""
    root = kube_schema.root(k.kind) or ""
    ref = {"$ref": ("#/components/schemas/" if v3 else "#/definitions/") + root}
    base = _prefix(k.group_version) + ("/namespaces/{namespace}" if k.namespaced else "") + f"/{k.plural}"

    def param(name: str, where: str = "query") -> dict[str, Any]:
        p: dict[str, Any] = {"name": name, "in": where, "required": where == "path"}
        return {**p, "schema": {"type": "string"}} if v3 else {**p, "type": "string"}

    def op(action: str, verb: str, queries: tuple[str, ...] = (), body: bool = False) -> dict[str, Any]:
        o: dict[str, Any] = {"operationId": f"{verb}{k.kind}", "x-kubernetes-action": action,
                             "x-kubernetes-group-version-kind": _gvk(k),
                             "parameters": [param(q) for q in queries],
                             "responses": {"200": {"description": "OK", **(
                                 {"content": {"application/json": {"schema": ref}}} if v3 else {"schema": ref})}}}
        if body and v3:
            o["requestBody"] = {"content": {"*/*": {"schema": ref}}, "required": True}
        elif body:
            o["parameters"].append({"name": "body", "in": "body", "required": True, "schema": ref})
        return o

    where = [param("namespace", "path")] if k.namespaced else []
    read_only = k.kind == "Pod"
    collection = {"get": op("list", "list"), "parameters": where}
    item: dict[str, Any] = {"get": op("get", "read"), "parameters": [*where, param("name", "path")]}
    if not read_only:
        collection["post"] = op("post", "create", _QUERY[:3], body=True)
        item.update({"put": op("put", "replace", _QUERY[:3], body=True),
                     "patch": op("patch", "patch", _QUERY, body=True),
                     "delete": op("delete", "delete", ("dryRun", "propagationPolicy"))})
    return {base: collection, base + "/{name}": item}


@cache
def v3_group(gv: str) -> str:
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": f"v{kube_schema.MINOR}"},
           "paths": {p: o for k in KINDS if k.group_version == gv for p, o in _operations(k, True).items()},
           "components": {"schemas": _schemas(True)}}
    return json.dumps(doc)


def v3_index() -> dict[str, Any]:
    paths = {}
    for gv in dict.fromkeys(k.group_version for k in KINDS):
        digest = hashlib.sha512(v3_group(gv).encode()).hexdigest()[:32].upper()
        paths[_prefix(gv).lstrip("/")] = {"serverRelativeURL": f"/openapi/v3{_prefix(gv)}?hash={digest}"}
    return {"paths": paths}


@cache
def v2() -> str:
    doc = {"swagger": "2.0", "info": {"title": "Kubernetes", "version": f"v{kube_schema.MINOR}"},
           "paths": {p: o for k in KINDS for p, o in _operations(k, False).items()},
           "definitions": _schemas(False)}
    return json.dumps(doc)
