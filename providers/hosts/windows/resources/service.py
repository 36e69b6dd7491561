"""Windows services: status and startup type; restarted when notified; undone back to what they were."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.contract import Action, Change, FieldChange
from providers.hosts.model import HostResource
from providers.hosts.windows.powershell import call
from specs.hoststate import ServiceResource

STARTUP = {"automatic": "Automatic", "manual": "Manual", "disabled": "Disabled"}


def fact(i: int, d: HostResource[ServiceResource]) -> str:
    return call("Recon-ServiceFact", i, d.res.name)


def diff(d: HostResource[ServiceResource], live: dict[str, Any],
         changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
    res = d.res
    fields = []
    status = live.get("status", "Stopped")
    if res.state is not None and (status == "Running") != (res.state == "running"):
        fields.append(FieldChange("state", status.lower(), res.state))
    want = STARTUP[res.startup] if res.startup else (
        None if res.enabled is None else ("Automatic" if res.enabled else "Disabled"))
    if want is not None and live.get("startup") != want:
        fields.append(FieldChange("startup", live.get("startup"), want))
    if fields:
        return "update", f"service {res.name} differs in {', '.join(f.path for f in fields)}", fields
    by = [k for k in d.notified_by if changed.get(k)]
    if by and res.state != "stopped" and (status == "Running" or res.state == "running"):
        return "restart", f"notified by {', '.join(by)}", [FieldChange("restart", None, res.name)]
    return "noop", f"service {res.name} is {status.lower()} ({live.get('startup')})", []


def steps(i: int, d: HostResource[ServiceResource], change: Change, chunk: int) -> list[str]:
    res = d.res
    fields = {f.path: f for f in change.fields}
    want = "Restart" if change.action == "restart" else (
        "" if "state" not in fields else ("Running" if res.state == "running" else "Stopped"))
    startup = str(fields["startup"].after) if "startup" in fields else ""
    return [call("Recon-Service", i, res.name, want, startup, res.timeout)]


def undo(i: int, d: HostResource[ServiceResource], change: Change) -> list[str]:
    res = d.res
    fields = {f.path: f for f in change.fields}
    was = str(fields["state"].before) if "state" in fields else ""
    want = "Restart" if change.action == "restart" else ("Running" if was == "running" else "Stopped" if was else "")
    startup = str(fields["startup"].before or "") if "startup" in fields else ""
    return [call("Recon-Service", i, res.name, want, startup, res.timeout)]


def clean(d: HostResource) -> list[str]:
    return []
