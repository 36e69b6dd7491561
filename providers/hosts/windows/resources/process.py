"""Processes on Windows that must not run (e.g. a program holding a file): stopped; cannot be undone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.contract import Action, Change, FieldChange
from providers.hosts.model import HostResource
from providers.hosts.windows.powershell import call
from specs.hoststate import ProcessResource


def fact(i: int, d: HostResource[ProcessResource]) -> str:
    return call("Recon-ProcessFact", i, d.res.name)


def diff(d: HostResource[ProcessResource], live: dict[str, Any],
         changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
    res = d.res
    count = int(live.get("count", 0))
    if count:
        return "update", f"{count} {res.name} processes run", [FieldChange("processes", count, 0)]
    return "noop", f"no {res.name} process runs", []


def steps(i: int, d: HostResource[ProcessResource], change: Change, chunk: int) -> list[str]:
    return [call("Recon-StopProcess", i, d.res.name, d.res.timeout)]


def undo(i: int, d: HostResource, change: Change) -> list[str]:
    return []


def clean(d: HostResource) -> list[str]:
    return []
