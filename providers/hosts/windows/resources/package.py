"""MSI packages on Windows, by product code: the .msi sent like a file and installed with msiexec /i,
removed with msiexec /x; an install is undone by removing what was installed."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

from providers.contract import Action, Change, FieldChange
from providers.hosts.model import HostResource
from providers.hosts.windows.powershell import call
from providers.hosts.windows.resources.paths import sha
from specs.hoststate import PackageResource


def fact(i: int, d: HostResource[PackageResource]) -> str:
    return call("Recon-MsiFact", i, d.res.productCode or "")


def diff(d: HostResource[PackageResource], live: dict[str, Any],
         changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
    res = d.res
    installed = bool(live.get("installed"))
    if res.state == "present" and not installed:
        return "create", f"{res.name} ({res.productCode}) is not installed", [FieldChange("installed", False, True)]
    if res.state == "absent" and installed:
        return "delete", f"{res.name} {live.get('version', '')} is installed".replace("  ", " "), [
            FieldChange("installed", True, False)]
    return "noop", f"{res.name} is {'installed' if installed else 'not installed'}", []


def steps(i: int, d: HostResource[PackageResource], change: Change, chunk: int) -> Iterator[str]:
    """The calls of the step, made as they are sent: the installer is read a chunk at a time."""
    res = d.res
    if change.action == "delete":
        yield call("Recon-Msi", i, "remove", "", res.productCode)
        return
    staged = f"C:\\ProgramData\\recon\\msi\\{sha(d)}.msi"
    yield call("Recon-Begin", staged)
    if d.content is not None:
        for piece in d.content.chunks(chunk):
            yield call("Recon-Chunk", staged, base64.b64encode(piece).decode())
    yield call("Recon-Stage", i, staged, sha(d))
    yield call("Recon-Msi", i, "install", staged, res.productCode)


def undo(i: int, d: HostResource[PackageResource], change: Change) -> list[str]:
    return [call("Recon-Msi", i, "remove", "", d.res.productCode)] if change.action == "create" else []


def clean(d: HostResource) -> list[str]:
    return []
