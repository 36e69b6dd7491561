"""What files and directories share on Windows: existence, type, removal, and the file's digest."""

from __future__ import annotations

import hashlib
from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import HostResource
from providers.hosts.textdiff import shows_text
from providers.secrets import keyed
from providers.textdiff import unified
from specs.hoststate import DirectoryResource, FileResource


def path_diff(d: HostResource[FileResource | DirectoryResource],
              live: dict[str, Any]) -> tuple[Action, str, list[FieldChange]]:
    res = d.res
    is_file = isinstance(res, FileResource)
    kind = "file" if is_file else "directory"
    exists = bool(live.get("exists"))
    if exists and bool(live.get("dir")) == is_file:
        return "replace", f"{res.path} is a {'directory' if is_file else 'file'}, not a {kind}", [
            FieldChange("type", "directory" if is_file else "file", kind)]
    if res.state == "absent":
        return ("delete", f"{res.path} exists", [FieldChange("state", "present", "absent")]) if exists else (
            "noop", f"{res.path} is absent", [])
    if not exists:
        fields = [FieldChange("state", "absent", "present")]
        if is_file:
            fields.append(FieldChange("sha256", None, shown(d, sha(d))))
        return "create", f"{res.path} does not exist", fields
    if is_file and live.get("sha256") != sha(d):
        stopped = getattr(res, "whileStopped", [])
        how = f"; replaced while {', '.join(stopped)} {'is' if len(stopped) == 1 else 'are'} stopped" if stopped else ""
        fields = [FieldChange("sha256", shown(d, live.get("sha256")), shown(d, sha(d))),
                  FieldChange("size", None if getattr(res, "secret", False) else live.get("size"),
                              None if getattr(res, "secret", False) else (d.content.size if d.content else 0))]
        if isinstance(live.get("text"), str) and shows_text(d) and d.content is not None and d.content.data:
            fields.append(FieldChange("diff", None, unified(live["text"], d.content.data.decode(), res.path)))
        return "update", f"{res.path} content differs{how}", fields
    return "noop", f"{res.path} is as wanted", []


def sha(d: HostResource) -> str:
    return d.content.sha256 if d.content is not None else hashlib.sha256(b"").hexdigest()


def shown(d: HostResource, digest: str | None) -> str | None:
    return keyed(digest) if digest and getattr(d.res, "secret", False) else digest
