"""The desired state of one host resource, as the host provider plans and applies it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from providers.secrets import keyed
from specs.hostgroup import SshSettings, WinrmSettings
from specs.hoststate import AnyResource

R = TypeVar("R", bound=AnyResource, covariant=True)
INLINE_MAX = 1 << 20  # content up to this size travels inside the change script; larger is streamed (Payload)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Payload:
    """The bytes a file or an installer must hold, by digest and size: held in memory when small (`data`), else
    a local file (`path`) read in chunks when it is sent, so memory does not grow with the file (a 1 GB file
    costs a chunk at a time, whatever the number of hosts)."""

    sha256: str
    size: int
    data: bytes | None = None
    path: str | None = None

    @classmethod
    def of_bytes(cls, data: bytes) -> Payload:
        return cls(hashlib.sha256(data).hexdigest(), len(data), data=data)

    @classmethod
    def of_file(cls, path: Path) -> Payload:
        """A source file's payload, hashed once per run for every host and resource that sends it."""
        import os

        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
        found = _PAYLOADS.get(key)
        if found is None:
            if st.st_size <= INLINE_MAX:
                found = cls.of_bytes(Path(path).read_bytes())
            else:
                h = hashlib.sha256()
                size = 0
                with open(path, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                found = cls(h.hexdigest(), size, path=key[0])
            _PAYLOADS[key] = found
        return found

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The bytes, a piece at a time; a streamed file that changed since it was hashed is an error (what was
        planned is what is sent)."""
        if self.data is not None:
            for n in range(0, len(self.data), size):
                yield self.data[n:n + size]
            return
        assert self.path is not None
        h = hashlib.sha256()
        with open(self.path, "rb") as fh:
            while chunk := fh.read(size):
                h.update(chunk)
                yield chunk
        if h.hexdigest() != self.sha256:
            from specs.errors import TransportError

            raise TransportError(f"{self.path} changed since it was planned (its sha256 is no longer "
                                 f"{self.sha256[:12]}); re-plan")


_PAYLOADS: dict[tuple[str, int, int, int], Payload] = {}


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
    content: Payload | None = None  # files and installers: the bytes they must hold
    notified_by: tuple[str, ...] = ()  # commands and services: keys of the resources that notify it
    rollback: bool = True  # undo this step when a later step on the host fails
    reviewed: bool = True  # False: the change under review wrote it; its command guard is not run by a plan

    @property
    def path(self) -> str:
        """Where the resource lives on the host (below the host's root, if it has one)."""
        path = getattr(self.res, "path", None) or getattr(self.res, "creates", None) or ""
        return host_path(self.host, path)

    def digest(self) -> str:
        data: dict[str, Any] = self.res.model_dump(exclude={"content"})
        data["root"] = self.host.root
        if self.content is not None:
            digest = self.content.sha256
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
