"""The content-addressed blob cache, and materializing a bundle from it with hard links.

- `blobs/sha256/<hex>`: read-only files named by their digest, each verified while it was
  downloaded (size and sha256) and renamed into place only then; a blob in the cache is whole.
- Two processes pulling the same blob: a lock file per digest makes the second wait for the first
  and then find the blob there, instead of downloading it twice.
- Materialized files are hard links to the cache (read-only, so an edit in place cannot corrupt
  the cache without `chmod` first; `recon bundle verify` finds that anyway). Where a hard link is
  impossible (another filesystem), the file is copied.
- Every cached blob has the modification time 1 s after the epoch (as the Nix store does), set
  once it was verified. Root writes into read-only files, and a write through a hard-linked copy
  changes the cache's blob: any write sets the time to now, so a blob whose time is not the mark
  is hashed again before it is handed out, and dropped when it no longer has its digest. The cost
  is one stat per blob; the price is that materialized files show that date.
- Temporaries are locked while written; those a killed pull left are removed by the next one.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from providers.oras.bundle import Entry, ManifestError
from providers.oras.scan import cache_dir, sha256_file, sweep, temporary
from specs.errors import TransportError

MARK_NS = 1_000_000_000  # the modification time of a verified blob: 1970-01-01T00:00:01Z


def _marked(st: os.stat_result) -> bool:
    return st.st_mtime_ns == MARK_NS and not st.st_mode & 0o222


def _mark(path: str | Path, mode: int) -> None:
    os.utime(path, ns=(MARK_NS, MARK_NS))
    os.chmod(path, mode)


class BlobCache:
    def __init__(self, root: Path | None = None):
        self.root = root or cache_dir()
        self._swept = False

    def path(self, digest: str, mode: int = 0o644) -> Path:
        hexa = digest.partition(":")[2]
        return self.root / "blobs" / "sha256" / (hexa + (".x" if mode == 0o755 else ""))

    def has(self, digest: str, size: int) -> bool:
        """Whether the cache holds this blob whole. A blob is trusted while it is read-only, of the right size
        and with the mark's time; one written since (the time moved) is hashed again, and dropped if bad."""
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if st.st_size == size and _marked(st):
            return True
        if st.st_size == size and sha256_file(path) == digest:
            _mark(path, 0o444)
            return True
        path.unlink()
        self.path(digest, 0o755).unlink(missing_ok=True)
        return False

    @contextmanager
    def _lock(self, digest: str) -> Iterator[None]:
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / digest.partition(":")[2], "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def fetch(self, digest: str, size: int, chunks: Callable[[], Iterable[bytes]],
              progress: Callable[[int], None] | None = None) -> bool:
        """Put a blob into the cache, verified; False when it was already there (nothing downloaded)."""
        dest = self.path(digest)
        if self.has(digest, size):
            return False
        with self._lock(digest):
            if self.has(digest, size):  # another process got it while we waited
                return False
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not self._swept:
                self._swept = True
                sweep(dest.parent, ".part-")
            fd, tmp = temporary(dest.parent, ".part-")
            try:
                h = hashlib.sha256()
                got = 0
                with os.fdopen(os.dup(fd), "wb") as out:  # fd stays open: the temporary stays locked until renamed
                    for chunk in chunks():
                        h.update(chunk)
                        out.write(chunk)
                        got += len(chunk)
                        if progress:
                            progress(len(chunk))
                actual = "sha256:" + h.hexdigest()
                if actual != digest or got != size:
                    raise TransportError(f"blob {digest} arrived corrupted ({got} bytes, {actual}); not kept")
                _mark(tmp, 0o444)
                os.replace(tmp, dest)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            finally:
                os.close(fd)
        return True

    def executable(self, digest: str) -> Path:
        """The read-only executable twin of a blob (a hard link shares its mode, so it is a copy)."""
        dest = self.path(digest, 0o755)
        if not _sound(dest):
            with self._lock(digest):
                if not _sound(dest):
                    fd, tmp = temporary(dest.parent, ".part-")
                    try:
                        shutil.copyfile(self.path(digest), tmp)
                        _mark(tmp, 0o555)
                        os.replace(tmp, dest)
                    finally:
                        os.close(fd)
        return dest


def _sound(path: Path) -> bool:
    """An executable twin still as made: present, read-only and with the mark's time (else it was written)."""
    try:
        return _marked(path.stat())
    except FileNotFoundError:
        return False


def target_path(root: Path, rel: str) -> Path:
    """Where a bundle file lands, refusing any directory on the way that is a symlink (it could lead out)."""
    parts = rel.split("/")
    current = root
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise ManifestError(f"refused to write {rel}: {current} is a symlink and could lead outside {root}")
    dest = current / parts[-1]
    if dest.is_symlink():
        raise ManifestError(f"refused to write {rel}: {dest} is a symlink and could lead outside {root}")
    return dest


def materialize(cache: BlobCache, entries: Iterable[Entry], root: Path) -> tuple[int, int]:
    """Link each entry from the cache into root; (files written, files already in place). Every path is checked
    before the first file is written: a refused one leaves the directory as it was."""
    root.mkdir(parents=True, exist_ok=True)
    written = same = 0
    planned = [(e, target_path(root, e.path)) for e in entries]
    for e, dest in planned:
        for parent in dest.relative_to(root).parents:
            if parent != Path(".") and (root / parent).exists() and not (root / parent).is_dir():
                raise ManifestError(f"refused to write {e.path}: {root / parent} is a file, not a directory")
        if dest.is_dir():
            raise ManifestError(f"refused to write {e.path}: {dest} is a directory")
    for e, dest in planned:
        src = cache.path(e.digest) if e.mode == 0o644 else cache.executable(e.digest)
        try:
            if os.path.samefile(src, dest):
                same += 1
                continue
        except FileNotFoundError:
            pass
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.recon-tmp"
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o444 if e.mode == 0o644 else 0o555)
        os.replace(tmp, dest)
        written += 1
    return written, same
