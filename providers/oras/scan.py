"""Files of a source directory as bundle entries, hashed once: a digest index like git's.

The index (in the user's cache directory) keeps, per file, size, mtime, ctime and inode with
its sha256; a file whose stat is unchanged is not read again. As in git, an entry written within
two seconds of its file's mtime is not trusted (the file may change again within the clock's
granularity), so a file just written is hashed once more on the next scan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from providers.oras.bundle import MARKER, Entry, normal_mode
from specs.errors import UsageError
from specs.globs import glob_match

SKIP_DIRS = {".git", ".hg", ".svn", ".recon"}
RACY_NS = 2_000_000_000


def cache_dir() -> Path:
    base = os.environ.get("RECON_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "recon")
    return Path(base)


def selected(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(glob_match(p, path) for p in include):
        return False
    return not any(glob_match(p, path) for p in exclude)


def files(source: Path, include: Sequence[str] = (), exclude: Sequence[str] = (),
          what: str = "bundle source") -> list[tuple[str, os.stat_result]]:
    """(relative path, stat) of the selected regular files, symlinks to files inside the source followed (a link
    out of it is an error); sorted by path."""
    if not source.is_dir():
        raise UsageError(f"{what} {source} is not a directory")
    out: list[tuple[str, os.stat_result]] = []
    real_source = os.path.realpath(source)
    stack = [("", str(source))]
    while stack:
        rel, absdir = stack.pop()
        with os.scandir(absdir) as it:
            for de in it:
                relpath = f"{rel}{de.name}"
                if de.is_dir(follow_symlinks=False):
                    if de.name not in SKIP_DIRS:
                        stack.append((relpath + "/", de.path))
                    continue
                if rel == "" and de.name == MARKER:
                    continue
                try:
                    st = de.stat(follow_symlinks=True)
                except FileNotFoundError:
                    raise UsageError(f"{what}: {de.path} is a broken symlink; remove it or exclude it") from None
                if de.is_symlink() and not os.path.isfile(de.path):
                    raise UsageError(f"{what}: {de.path} is a symlink to a directory; exclude it or copy it")
                if de.is_symlink() and not os.path.realpath(de.path).startswith(real_source.rstrip("/") + "/"):
                    # a link out of the source would publish a file of this machine (ln -s /etc/shadow model/x)
                    raise UsageError(f"{what}: {de.path} is a symlink to {os.path.realpath(de.path)}, outside the "
                                     "source directory; copy the file in, or remove or exclude the link")
                if selected(relpath, include, exclude):
                    out.append((relpath, st))
    out.sort()
    return out


class DigestIndex:
    """sha256 of files by stat, kept between runs in the cache directory."""

    def __init__(self, source: Path):
        key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:20]
        self.path = cache_dir() / "index" / f"{key}.json"
        self.source = source
        try:
            self.known: dict[str, list[int | str]] = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            self.known = {}
        self.fresh: dict[str, list[int | str]] = {}

    def digest(self, rel: str, st: os.stat_result) -> str:
        stamp: list[int | str] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        old = self.known.get(rel)
        if old is not None and old[:4] == stamp and isinstance(old[4], str):
            digest = old[4]
        else:
            digest = sha256_file(self.source / rel)
        # trusted next time only if the file had not just been written
        if time.time_ns() - st.st_mtime_ns > RACY_NS:
            self.fresh[rel] = [*stamp, digest]
        return digest

    def save(self) -> None:
        if self.fresh == self.known:
            return
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            write_atomically(self.path, json.dumps(self.fresh, separators=(",", ":")).encode())


def write_atomically(path: Path, data: bytes) -> None:
    """Write beside the file, then rename over it: readers see the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary(path.parent, ".tmp-")
    try:
        with os.fdopen(os.dup(fd), "wb") as out:  # fd stays open: the temporary stays locked until renamed
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def temporary(directory: Path, prefix: str) -> tuple[int, str]:
    """A new temporary file in `directory` (mkstemp), locked (flock) while its descriptor is open: a writer that
    was killed leaves it unlocked, which is how `sweep` tells a leftover from a write in progress."""
    import fcntl

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, tmp


SWEEP_AGE = 60.0  # seconds: a temporary younger than this may be one whose writer has not locked it yet


def sweep(directory: Path, prefix: str) -> int:
    """Remove the temporaries (`temporary`) that a killed writer left in `directory`: those no process holds
    locked, and not made in the last minute (between mkstemp and flock a new one is unlocked). The number
    removed."""
    import fcntl

    removed = 0
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return 0
    for name in names:
        path = directory / name
        try:
            if time.time() - os.lstat(path).st_mtime < SWEEP_AGE:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a write in progress
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def entries(source: Path, include: Sequence[str] = (), exclude: Sequence[str] = (),
            what: str = "bundle source") -> list[Entry]:
    """The bundle entries of a directory; files not in the index are hashed on all cores (hashlib lets go
    of the GIL while it hashes)."""
    index = DigestIndex(source)
    found = files(source, include, exclude, what)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        digests = list(pool.map(lambda item: index.digest(*item), found))
    index.save()
    return [Entry(rel, digest, st.st_size, normal_mode(st.st_mode)) for (rel, st), digest in zip(found, digests,
                                                                                                  strict=True)]
