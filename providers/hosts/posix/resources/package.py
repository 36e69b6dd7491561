"""package: installed (at a version) or not, through apt where dpkg is, else dnf or yum (rpm)."""

from __future__ import annotations

from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import HostResource
from specs.hoststate import PackageResource

APT = "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confold"


def facts(name: str, index: int) -> str:
    """Shell printing `index package <manager> <version or ->` as NUL-separated fields."""
    return (
        f"if command -v dpkg-query >/dev/null 2>&1; then m=apt; "
        f"v=$(dpkg-query -W -f='${{db:Status-Abbrev}}|${{Version}}' {name} 2>/dev/null); "
        f'case "$v" in ii*) v=${{v#*|}};; *) v=-;; esac; '
        f"elif command -v rpm >/dev/null 2>&1; then m=dnf; command -v dnf >/dev/null 2>&1 || m=yum; "
        f"v=$(rpm -q --qf '%{{VERSION}}-%{{RELEASE}}' {name} 2>/dev/null) || v=-; "
        f"else m=none; v=-; fi; printf '%s\\0' {index} package \"$m\" \"$v\""
    )


def diff(desired: HostResource[PackageResource], live: dict[str, Any] | None) -> tuple[Action, str, list[FieldChange]]:
    res = desired.res
    live = live or {"manager": "none", "version": None}
    have = live.get("version")
    if live.get("manager") == "none":
        return "update", f"no package manager found for {res.name} (needs dpkg/apt or rpm/dnf)", [
            FieldChange("manager", None, "apt or dnf")]
    if res.state == "absent":
        if have is None:
            return "noop", f"package {res.name} is not installed", []
        return "delete", f"package {res.name} {have} is installed and must not be", [FieldChange("version", have, None)]
    if have is None:
        return "create", f"package {res.name} is not installed", [FieldChange("version", None, res.version or "any")]
    if res.version is not None and res.version != have:
        return "update", f"package {res.name} is {have}, not {res.version}", [FieldChange("version", have, res.version)]
    return "noop", f"package {res.name} {have} is installed", []


def _spec(res: PackageResource, version: str | None, manager: str) -> str:
    if version is None or version == "any":
        return res.name
    return f"{res.name}={version}" if manager == "apt" else f"{res.name}-{version}"


def _run(res: PackageResource, action: Action, version: str | None) -> str:
    if action == "delete":
        apt, rpm = f"{APT} remove {res.name}", f"$m -y -q remove {res.name}"
    else:
        apt = f"{APT} install {_spec(res, version, 'apt')}"
        rpm = f"$m -y -q install {_spec(res, version, 'dnf')}"
    return (
        f"if command -v dpkg-query >/dev/null 2>&1; then {apt}\n"
        f"else m=dnf; command -v dnf >/dev/null 2>&1 || m=yum; {rpm}; fi"
    )


def script(desired: HostResource[PackageResource], action: Action, fields: list[FieldChange]) -> str:
    res = desired.res
    return _run(res, action, res.version)


def undo(desired: HostResource[PackageResource], action: Action, fields: list[FieldChange]) -> str:
    """Remove what was installed; put back the version that was there (if the repository still has it)."""
    res = desired.res
    before = next((f.before for f in fields if f.path == "version"), None)
    if action == "create":
        return _run(res, "delete", None)
    return _run(res, "create", before)


def clean(desired: HostResource, action: Action) -> str:
    return ":"
