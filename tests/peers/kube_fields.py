"""Field paths, merges and managedFields for the test API server (tests/peers/kube_api.py).

A field path is a tuple of steps: a map key ("f", name), or a list element found by its merge key
("k", '{"name":"app"}'). Lists whose elements have a merge key (containers by name, env by name, ports
by port) are merged element by element, like Kubernetes' strategic merge patch and server-side apply;
every other list is atomic: one leaf, replaced whole. Ownership is kept at leaf granularity, which is
what server-side apply's conflicts are about; the real fieldsV1 also records the "." of each element.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

Path = tuple[tuple[str, str], ...]

MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "env": ("name",), "volumeMounts": ("mountPath",),
    "volumes": ("name",), "imagePullSecrets": ("name",), "ports": ("containerPort", "port"),
}
# never owned by anyone: identity and server-set metadata
_IDENTITY = {"apiVersion", "kind"}
_META_OWNED = {"labels", "annotations"}


def merge_key(field: str, item: Any) -> str | None:
    """The key of a list element, as the step that finds it, or None for atomic lists."""
    names = MERGE_KEYS.get(field)
    if not names or not isinstance(item, dict):
        return None
    for name in names:
        if name in item:
            return json.dumps({name: item[name]}, separators=(",", ":"))
    return None


def leaves(obj: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every owned leaf of an object (or of a part of one below `prefix`)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not prefix and (key in _IDENTITY or key == "status"):
                continue
            if prefix == (("f", "metadata"),) and key not in _META_OWNED:
                continue
            step = (("f", key),)
            if isinstance(value, list) and value and all(merge_key(key, v) for v in value):
                for item in value:
                    yield from leaves(item, prefix + step + (("k", merge_key(key, item) or ""),))
            elif isinstance(value, dict) and value:
                yield from leaves(value, prefix + step)
            else:
                yield prefix + step, value
    else:
        yield prefix, obj


def _find(items: list[Any], field: str, key: str) -> int:
    for i, item in enumerate(items):
        if merge_key(field, item) == key:
            return i
    return -1


def get(obj: Any, path: Path) -> Any:
    """The value at a path, or a KeyError."""
    field = ""
    for kind, name in path:
        if kind == "f":
            if not isinstance(obj, dict) or name not in obj:
                raise KeyError(name)
            obj, field = obj[name], name
        else:
            i = _find(obj if isinstance(obj, list) else [], field, name)
            if i < 0:
                raise KeyError(name)
            obj = obj[i]
    return obj


def delete(obj: Any, path: Path, field: str = "") -> None:
    """Remove the leaf at a path, then the maps and keyed elements left with nothing but their key, and keyed
    elements whose key went."""
    (kind, name), rest = path[0], path[1:]
    if kind == "f":
        if not isinstance(obj, dict) or name not in obj:
            return
        if not rest:
            obj.pop(name)
            return
        child = obj[name]
        delete(child, rest, name)
        if isinstance(child, dict | list) and not child:
            obj.pop(name)
    elif isinstance(obj, list):
        i = _find(obj, field, name)
        if i < 0:
            return
        if rest:
            delete(obj[i], rest)
        key = json.loads(name)
        # an element goes with its key: every manager of a field inside owns the key too, so a key nobody owns any
        # more leaves nothing owned in it (what is left, such as defaulted fields, belonged to nobody)
        if not rest or set(obj[i]) <= set(key) or not set(key) <= set(obj[i]):
            obj.pop(i)


def merge(live: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge: maps merged key by key (a None value deletes), keyed lists element by element,
    other lists and scalars replaced."""
    if isinstance(patch, dict) and isinstance(live, dict):
        out = dict(live)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(live.get(key), value, key)
        return out
    if isinstance(patch, list) and isinstance(live, list) and patch and all(merge_key(field, p) for p in patch):
        out_list = list(live)
        for item in patch:
            i = _find(out_list, field, merge_key(field, item) or "")
            if i >= 0:
                out_list[i] = merge(out_list[i], item, "")
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def json_merge(live: Any, patch: Any) -> Any:
    """RFC 7386 merge patch: lists replaced whole."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(live) if isinstance(live, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = json_merge(out.get(key), value)
    return out


def json_patch(obj: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, remove, replace, test (what clients send)."""
    doc = copy.deepcopy(obj)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            have = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if have != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        elif isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, op["value"])
            elif kind == "remove":
                parent.pop(idx)
            else:
                parent[idx] = op["value"]
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in parent:
                raise ValueError(f"replace of a missing path {op['path']}")
            parent[last] = op["value"]
        elif kind == "remove":
            if last not in parent:
                raise ValueError(f"remove of a missing path {op['path']}")
            del parent[last]
        else:
            raise ValueError(f"unsupported JSON patch op {kind!r}")
    return doc


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for kind, name in path:
            node = node.setdefault(f"{kind}:{name}", {})
            if kind == "k":
                node.setdefault(".", {})
    return tree


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in tree.items():
        if key == ".":
            continue
        kind, _, name = key.partition(":")
        path = (*prefix, (kind, name))
        children = {k: v for k, v in sub.items() if k != "."}
        if children:
            out |= from_fields_v1(children, path)
        elif kind == "f":
            out.add(path)
    return out


def dotted(path: Path) -> str:
    """As Kubernetes names a field in a conflict: .spec.template.spec.containers[name="app"].image"""
    out = ""
    for kind, name in path:
        if kind == "f":
            out += "." + name
        else:
            ((key, value),) = json.loads(name).items()
            out += f"[{key}={json.dumps(value)}]"
    return out
