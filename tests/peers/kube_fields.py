"""Field paths, merges and managedFields for the test API server (tests/peers/kube_api.py).

A field path is a tuple of steps: a map key ("f", name), or a list element found by its keys ("k",
'{"containerPort":53,"protocol":"UDP"}'). How a list merges comes from Kubernetes' published schema
(kube_schema.py): a map-list (containers by name, container ports by containerPort and protocol, Service ports
by port and protocol) element by element, like strategic merge patch and server-side apply; sets, atomic lists
(envFrom, args) and atomic maps (a selector) are one leaf, replaced whole. Ownership is kept at leaf
granularity, which is what server-side apply's conflicts are about; the real fieldsV1 also records the "." of
each element.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from tests.peers import kube_schema

Path = tuple[tuple[str, str], ...]
At = tuple[str, ...]  # where a value is: the kind, then the field names down to it (list elements stepped over)

# never owned by anyone: identity and server-set metadata
_IDENTITY = {"apiVersion", "kind"}
_META_OWNED = {"labels", "annotations"}
# the list keys this server defaults when an element leaves them out (a real server defaults them before merging)
_KEY_DEFAULTS = {"protocol": "TCP"}


def merge_key(at: At, item: Any) -> str | None:
    """The key of a list element, as the step that finds it, or None for lists that are not map-lists."""
    names = kube_schema.list_keys(at)
    if not names or not isinstance(item, dict) or not any(n in item for n in names):
        return None
    key = {n: item.get(n, _KEY_DEFAULTS.get(n)) for n in names if n in item or n in _KEY_DEFAULTS}
    return json.dumps(key, separators=(",", ":"))


def _keyed(at: At, value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(merge_key(at, v) for v in value)


def _root(obj: Any) -> At:
    return (str(obj.get("kind", "")),) if isinstance(obj, dict) else ("",)


def leaves(obj: Any, prefix: Path = (), at: At | None = None) -> Iterator[tuple[Path, Any]]:
    """Every owned leaf of an object (or of a part of one below `prefix`)."""
    at = _root(obj) if at is None else at
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not prefix and (key in _IDENTITY or key == "status"):
                continue
            if prefix == (("f", "metadata"),) and key not in _META_OWNED:
                continue
            step, here = (("f", key),), (*at, key)
            if _keyed(here, value):
                for item in value:
                    yield from leaves(item, prefix + step + (("k", merge_key(here, item) or ""),), here)
            elif isinstance(value, dict) and value and not kube_schema.atomic_map(here):
                yield from leaves(value, prefix + step, here)
            else:
                yield prefix + step, value
    else:
        yield prefix, obj


def _find(items: list[Any], at: At, key: str) -> int:
    for i, item in enumerate(items):
        if merge_key(at, item) == key:
            return i
    return -1


def get(obj: Any, path: Path) -> Any:
    """The value at a path, or a KeyError."""
    at = _root(obj)
    for kind, name in path:
        if kind == "f":
            if not isinstance(obj, dict) or name not in obj:
                raise KeyError(name)
            obj, at = obj[name], (*at, name)
        else:
            i = _find(obj if isinstance(obj, list) else [], at, name)
            if i < 0:
                raise KeyError(name)
            obj = obj[i]
    return obj


def delete(obj: Any, path: Path, at: At | None = None) -> None:
    """Remove the leaf at a path, then the maps and keyed elements left with nothing but their key, and keyed
    elements whose key went."""
    at = _root(obj) if at is None else at
    (kind, name), rest = path[0], path[1:]
    if kind == "f":
        if not isinstance(obj, dict) or name not in obj:
            return
        if not rest:
            obj.pop(name)
            return
        child = obj[name]
        delete(child, rest, (*at, name))
        if isinstance(child, dict | list) and not child:
            obj.pop(name)
    elif isinstance(obj, list):
        i = _find(obj, at, name)
        if i < 0:
            return
        if rest:
            delete(obj[i], rest, at)
        key = json.loads(name)
        # an element goes with its key: every manager of a field inside owns the key too, so a key nobody owns any
        # more leaves nothing owned in it (what is left, such as defaulted fields, belonged to nobody)
        if not rest or set(obj[i]) <= set(key) or not set(key) <= set(obj[i]) | set(_KEY_DEFAULTS):
            obj.pop(i)


_GONE = object()  # what merging a `$patch: delete` map leaves: nothing


def merge(live: Any, patch: Any, at: At | None = None) -> Any:
    """Strategic merge patch: maps merged key by key (a None value deletes), map-lists element by element, other
    lists, atomic maps and scalars replaced; with its directives, as kubectl's client-side apply sends them:
    `$patch` (replace, delete, merge) on a map or a list element, `$retainKeys`, `$setElementOrder/FIELD` and
    `$deleteFromPrimitiveList/FIELD` (k8s.io/apimachinery/pkg/util/strategicpatch). None are stored."""
    at = _root(patch if isinstance(patch, dict) and patch.get("kind") else live) if at is None else at
    if isinstance(patch, dict):
        patch = dict(patch)
        directive = patch.pop("$patch", "merge")
        if directive == "delete":
            return _GONE
        retain = patch.pop("$retainKeys", None)
        orders = {k.split("/", 1)[1]: patch.pop(k) for k in list(patch) if k.startswith("$setElementOrder/")}
        drops = {k.split("/", 1)[1]: patch.pop(k) for k in list(patch) if k.startswith("$deleteFromPrimitiveList/")}
        if directive == "replace" or not isinstance(live, dict) or kube_schema.atomic_map(at):
            return _plain(patch)
        out = dict(live)
        for key, value in patch.items():
            merged = None if value is None else merge(live.get(key), value, (*at, key))
            if merged is None or merged is _GONE:
                out.pop(key, None)
            else:
                out[key] = merged
        for key, values in drops.items():
            out[key] = [v for v in out.get(key) or [] if v not in values]
        for key, order in orders.items():
            out[key] = _ordered(out.get(key) or [], order, (*at, key))
        if retain is not None:
            out = {k: v for k, v in out.items() if k in retain}
        return out
    if isinstance(patch, list) and any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_plain(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if isinstance(patch, list) and isinstance(live, list) and _keyed(at, patch):
        out_list = list(live)
        for item in patch:
            i = _find(out_list, at, merge_key(at, item) or "")
            merged = merge(out_list[i] if i >= 0 else None, item, (*at, "[]"))
            if merged is _GONE:
                if i >= 0:
                    out_list.pop(i)
            elif i >= 0:
                out_list[i] = merged
            else:
                out_list.append(merged)
        return out_list
    return _plain(patch)


def _plain(value: Any) -> Any:
    """A patch's value as stored: a copy without directives."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


def _ordered(items: list[Any], order: list[Any], at: At) -> list[Any]:
    """A map-list in the order `$setElementOrder` gives (elements it does not name keep their place after)."""
    rank = {merge_key(at, o): n for n, o in enumerate(order)}
    return sorted(items, key=lambda i: rank.get(merge_key(at, i), len(rank)))


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
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(name).items()) + "]"
    return out
