"""command: a shell command, guarded by `creates` / `unless`, or run only when notified."""

from __future__ import annotations

from providers.contract import Action, FieldChange
from providers.hosts import guards
from providers.hosts.model import HostResource, q
from specs.hoststate import CommandResource

diff = guards.command_diff  # the same on every system: guards and notify decide


def script(desired: HostResource[CommandResource], action: Action, fields: list[FieldChange]) -> str:
    res = desired.res
    run = f"{env_prefix(desired)}sh -c {q(res.run)} </dev/null"
    if res.unless is not None and not desired.reviewed:  # the guard the plan did not run: checked now, first
        return f"if ({env_prefix(desired)}sh -c {q(res.unless)}) </dev/null >/dev/null 2>&1; then :; else {run}; fi"
    return run


def env_prefix(desired: HostResource) -> str:
    """Commands see the host's root as $RECON_ROOT ('' when none) and start in it."""
    root = desired.host.root or ""
    return f"cd {q(root or '/')} && RECON_ROOT={q(root)} "


def undo(desired: HostResource, action: Action, fields: list[FieldChange]) -> str:
    return ":"  # what a command did cannot be known, so it cannot be undone


def clean(desired: HostResource, action: Action) -> str:
    return ":"
