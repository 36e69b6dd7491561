"""Locks: one apply at a time per target (a host group, a bundle repository), across processes.

A lock is an flock(2) on `<state dir>/locks/<key>.lock`, whose content names the holder (user,
host, pid, plan id, since). The kernel drops the flock when the holder dies, however it dies, so
a lock is never left held by a dead process; what a dead holder leaves is its record, which
`recon lock break` removes after checking that nobody holds the lock. Plans take no locks.
Locks work between processes on one machine (or a filesystem with working flock); applies from
several machines need a shared state directory on such a filesystem.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from specs.errors import ReconError


class LockError(ReconError):
    """A lock could not be had in time; the message names its holder."""


def _file(state_dir: Path, key: str) -> Path:
    return state_dir / "locks" / (re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".lock")


def holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "an unknown holder"
    plan = f" plan {info['plan_id']}" if info.get("plan_id") else ""
    return (f"{info.get('user', '?')}@{info.get('host', '?')} (pid {info.get('pid', '?')}), applying{plan} "
            f"since {info.get('since', '?')}")


def _read(fh: TextIO) -> dict[str, Any]:
    fh.seek(0)
    try:
        data = json.loads(fh.read() or "{}")
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


@contextlib.contextmanager
def hold(state_dir: Path, keys: Sequence[str], holder: dict[str, Any], timeout: float,
         waiting: Callable[[str, str], None] | None = None) -> Iterator[None]:
    """Take every lock (in sorted order, so two applies never wait on each other crosswise), or LockError."""
    held: list[TextIO] = []
    try:
        for key in sorted(set(keys)):
            held.append(_take(state_dir, key, holder, timeout, waiting))
        yield
    finally:
        for fh in reversed(held):
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


def _take(state_dir: Path, key: str, holder: dict[str, Any], timeout: float,
          waiting: Callable[[str, str], None] | None) -> TextIO:
    path = _file(state_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while held
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            info = _read(fh)
            if time.monotonic() >= deadline:
                fh.close()
                raise LockError(f"{key} is locked by {holder_text(info)}; nothing was applied. Wait and retry, or "
                                "give --lock-timeout 5m to wait") from None
            if not told and waiting is not None:
                waiting(key, holder_text(info))
                told = True
            time.sleep(0.1)
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({**holder, "key": key, "since": datetime.now(UTC).isoformat(timespec="seconds")}))
    fh.flush()
    return fh


def status(state_dir: Path) -> list[dict[str, Any]]:
    """Every lock file: its key, whether it is held now, and the holder it names."""
    out = []
    for path in sorted((state_dir / "locks").glob("*.lock")):
        with open(path, "a+", encoding="utf-8") as fh:
            info = _read(fh)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False
                fcntl.flock(fh, fcntl.LOCK_UN)
            except BlockingIOError:
                held = True
        out.append({"key": info.get("key", path.stem), "file": str(path), "held": held, "holder": info})
    return out


def break_lock(state_dir: Path, key: str) -> dict[str, Any]:
    """Remove a lock's record if nobody holds it; LockError naming the holder if somebody does."""
    path = _file(state_dir, key)
    if not path.exists():
        raise LockError(f"there is no lock {key} in {state_dir / 'locks'}")
    with open(path, "a+", encoding="utf-8") as fh:
        info = _read(fh)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockError(f"{key} is held by a live process: {holder_text(info)}; it was not broken") from None
        path.unlink()
        fcntl.flock(fh, fcntl.LOCK_UN)
    return info


