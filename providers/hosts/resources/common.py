"""What files and directories share: existence, type, mode and ownership."""

from __future__ import annotations

from typing import Any

from providers.hosts.model import Desired, q
from reconciler.plan import Action, FieldChange
from specs.hoststate import DirectoryResource, FileResource


def attr_changes(desired: Desired, live: dict[str, Any] | None) -> list[FieldChange]:
    """mode, owner and group, where the spec sets them and the live value differs."""
    res = desired.res
    out = []
    for name in ("mode", "owner", "group"):
        want = getattr(res, name)
        have = None if live is None else live.get(name)
        if want is not None and want != have:
            out.append(FieldChange(name, have, want))
    return out


def attr_script(desired: Desired, target: str, fields: list[FieldChange]) -> list[str]:
    """chmod and chown lines for the attribute changes, applied to `target` (already quoted)."""
    lines = []
    names = {f.path for f in fields}
    res = desired.res
    assert isinstance(res, FileResource | DirectoryResource)
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
