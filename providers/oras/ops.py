"""Bundle operations shared by the provider (plan/apply) and `recon bundle …`: read, push, pull, verify."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from providers.oras import bundle, scan
from providers.oras.bundle import Artifact, Entry, Parsed
from providers.oras.cache import BlobCache, materialize
from providers.oras.layout import LayoutStore
from providers.oras.registry import Credentials, Progress, RegistryStore
from specs.errors import TransportError
from specs.ref import Reference

WORKERS = 8  # uploads and downloads at once


class Store(Protocol):
    ref: Reference

    def resolve(self, reference: str = "") -> str | None: ...
    def manifest(self, reference: str) -> bytes: ...
    def has_blob(self, digest: str) -> bool: ...
    def put_blob(self, digest: str, size: int, source: Path | bytes, progress: Progress | None = None) -> None: ...
    def get_blob(self, digest: str) -> object: ...
    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str: ...
    def close(self) -> None: ...


def store_for(ref: Reference, credentials: Credentials | None = None, plain_http: bool | None = None) -> Store:
    return LayoutStore(ref) if ref.is_layout else RegistryStore(ref, credentials, plain_http)


@dataclass(frozen=True)
class Remote:
    digest: str
    parsed: Parsed
    raw: bytes


def read(store: Store, cache: BlobCache | None = None) -> Remote | None:
    """The manifest the reference points to, or None: one HEAD, and a GET only for a manifest not seen before."""
    digest = store.resolve()
    if digest is None:
        return None
    raw = _cached_manifest(cache, digest) if cache else None
    if raw is None:
        raw = store.manifest(digest)
        actual = "sha256:" + hashlib.sha256(raw).hexdigest()
        if actual != digest:
            raise TransportError(f"{store.ref}: the manifest's content ({actual}) does not match its digest {digest}")
        if cache:
            _keep_manifest(cache, digest, raw)
    return Remote(digest, bundle.parse(raw, str(store.ref)), raw)


def _cached_manifest(cache: BlobCache, digest: str) -> bytes | None:
    try:
        raw = (cache.root / "manifests" / digest.partition(":")[2]).read_bytes()
    except OSError:
        return None
    return raw if "sha256:" + hashlib.sha256(raw).hexdigest() == digest else None


def _keep_manifest(cache: BlobCache, digest: str, raw: bytes) -> None:
    with contextlib.suppress(OSError):  # a read-only cache only costs a GET next time
        scan.write_atomically(cache.root / "manifests" / digest.partition(":")[2], raw)


@dataclass
class PushStats:
    uploaded: list[str] = field(default_factory=list)  # digests
    present: int = 0  # blobs the store already had
    bytes: int = 0
    manifest: str = ""


def push(store: Store, source: Path, entries: Sequence[Entry], artifact: Artifact, known: set[str],
         progress: Progress | None = None, tag: str = "") -> PushStats:
    """Upload the blobs the store lacks (HEAD first, in parallel), the config, the manifest by digest,
    and move the tag last. Blobs in `known` (the tag's current manifest has them) are not even HEADed."""
    stats = PushStats()
    by_digest: dict[str, Entry] = {}
    for e in entries:
        by_digest.setdefault(e.digest, e)
    todo = [e for d, e in by_digest.items() if d not in known]
    stats.present += len(by_digest) - len(todo)

    def one(e: Entry) -> tuple[str, int]:
        if store.has_blob(e.digest):
            return "", 0
        store.put_blob(e.digest, e.size, source / e.path, progress)  # the store checks the digest
        return e.digest, e.size

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for digest, size in pool.map(one, sorted(todo, key=lambda e: -e.size)):
            if digest:
                stats.uploaded.append(digest)
                stats.bytes += size
            else:
                stats.present += 1
    if not store.has_blob(artifact.config_digest):
        store.put_blob(artifact.config_digest, len(artifact.config), artifact.config)
    stats.manifest = artifact.digest
    store.put_manifest(artifact.digest, artifact.manifest, bundle.MANIFEST_TYPE)
    store.put_manifest(tag or store.ref.tag, artifact.manifest, bundle.MANIFEST_TYPE)  # the tag moves last
    return stats


@dataclass
class PullStats:
    digest: str
    files: int
    bytes: int
    blobs: int = 0  # distinct blobs
    downloaded: int = 0  # blobs
    downloaded_bytes: int = 0
    written: int = 0
    in_place: int = 0


def read_existing(store: Store, cache: BlobCache | None = None) -> Remote:
    """The manifest of a reference that must exist: an error naming what is missing when it does not."""
    if store.ref.is_layout and not (Path(store.ref.repository) / "index.json").exists():
        raise TransportError(f"{store.ref}: there is no OCI layout at {store.ref.repository}")
    remote = read(store, cache)
    if remote is None:
        raise TransportError(f"{store.ref}: no such tag in {store.ref.registry or 'the layout'}")
    return remote


def pull(store: Store, dest: Path, cache: BlobCache, progress_for: Callable[[int], Progress | None],
         remote: Remote | None = None) -> PullStats:
    """Materialize a bundle in `dest` (its manifest read now, unless the caller has just read it)."""
    remote = remote or read_existing(store, cache)
    entries = remote.parsed.entries
    # every target path is checked before anything is downloaded or written
    for e in entries:
        bundle.safe_path(e.path, str(store.ref))
    unique = {e.digest: e for e in entries}
    missing = [e for d, e in unique.items() if not cache.has(d, e.size)]
    stats = PullStats(remote.digest, len(entries), sum(e.size for e in entries), len(unique))
    progress = progress_for(sum(e.size for e in missing)) if missing else None

    def one(e: Entry) -> tuple[bool, int]:
        got = cache.fetch(e.digest, e.size, lambda: store.get_blob(e.digest), progress)  # type: ignore[arg-type,return-value]
        return got, e.size

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for got, size in pool.map(one, missing):
            if got:
                stats.downloaded += 1
                stats.downloaded_bytes += size
    stats.written, stats.in_place = materialize(cache, entries, dest)
    record = {"ref": str(store.ref), "digest": remote.digest, "manifest": json.loads(remote.raw)}
    (dest / bundle.MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return stats


@dataclass(frozen=True)
class Problem:
    path: str
    what: str  # missing | corrupted | mode | extra
    detail: str = ""


def verify_dir(root: Path, entries: Sequence[Entry]) -> list[Problem]:
    """Re-hash every file (no index: verification trusts nothing) against the entries."""
    problems: list[Problem] = []
    wanted = {e.path: e for e in entries}

    def one(e: Entry) -> Problem | None:
        path = root / e.path
        try:
            st = path.stat()
        except FileNotFoundError:
            return Problem(e.path, "missing")
        actual = scan.sha256_file(path)
        if actual != e.digest or st.st_size != e.size:
            return Problem(e.path, "corrupted", f"expected {e.digest[:19]} ({e.size} bytes), "
                                                f"found {actual[:19]} ({st.st_size} bytes)")
        if bundle.normal_mode(st.st_mode) != e.mode:
            return Problem(e.path, "mode", f"expected {e.mode:04o}, found {bundle.normal_mode(st.st_mode):04o}")
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems.extend(p for p in pool.map(one, entries) if p)
    problems.extend(Problem(rel, "extra") for rel, _ in scan.files(root) if rel not in wanted)
    return sorted(problems, key=lambda p: p.path)


def verify_store(store: Store, entries: Sequence[Entry]) -> list[Problem]:
    """Download and re-hash every blob of a manifest (nothing is written)."""
    def one(e: Entry) -> Problem | None:
        h = hashlib.sha256()
        got = 0
        try:
            for chunk in store.get_blob(e.digest):  # type: ignore[attr-defined]
                h.update(chunk)
                got += len(chunk)
        except FileNotFoundError:
            return Problem(e.path, "missing", f"blob {e.digest[:19]} is not in {store.ref}")
        if "sha256:" + h.hexdigest() != e.digest or got != e.size:
            return Problem(e.path, "corrupted", f"blob {e.digest[:19]} has other content ({got} bytes)")
        return None

    unique = list({e.digest: e for e in entries}.values())
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return sorted((p for p in pool.map(one, unique) if p), key=lambda p: p.path)
