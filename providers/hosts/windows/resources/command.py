"""Commands on Windows: PowerShell, guarded by `creates` and `unless` as on POSIX hosts; they cannot be undone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.contract import Action, Change, FieldChange
from providers.hosts import guards
from providers.hosts.model import HostResource
from providers.hosts.windows.powershell import call, encoded
from specs.hoststate import CommandResource


def fact(i: int, d: HostResource[CommandResource]) -> str:
    res = d.res
    unless = encoded(res.unless) if res.unless and d.reviewed else ""  # an unreviewed guard is not run by a plan
    return call("Recon-GuardFact", i, res.creates or "", unless)


def diff(d: HostResource, live: dict[str, Any], changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
    return guards.command_diff(d, live, changed)


def steps(i: int, d: HostResource[CommandResource], change: Change, chunk: int) -> list[str]:
    return [call("Recon-Run", i, encoded(d.res.run))]


def undo(i: int, d: HostResource, change: Change) -> list[str]:
    return []


def clean(d: HostResource) -> list[str]:
    return []
