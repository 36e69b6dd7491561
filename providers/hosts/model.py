"""The desired state of one host resource, as the host provider plans and applies it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from providers.secrets import keyed
from specs.hostgroup import SshSettings, WinrmSettings
from specs.hoststate import AnyResource

R = TypeVar("R", bound=AnyResource, covariant=True)


@dataclass(frozen=True)
class HostInfo:
    name: str
    connection: str  # local | ssh | winrm
    root: str | None  # local only: a directory standing for '/'
    address: str = ""  # ssh: where to connect
    port: int = 22
    user: str = "root"
    ssh: SshSettings | None = None
    winrm: WinrmSettings | None = None
    base: str = "."  # directory of the HostGroup spec: references are relative to it
    group: str = ""  # the HostGroup's name
    concurrency: int = 20  # the HostGroup's limit of hosts read or changed at once


Facts = dict[str, Any] | None  # the live state of one resource on a host (its facts); None: a path that is absent


@dataclass(frozen=True)
class HostResource(Generic[R]):
    """A resource on one host, typed by its kind of resource (`HostResource[FileResource]`)."""

    res: R
    host: HostInfo
    key: str  # 'type:key' inside the HostState, as notify refers to it
    content: bytes | None = None  # files: the bytes they must hold
    notified_by: tuple[str, ...] = ()  # commands and services: keys of the resources that notify it
    rollback: bool = True  # undo this step when a later step on the host fails

    @property
    def path(self) -> str:
        """Where the resource lives on the host (below the host's root, if it has one)."""
        path = getattr(self.res, "path", None) or getattr(self.res, "creates", None) or ""
        return host_path(self.host, path)

    def digest(self) -> str:
        data: dict[str, Any] = self.res.model_dump(exclude={"content"})
        data["root"] = self.host.root
        if self.content is not None:
            digest = hashlib.sha256(self.content).hexdigest()
            data["sha256"] = keyed(digest) if getattr(self.res, "secret", False) else digest
        data["notified_by"] = list(self.notified_by)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def host_path(host: HostInfo, path: str) -> str:
    if not path or host.root is None:
        return path
    return host.root.rstrip("/") + path


def q(text: str) -> str:
    """Quote one word for sh."""
    return "'" + text.replace("'", "'\"'\"'") + "'"
