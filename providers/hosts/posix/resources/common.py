"""What files and directories share: existence, type, mode and ownership."""

from __future__ import annotations

from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import HostResource, q
from specs.hoststate import DirectoryResource, FileResource


def attr_changes(desired: HostResource, live: dict[str, Any] | None) -> list[FieldChange]:
    """mode, owner and group, where the spec sets them and the live value differs."""
    res = desired.res
    out = []
    for name in ("mode", "owner", "group"):
        want = getattr(res, name)
        have = None if live is None else live.get(name)
        if want is not None and want != have:
            out.append(FieldChange(name, have, want))
    return out


def attr_script(desired: HostResource[FileResource | DirectoryResource], target: str,
                fields: list[FieldChange]) -> list[str]:
    """chmod and chown lines for the attribute changes, applied to `target` (already quoted)."""
    lines = []
    names = {f.path for f in fields}
    res = desired.res
    if "mode" in names:
        lines.append(f"chmod {res.mode} -- {target}")
    owner, group = res.owner, res.group
    if "owner" in names or "group" in names:
        spec = (owner or "") + (":" + group if group else "")
        lines.append(f"chown {q(spec)} -- {target}")
    return lines


def absent(what: str, path: str, live: dict[str, Any] | None, note: str = "") -> tuple[Action, str, list[FieldChange]]:
    """The diff of a path that must not exist (`state: absent`)."""
    if type_name(live) == "missing":
        return "noop", f"{what} {path} is absent", []
    return "delete", f"{what} {path} exists and must be absent{note}", [FieldChange("state", "present", "absent")]


def type_name(live: dict[str, Any] | None) -> str:
    if live is None:
        return "missing"
    return str(live.get("type", "missing"))


def backup_path(desired: HostResource) -> str:
    """Where a step keeps what it replaced or removed, beside it (same filesystem: restoring is a rename)."""
    return q(desired.path + ".recon-bak")


def move_aside(desired: HostResource) -> str:
    """Instead of removing the path: keep it as the backup."""
    path, bak = q(desired.path), backup_path(desired)
    return f"rm -rf -- {bak}; mv -- {path} {bak}"


def undo_path(desired: HostResource, action: Action, fields: list[FieldChange], created: str) -> str:
    """Shell that puts a path back as it was before the step: from the backup where there is one,
    by removing what `create` made (`created`), or by resetting mode and ownership."""
    path, bak = q(desired.path), backup_path(desired)
    if action == "create":
        return created
    if action in ("delete", "replace") or (action == "update" and any(f.path == "content" for f in fields)):
        return f"if [ -e {bak} ] || [ -L {bak} ]; then rm -rf -- {path}; mv -- {bak} {path}; fi"
    lines = []
    for f in fields:
        if f.path == "mode" and f.before:
            lines.append(f"chmod {f.before} -- {path}")
        elif f.path in ("owner", "group") and f.before:
            spec = f.before if f.path == "owner" else ":" + str(f.before)
            lines.append(f"chown {q(str(spec))} -- {path}")
    return "\n".join(lines) or ":"


def clean_path(desired: HostResource) -> str:
    """Remove what a step leaves beside the path: its backup, and a file's new content if it was not moved."""
    return f"rm -rf -- {backup_path(desired)} {q(desired.path + '.recon-tmp')}"
