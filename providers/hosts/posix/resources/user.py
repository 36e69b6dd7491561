"""user: a local account with a uid, shell, home and supplementary groups (useradd/usermod/userdel)."""

from __future__ import annotations

from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import HostResource, q
from specs.hoststate import UserResource


def facts(name: str, index: int) -> str:
    """Shell printing `index user <passwd line or -> <groups or ->` as NUL-separated fields."""
    return (
        f"p=$(getent passwd {name}) || p=-; "
        f'if [ "$p" != - ]; then g=$(id -nG {name} | tr " " ","); else g=-; fi; '
        f"printf '%s\\0' {index} user \"$p\" \"$g\""
    )


def parse(passwd: str, groups: str) -> dict[str, Any] | None:
    if passwd == "-":
        return None
    fields = passwd.split(":")
    primary_and_rest = [g for g in groups.split(",") if g]
    return {"uid": int(fields[2]), "home": fields[5], "shell": fields[6],
            "groups": sorted(primary_and_rest[1:])}  # `id -nG` lists the primary group first


def diff(desired: HostResource[UserResource], live: dict[str, Any] | None) -> tuple[Action, str, list[FieldChange]]:
    res = desired.res
    if res.state == "absent":
        if live is None:
            return "noop", f"user {res.name} does not exist", []
        return "delete", f"user {res.name} exists and must not", [FieldChange("state", "present", "absent")]
    want = {"uid": res.uid, "shell": res.shell, "home": res.home,
            "groups": sorted(res.groups) if res.groups is not None else None}
    if live is None:
        created = [FieldChange(k, None, v) for k, v in want.items() if v is not None]
        return "create", f"user {res.name} does not exist", created or [FieldChange("state", None, "present")]
    fields = [FieldChange(k, live.get(k), v) for k, v in want.items() if v is not None and v != live.get(k)]
    if not fields:
        return "noop", f"user {res.name} is up to date", []
    return "update", f"user {res.name} differs in {', '.join(f.path for f in fields)}", fields


def _options(res: UserResource, names: set[str]) -> str:
    opts = []
    if res.uid is not None and "uid" in names:
        opts.append(f"-u {res.uid}")
    if res.shell is not None and "shell" in names:
        opts.append(f"-s {q(res.shell)}")
    if res.home is not None and "home" in names:
        opts.append(f"-d {q(res.home)} -m")
    if res.groups is not None and "groups" in names:
        opts.append(f"-G {q(','.join(sorted(res.groups)))}")
    return " ".join(opts)


def script(desired: HostResource[UserResource], action: Action, fields: list[FieldChange]) -> str:
    res = desired.res
    names = {f.path for f in fields}
    if action == "delete":
        return f"userdel {res.name}"
    if action == "create":
        return f"useradd -m {_options(res, names)} {res.name}".replace("  ", " ")
    return f"usermod {_options(res, names)} {res.name}"


def undo(desired: HostResource[UserResource], action: Action, fields: list[FieldChange]) -> str:
    res = desired.res
    if action == "create":
        return f"userdel -r {res.name} 2>/dev/null || userdel {res.name}"
    if action == "update":
        back = res.model_copy(update={f.path: f.before for f in fields if f.path in ("uid", "shell", "home", "groups")})
        return f"usermod {_options(back, {f.path for f in fields})} {res.name}"
    return ":"  # a deleted account (and its files' owner) cannot be brought back exactly


def clean(desired: HostResource, action: Action) -> str:
    return ":"
