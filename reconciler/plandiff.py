"""Two saved plans compared (`recon show OLD --diff NEW`): which changes one has and the other has not, and
what moved in those both have, field by field. A generic structural diff is the right tool here, so this is
deepdiff's (imported when asked: nothing else pays for it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.contract import Change
from reconciler.plan import Plan


@dataclass
class PlanDiff:
    old: str
    new: str
    added: list[str] = field(default_factory=list)  # change ids only the new plan has
    removed: list[str] = field(default_factory=list)  # only the old one
    changed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # id -> [{path, old, new}]
    specs: list[dict[str, Any]] = field(default_factory=list)  # spec digests that moved: [{path, old, new}]

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.specs)

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "same": self.same, "added": self.added, "removed": self.removed,
                "changed": self.changed, "specs": self.specs}


def _view(c: Change) -> dict[str, Any]:
    """What a reviewer compares of a change (its id is the key)."""
    return {"action": c.action, "reason": c.reason, "fields": {f.path: {"before": f.before, "after": f.after}
                                                               for f in c.fields},
            "environment": c.environment, "risks": sorted(c.risks), "denied": c.denied,
            "live": c.fingerprint, "desired": c.desired}


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    from deepdiff import DeepDiff

    a = {c.id: _view(c) for c in old.changes if c.is_change}
    b = {c.id: _view(c) for c in new.changes if c.is_change}
    out = PlanDiff(old.plan_id, new.plan_id, sorted(b.keys() - a.keys()), sorted(a.keys() - b.keys()))
    for cid in sorted(a.keys() & b.keys()):
        found = _items(DeepDiff(a[cid], b[cid], ignore_order=True, verbose_level=2))
        if found:
            out.changed[cid] = found
    out.specs = _items(DeepDiff(old.specs, new.specs, verbose_level=2))
    return out


def _items(d: Any) -> list[dict[str, Any]]:
    """deepdiff's report as (path, old, new) items, paths as the plan's JSON names them."""
    items: list[dict[str, Any]] = []
    for kind in ("values_changed", "type_changes"):
        for path, v in d.get(kind, {}).items():
            items.append({"path": _path(path), "old": v.get("old_value"), "new": v.get("new_value")})
    for kind, side in (("dictionary_item_added", "new"), ("iterable_item_added", "new"),
                       ("dictionary_item_removed", "old"), ("iterable_item_removed", "old")):
        for path, v in d.get(kind, {}).items():
            items.append({"path": _path(path), "old": v if side == "old" else None,
                          "new": v if side == "new" else None})
    return sorted(items, key=lambda i: i["path"])


def _path(path: str) -> str:
    """root['fields']['content']['after'] -> fields.content.after"""
    import re

    parts = re.findall(r"\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]", path)
    return ".".join(a or b for a, b in parts) or path
