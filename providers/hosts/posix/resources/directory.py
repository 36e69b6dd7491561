"""directory: a directory with given mode and ownership (parents are created as needed)."""

from __future__ import annotations

from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import HostResource, q
from providers.hosts.posix.resources.common import (
    absent,
    attr_changes,
    attr_script,
    clean_path,
    move_aside,
    type_name,
    undo_path,
)
from specs.hoststate import DirectoryResource


def diff(desired: HostResource[DirectoryResource],
         live: dict[str, Any] | None) -> tuple[Action, str, list[FieldChange]]:
    res = desired.res
    path = res.path
    kind = type_name(live)
    if res.state == "absent":
        return absent("directory", path, live, " (removed with all it holds)")
    if kind == "missing":
        return "create", f"directory {path} does not exist", [
            FieldChange("state", "absent", "present"), *attr_changes(desired, None)
        ]
    if kind != "directory":
        return "replace", f"{path} is a {kind}, not a directory", [
            FieldChange("type", kind, "directory"), *attr_changes(desired, None)
        ]
    fields = attr_changes(desired, live)
    if not fields:
        return "noop", f"directory {path} is up to date", []
    return "update", f"directory {path} differs in {', '.join(f.path for f in fields)}", fields


def script(desired: HostResource, action: Action, fields: list[FieldChange]) -> str:
    path = q(desired.path)
    if action == "delete":
        return move_aside(desired)
    lines = []
    if action == "replace":
        lines.append(move_aside(desired))
    if action in ("create", "replace"):
        lines.append(f"mkdir -p -- {path}")
    lines += attr_script(desired, path, [f for f in fields if f.path in ("mode", "owner", "group")])
    return "\n".join(lines)


def undo(desired: HostResource, action: Action, fields: list[FieldChange]) -> str:
    return undo_path(desired, action, fields, f"rmdir -- {q(desired.path)} 2>/dev/null || true")


def clean(desired: HostResource, action: Action) -> str:
    return clean_path(desired)
