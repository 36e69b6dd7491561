"""An OCI image layout directory as a store: the embedded default, no registry needed.

`oci-layout`, `index.json` (tags as `org.opencontainers.image.ref.name` annotations) and
`blobs/sha256/<hex>`, as the OCI image spec and `oras --oci-layout` have them. Every write
goes to a temporary file first and is renamed into place, so an interrupted push leaves no
half-written blob and the index (the tag) moves last, in one rename.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from providers.oras.registry import BLOCK, Progress
from providers.oras.scan import sweep, temporary, write_atomically
from specs.errors import TransportError
from specs.ref import Reference

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
TAG_KEY = "org.opencontainers.image.ref.name"


class LayoutStore:
    def __init__(self, ref: Reference):
        self.ref = ref
        self.root = Path(ref.repository)
        self._swept = False

    def __str__(self) -> str:
        return str(self.ref)

    def _blob(self, digest: str) -> Path:
        algo, _, hexa = digest.partition(":")
        return self.root / "blobs" / algo / hexa

    def _index(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
        return data if isinstance(data, dict) else {"schemaVersion": 2, "manifests": []}

    def resolve(self, reference: str = "") -> str | None:
        ref = reference or self.ref.reference
        if ref.startswith("sha256:"):
            return ref if self._blob(ref).exists() else None
        for m in self._index().get("manifests", []):
            if m.get("annotations", {}).get(TAG_KEY) == ref:
                return str(m["digest"])
        return None

    def manifest(self, reference: str) -> bytes:
        digest = self.resolve(reference)
        if digest is None:
            raise FileNotFoundError(f"{self.root}: no manifest {reference}")
        return self._blob(digest).read_bytes()

    def has_blob(self, digest: str) -> bool:
        return self._blob(digest).exists()

    def put_blob(self, digest: str, size: int, source: Path | bytes, progress: Progress | None = None) -> None:
        dest = self._blob(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not self._swept:  # what killed pushes left: removed by the next push
            self._swept = True
            sweep(dest.parent, ".tmp-")
            sweep(self.root, ".tmp-")
        fd, tmp = temporary(dest.parent, ".tmp-")
        h = hashlib.sha256()
        try:
            with os.fdopen(os.dup(fd), "wb") as out:  # fd stays open: the temporary stays locked until renamed
                if isinstance(source, bytes):
                    out.write(source)
                    h.update(source)
                else:
                    with source.open("rb") as fh:
                        while chunk := fh.read(BLOCK):
                            out.write(chunk)
                            h.update(chunk)
                            if progress:
                                progress(len(chunk))
            if "sha256:" + h.hexdigest() != digest:
                what = "a blob" if isinstance(source, bytes) else str(source)
                raise TransportError(f"{what} changed while it was being pushed (digest no longer {digest}); re-plan")
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            os.close(fd)

    def get_blob(self, digest: str) -> Iterator[bytes]:
        try:
            fh = self._blob(digest).open("rb")
        except FileNotFoundError:
            raise FileNotFoundError(digest) from None
        with fh:
            while chunk := fh.read(BLOCK):
                yield chunk

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if not self.has_blob(digest):
            self.put_blob(digest, len(body), body)
        if reference.startswith("sha256:"):
            return digest
        with self._locked():
            index = self._index()
            kept = [m for m in index.get("manifests", []) if m.get("annotations", {}).get(TAG_KEY) != reference]
            kept.append({"mediaType": media_type, "digest": digest, "size": len(body),
                         "annotations": {TAG_KEY: reference}})
            index["manifests"] = kept
            (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            write_atomically(self.root / "index.json", json.dumps(index, indent=1).encode())
        return digest

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".recon-lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def close(self) -> None:
        return None
