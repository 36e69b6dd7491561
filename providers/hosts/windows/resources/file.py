"""Files on Windows: content checked by sha256 on the host, sent in chunks, written beside and renamed over
the old file, optionally while services are stopped; undone from the backup kept beside it."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

from providers.contract import Action, Change, FieldChange
from providers.hosts.model import HostResource
from providers.hosts.textdiff import shows_text
from providers.hosts.windows.powershell import call
from providers.hosts.windows.resources.paths import path_diff, sha
from providers.textdiff import DIFF_MAX
from specs.hoststate import FileResource


def fact(i: int, d: HostResource[FileResource], diffs: bool = False) -> str:
    """The file's facts; with `diffs`, its old text too when its content differs from the wanted text (in the
    same round trip: the host compares the digests), for the plan to show as a diff."""
    if diffs and shows_text(d) and d.content is not None:
        return call("Recon-FileFact", i, d.res.path, d.content.sha256, DIFF_MAX)
    return call("Recon-FileFact", i, d.res.path)


def diff(d: HostResource, live: dict[str, Any], changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
    return path_diff(d, live)


def steps(i: int, d: HostResource[FileResource], change: Change, chunk: int) -> Iterator[str]:
    """The calls of the step, made as they are sent: a large file is read a chunk at a time."""
    res = d.res
    if change.action == "delete":
        yield call("Recon-Remove", i, res.path)
        return
    yield call("Recon-Begin", res.path)
    if d.content is not None:
        for piece in d.content.chunks(chunk):
            yield call("Recon-Chunk", res.path, base64.b64encode(piece).decode())
    yield call("Recon-PutFile", i, res.path, sha(d), "/".join(res.whileStopped), res.verifySeconds, 120)


def undo(i: int, d: HostResource[FileResource], change: Change) -> list[str]:
    return [call("Recon-UndoFile", i, d.res.path, "/".join(d.res.whileStopped), 120)]


def clean(d: HostResource[FileResource]) -> list[str]:
    """After the change script: the backup kept beside the file goes."""
    return [call("Recon-Clean", d.res.path)]
