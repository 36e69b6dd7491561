"""Directories on Windows: made or removed; a directory made is removed again to undo it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.contract import Action, Change, FieldChange
from providers.hosts.model import HostResource
from providers.hosts.windows.powershell import call
from providers.hosts.windows.resources.paths import path_diff
from specs.hoststate import DirectoryResource


def fact(i: int, d: HostResource[DirectoryResource]) -> str:
    return call("Recon-DirFact", i, d.res.path)


def diff(d: HostResource, live: dict[str, Any], changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
    return path_diff(d, live)


def steps(i: int, d: HostResource[DirectoryResource], change: Change, chunk: int) -> list[str]:
    return [call("Recon-Remove", i, d.res.path) if change.action == "delete" else call("Recon-Dir", i, d.res.path)]


def undo(i: int, d: HostResource[DirectoryResource], change: Change) -> list[str]:
    return [call("Recon-Remove", i, d.res.path)] if change.action == "create" else []


def clean(d: HostResource) -> list[str]:
    return []
