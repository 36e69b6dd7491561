"""The test API server's knowledge of how fields merge, from Kubernetes' published OpenAPI definitions.

Read on its own from the definitions kubernetes-validate ships (never from recon): for the server's
version (kube_api.VERSION), which lists are maps and by which keys (`x-kubernetes-list-type: map`,
`x-kubernetes-list-map-keys`), which are sets or atomic, which maps are atomic, and which fields an
object may have at all (for fieldValidation). A real API server compiles the same markers from its Go
types into the schema it publishes.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

MINOR = "1.31.0"  # kube_api.VERSION's
REF = "#/$defs/"


@lru_cache(maxsize=1)
def definitions() -> dict[str, Any]:
    import kubernetes_validate

    where = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{MINOR}-local"
    return dict(json.loads((where / "_definitions.json").read_text())["$defs"])


def _deref(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema or any("$ref" in a for a in schema.get("allOf") or []):
        ref = schema.get("$ref") or next(a["$ref"] for a in schema["allOf"] if "$ref" in a)
        rest = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        schema = {**definitions()[ref[len(REF):]], **rest}
    return schema


@cache
def root(kind: str) -> str | None:
    """The definition of a kind the server serves (core, apps or batch v1), by its group-version-kind marker."""
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if gvk.get("kind") == kind and gvk.get("group", "") in ("", "apps", "batch") and gvk.get("version") == "v1":
                return name
    return None


@lru_cache(maxsize=4096)
def at(names: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema at a path of field names from a kind (names[0]); list elements are stepped over."""
    name = root(names[0])
    if name is None:
        return None
    schema: dict[str, Any] | None = _deref({"$ref": REF + name})
    for field in names[1:]:
        if schema is None:
            return None
        if "items" in schema:  # a field of a list's element (or, as "[]", the element itself)
            schema = _deref(schema["items"])
            if field == "[]":
                continue
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        sub = props.get(field) if field in props else extra if isinstance(extra, dict) else None
        schema = _deref(sub) if isinstance(sub, dict) else None
    return schema


def list_keys(names: tuple[str, ...]) -> tuple[str, ...]:
    """The keys of a map-list's elements; () for sets, atomic lists and what the schema does not know."""
    s = at(names)
    if not s:
        return ()
    if s.get("x-kubernetes-list-type") == "map":
        return tuple(s.get("x-kubernetes-list-map-keys") or ())
    if s.get("x-kubernetes-list-type") is None and "merge" in str(s.get("x-kubernetes-patch-strategy", "")):
        return (s["x-kubernetes-patch-merge-key"],) if s.get("x-kubernetes-patch-merge-key") else ()
    return ()


def atomic_map(names: tuple[str, ...]) -> bool:
    s = at(names)
    return bool(s) and s.get("x-kubernetes-map-type") == "atomic"  # type: ignore[union-attr]


def unknown_fields(obj: Any, names: tuple[str, ...], prefix: str = "") -> list[str]:
    """The fields of an object its schema does not declare, as a real server names them in a strict decoding
    error (.spec.template.spec.containers[0].colour)."""
    s = at(names)
    if s is None or not isinstance(obj, dict | list):
        return []
    if isinstance(obj, list):
        if "items" not in s:
            return []
        return [u for i, item in enumerate(obj) for u in unknown_fields(item, (*names, "[]"), f"{prefix}[{i}]")]
    props = s.get("properties")
    if props is None or s.get("additionalProperties") is not None or s.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out = []
    for key, value in obj.items():
        if key not in props:
            out.append(f"{prefix}.{key}")
        else:
            out += unknown_fields(value, (*names, key), f"{prefix}.{key}")
    return out


def pruned(obj: Any, names: tuple[str, ...]) -> Any:
    """The object without the fields its schema does not declare."""
    s = at(names)
    if s is None:
        return obj
    if isinstance(obj, list):
        return [pruned(item, (*names, "[]")) for item in obj] if "items" in s else obj
    if not isinstance(obj, dict):
        return obj
    props = s.get("properties")
    if props is None or s.get("additionalProperties") is not None or s.get("x-kubernetes-preserve-unknown-fields"):
        return obj
    return {k: pruned(v, (*names, k)) for k, v in obj.items() if k in props}
