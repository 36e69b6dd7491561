"""service: running or stopped, enabled or not; restarted when a resource that notifies it changed.

systemd where it runs (`/run/systemd/system` exists), else System V init scripts in /etc/init.d
(enabled = a start link in /etc/rc2.d, set with update-rc.d).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import HostResource, q
from specs.hoststate import ServiceResource


def facts(name: str, index: int) -> str:
    """Shell printing `index service <manager> <running 0|1> <enabled 0|1|->` as NUL-separated fields."""
    n = q(name)
    return (
        f"if [ -d /run/systemd/system ]; then "
        f"systemctl is-active --quiet {n} && r=1 || r=0; "
        f"systemctl is-enabled --quiet {n} 2>/dev/null && e=1 || e=0; "
        f"systemctl cat {n} >/dev/null 2>&1 && m=systemd || m=missing; "
        f"elif [ -x /etc/init.d/{name} ]; then m=sysv; "
        f"/etc/init.d/{name} status >/dev/null 2>&1 </dev/null && r=1 || r=0; "
        f"ls /etc/rc2.d/S??{name} >/dev/null 2>&1 && e=1 || e=0; "
        f"else m=missing; r=0; e=0; fi; printf '%s\\0' {index} service \"$m\" \"$r\" \"$e\""
    )


def diff(
    desired: HostResource[ServiceResource], live: dict[str, Any] | None, changed: Mapping[str, bool]
) -> tuple[Action, str, list[FieldChange]]:
    res = desired.res
    live = live or {"manager": "missing", "running": False, "enabled": False}
    running, enabled = bool(live.get("running")), bool(live.get("enabled"))
    fields = []
    if res.state is not None and (res.state == "running") != running:
        fields.append(FieldChange("state", "running" if running else "stopped", res.state))
    if res.enabled is not None and res.enabled != enabled:
        fields.append(FieldChange("enabled", enabled, res.enabled))
    missing = live.get("manager") == "missing"
    note = " (not installed yet: it must be by the time this runs)" if missing else ""
    if fields:
        return "update", f"service {res.name} differs in {', '.join(f.path for f in fields)}{note}", fields
    by = [k for k in desired.notified_by if changed.get(k)]
    if by and res.state != "stopped" and (running or res.state == "running"):
        return "restart", f"notified by {', '.join(by)}", [FieldChange("restart", None, res.name)]
    if missing and (res.state == "running" or res.enabled):
        return "update", f"service {res.name} is not installed", [FieldChange("installed", False, True)]
    return "noop", f"service {res.name} is {'running' if running else 'stopped'}" + (
        f" and {'enabled' if enabled else 'disabled'}" if res.enabled is not None else ""), []


def script(desired: HostResource[ServiceResource], action: Action, fields: list[FieldChange]) -> str:
    res = desired.res
    n = q(res.name)
    names = {f.path for f in fields}
    systemd: list[str] = []
    sysv: list[str] = []
    if "enabled" in names:
        systemd.append(f"systemctl {'enable' if res.enabled else 'disable'} --quiet {n}")
        sysv.append(f"update-rc.d {n} defaults >/dev/null && update-rc.d {n} enable >/dev/null" if res.enabled
                    else f"update-rc.d {n} disable >/dev/null")
    if "state" in names or "installed" in names:
        verb = "start" if res.state != "stopped" else "stop"
        systemd.append(f"systemctl {verb} {n}")
        sysv.append(f"/etc/init.d/{res.name} {verb} </dev/null >/dev/null")
    if action == "restart":
        systemd.append(f"systemctl restart {n}")
        sysv.append(f"/etc/init.d/{res.name} restart </dev/null >/dev/null")
    return (
        "if [ -d /run/systemd/system ]; then\n" + ("\n".join(systemd) or ":") + "\n"
        f"elif [ -x /etc/init.d/{res.name} ]; then\n" + ("\n".join(sysv) or ":") + "\n"
        f"else echo 'service {res.name} is not installed (no systemd unit, no /etc/init.d script)' >&2; exit 1\nfi"
    )


def undo(desired: HostResource[ServiceResource], action: Action, fields: list[FieldChange]) -> str:
    """Back to the state before the step; a restart is repeated, so the restored files are loaded."""
    res = desired.res
    before = {f.path: f.before for f in fields}
    back = res.model_copy(update={
        "state": ("running" if before["state"] == "running" else "stopped") if "state" in before else res.state,
        "enabled": bool(before["enabled"]) if "enabled" in before else res.enabled,
    })
    reverse = [FieldChange(f.path, f.after, f.before) for f in fields if f.path in ("state", "enabled")]
    again: Action = "restart" if action == "restart" else "update"
    return script(HostResource(back, desired.host, desired.key), again, reverse)


def clean(desired: HostResource, action: Action) -> str:
    return ":"


def logs(name: str, tail: int, since: int | None, follow: bool) -> str:
    """A service's log: the journal where systemd runs it, else the file a System V service writes
    (/var/log/NAME.log, /var/log/NAME/NAME.log or /var/log/NAME/current); `since` only narrows the journal."""
    n = q(name)
    journal = (f"journalctl -u {n} --no-pager -o short-iso -n {int(tail)}"
               + (f" --since=-{int(since)}s" if since else "") + (" -f" if follow else ""))
    files = " ".join(q(f"/var/log/{name}{end}") for end in (".log", f"/{name}.log", "/current"))
    return (
        f"if [ -d /run/systemd/system ] && systemctl cat {n} >/dev/null 2>&1; then exec {journal}; fi\n"
        f"for f in {files}; do if [ -f \"$f\" ]; then exec tail -n {int(tail)}{' -F' if follow else ''} \"$f\"; fi; "
        "done\n"
        f"echo 'service {name} has no log here: no systemd unit, and none of /var/log/{name}.log, "
        f"/var/log/{name}/{name}.log, /var/log/{name}/current' >&2; exit 3"
    )
