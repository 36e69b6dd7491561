"""OCI references, parsed once into a value object with a clear error naming the expected format.

Two forms:
- `host[:port]/repo/path[:tag|@sha256:…]`: a registry (plain HTTP for loopback hosts, HTTPS otherwise)
- `oci-layout:PATH[:tag|@sha256:…]`: an OCI image layout directory on disk
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from specs.errors import UsageError

FORMAT = "host[:port]/repository[:tag|@sha256:digest] or oci-layout:PATH[:tag]"
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port], or "" for an OCI layout
    repository: str  # repository path, or the layout directory
    tag: str = ""
    digest: str = ""

    @property
    def is_layout(self) -> bool:
        return not self.registry

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag

    @property
    def address(self) -> tuple[str, int | None]:
        """The registry's host (an IPv6 address without its brackets) and port (None: the scheme's)."""
        if self.registry.startswith("["):  # [::1]:5000
            host, _, rest = self.registry[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = self.registry.partition(":")
        return host, int(port) if port.isdigit() else None

    @property
    def plain_http(self) -> bool:
        host = self.address[0]
        return host in LOOPBACK or host.startswith("127.")

    def with_base(self, base: Path) -> Reference:
        """A layout path made absolute against a base directory (a spec file's directory)."""
        if not self.is_layout or Path(self.repository).is_absolute():
            return self
        return Reference("", str((base / self.repository).resolve()), self.tag, self.digest)

    def __str__(self) -> str:
        where = f"oci-layout:{self.repository}" if self.is_layout else f"{self.registry}/{self.repository}"
        return where + (f"@{self.digest}" if self.digest else f":{self.tag}" if self.tag else "")


def parse(text: str, default_tag: str = "latest") -> Reference:
    """A Reference, or UsageError saying what is wrong and the expected format."""
    raw = text.strip()
    if not raw:
        raise UsageError(f"an empty OCI reference; expected {FORMAT}")
    digest = ""
    if "@" in raw:
        raw, _, digest = raw.partition("@")
        if not _DIGEST.match(digest):
            raise UsageError(f"{text!r}: digest {digest!r} is not sha256:<64 hex digits>")
    if raw.startswith("oci-layout:"):
        path = raw.removeprefix("oci-layout:")
        tag = ""
        head, sep, last = path.rpartition(":")
        if sep and "/" not in last and _TAG.match(last):
            path, tag = head, last
        if not path:
            raise UsageError(f"{text!r}: no layout directory; expected oci-layout:PATH[:tag]")
        return Reference("", path, tag or ("" if digest else default_tag), digest)
    host, slash, rest = raw.partition("/")
    if not slash or not rest or not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(f"{text!r} names no registry host; expected {FORMAT} (e.g. 127.0.0.1:5000/models/churn:v1)")
    repo, tag = rest, ""
    head, sep, last = rest.rpartition(":")
    if sep and "/" not in last:
        repo, tag = head, last
        if not _TAG.match(tag):
            raise UsageError(f"{text!r}: tag {tag!r} is not valid (letters, digits, '.', '_', '-'; at most 128)")
    if not _REPO.match(repo):
        raise UsageError(f"{text!r}: repository {repo!r} is not valid (lower-case letters, digits, '.', '_', '-', '/')")
    return Reference(host, repo, tag or ("" if digest else default_tag), digest)
