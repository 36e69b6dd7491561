"""Locks: one apply at a time per target (a host, a bundle repository, a Model on an engine or a
namespace), keyed by what is changed, not by where recon runs, and shared as the state backend is.

- sqlite backend (one machine): an flock(2) on `<runtime dir>/locks/<key>.lock` (the user's runtime
  directory, so every working directory and state directory of this user on this machine shares
  them); the file names its holder. The kernel drops the flock when the holder dies, however it
  dies; the holder removes its file when it lets go (re-checking the inode, so a waiter never holds
  a removed file), so what a killed holder leaves is its record, which `recon lock break` removes.
- postgres backend (every runner): a row per key with its holder and a lease, renewed every third of
  the lease while the apply runs; a holder that dies stops renewing and its lease expires. A runner
  that cannot renew (the connection broke, or someone broke the lock) calls `on_lost`: the caller
  starts no new step.
Plans take no locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from reconciler.audit import ensure_schema
from reconciler.state import Backend, guarded
from specs.errors import ReconError

POLL = 0.05  # seconds between tries of a lock another apply holds (a waiter's cost: one try)
Waiting = Callable[[str, str], None]  # (key, holder) when another apply holds it and we wait


class LockError(ReconError):
    """A lock could not be had in time; the message names its holder."""


def holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "an unknown holder"
    plan = f" plan {info['plan_id']}" if info.get("plan_id") else ""
    ci = f", CI run {info['ci_run']}" if info.get("ci_run") else ""
    return (f"{info.get('user', '?')}@{info.get('host', '?')} (pid {info.get('pid', '?')}{ci}), applying{plan} "
            f"since {info.get('since', '?')}")


def _refused(key: str, info: dict[str, Any]) -> LockError:
    return LockError(f"{key} is locked by {holder_text(info)}; nothing was applied. Wait and retry, or give "
                     "--lock-timeout 5m to wait")


@contextlib.contextmanager
def hold(b: Backend, keys: Sequence[str], holder: dict[str, Any], timeout: float,
         waiting: Waiting | None = None, on_lost: Callable[[str], None] | None = None) -> Iterator[None]:
    """Take every lock (in sorted order, so two applies never wait on each other crosswise), or LockError."""
    record = {**holder, "since": datetime.now(UTC).isoformat(timespec="seconds")}
    if b.kind == "postgres":
        with _Leases(b, sorted(set(keys)), record, timeout, waiting, on_lost):
            yield
        return
    held: list[tuple[Path, TextIO]] = []
    try:
        for key in sorted(set(keys)):
            held.append(_take(key, record, timeout, waiting))
        yield
    finally:
        for path, fh in reversed(held):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # while still held: nobody can take the removed file (see _take)
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


def status(b: Backend) -> list[dict[str, Any]]:
    """Every lock: its key, whether it is held now, and the holder it names."""
    if b.kind == "postgres":
        conn = b.connect()
        try:
            with guarded(b, "listing locks"):
                ensure_schema(conn)
                rows = conn.execute("SELECT key, holder, expires > now(), expires FROM locks ORDER BY key").fetchall()
        finally:
            conn.close()
        return [{"key": key, "held": bool(live), "holder": json.loads(info), "expires": str(expires)}
                for key, info, live, expires in rows]
    out = []
    for path in sorted(_dir().glob("*.lock")):
        with contextlib.suppress(FileNotFoundError), open(path, "r+", encoding="utf-8") as fh:
            info = _read(fh)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False
                fcntl.flock(fh, fcntl.LOCK_UN)
            except BlockingIOError:
                held = True
            out.append({"key": info.get("key", path.stem), "file": str(path), "held": held, "holder": info})
    return out


def break_lock(b: Backend, key: str) -> dict[str, Any]:
    """Remove a lock's record if nobody holds it; LockError naming the holder if somebody does."""
    if b.kind == "postgres":
        conn = b.connect()
        try:
            with guarded(b, "breaking a lock"):
                ensure_schema(conn)
                row = conn.execute("SELECT holder, expires > now() FROM locks WHERE key = %s", (key,)).fetchone()
                if row is None:
                    raise LockError(f"there is no lock {key} in {b.where}")
                if row[1]:
                    raise LockError(f"{key} is held by a live apply: {holder_text(json.loads(row[0]))} (its lease is "
                                    "renewed); it was not broken")
                conn.execute("DELETE FROM locks WHERE key = %s AND expires <= now()", (key,))
        finally:
            conn.close()
        return dict(json.loads(row[0]))
    path = _file(key)
    if not path.exists():
        raise LockError(f"there is no lock {key} in {_dir()}")
    with open(path, "r+", encoding="utf-8") as fh:
        info = _read(fh)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockError(f"{key} is held by a live process: {holder_text(info)}; it was not broken") from None
        path.unlink()
        fcntl.flock(fh, fcntl.LOCK_UN)
    return info


# -- flock files (sqlite backend) --

def _dir() -> Path:
    """The user's lock directory on this machine (RECON_LOCK_DIR for a shared filesystem with flock)."""
    if os.environ.get("RECON_LOCK_DIR"):
        return Path(os.environ["RECON_LOCK_DIR"])
    from providers.rundir import runtime_dir

    try:
        return runtime_dir() / "locks"
    except OSError as exc:  # not this user's alone, or not to be made
        raise LockError(f"no directory for locks: {exc}; set RECON_LOCK_DIR to a directory only you may "
                        "write, or use the postgres state backend") from None


def _file(key: str) -> Path:
    return _dir() / (re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".lock")


def _read(fh: TextIO) -> dict[str, Any]:
    fh.seek(0)
    try:
        data = json.loads(fh.read() or "{}")
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def _take(key: str, record: dict[str, Any], timeout: float, waiting: Waiting | None) -> tuple[Path, TextIO]:
    path = _file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    told = False
    while True:
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while held
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read(fh)
            fh.close()
            if time.monotonic() >= deadline:
                raise _refused(key, info) from None
            if not told and waiting is not None:
                waiting(key, holder_text(info))
                told = True
            time.sleep(POLL)
            continue
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # its holder removed it as we took it: take the file that is there now
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({**record, "key": key}))
    fh.flush()
    return path, fh


# -- leases (postgres backend) --

class _Leases:
    def __init__(self, b: Backend, keys: list[str], record: dict[str, Any], timeout: float,
                 waiting: Waiting | None, on_lost: Callable[[str], None] | None) -> None:
        self.b, self.keys, self.timeout, self.waiting, self.on_lost = b, keys, timeout, waiting, on_lost
        self.token = uuid.uuid4().hex
        self.record = record
        self.stop = threading.Event()
        self.conn: Any = None
        self.renewer: threading.Thread | None = None

    def __enter__(self) -> None:
        self.conn = self.b.connect()
        try:
            with guarded(self.b, "taking locks"):
                ensure_schema(self.conn)
                for key in self.keys:
                    self._take(key)
        except BaseException:
            self._release()
            raise
        self.renewer = threading.Thread(target=self._renew, name="recon-lease", daemon=True)
        self.renewer.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.renewer is not None:
            self.renewer.join(timeout=self.b.lease)
        self._release()

    def _take(self, key: str) -> None:
        deadline = time.monotonic() + self.timeout
        told = False
        holder = json.dumps({**self.record, "key": key})
        while True:
            got = self.conn.execute(
                "INSERT INTO locks (key, token, holder, since, expires) VALUES (%s, %s, %s, now(), "
                "now() + make_interval(secs => %s)) ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, "
                "holder = EXCLUDED.holder, since = EXCLUDED.since, expires = EXCLUDED.expires "
                "WHERE locks.expires <= now() RETURNING key", (key, self.token, holder, self.b.lease)).fetchone()
            if got is not None:
                return
            row = self.conn.execute("SELECT holder FROM locks WHERE key = %s", (key,)).fetchone()
            info = json.loads(row[0]) if row else {}
            if time.monotonic() >= deadline:
                raise _refused(key, info)
            if not told and self.waiting is not None:
                self.waiting(key, holder_text(info))
                told = True
            time.sleep(POLL)

    def _renew(self) -> None:
        while not self.stop.wait(self.b.lease / 3):
            try:
                with guarded(self.b, "renewing locks"):
                    renewed = self.conn.execute(
                        "UPDATE locks SET expires = now() + make_interval(secs => %s) WHERE token = %s "
                        "RETURNING key", (self.b.lease, self.token)).fetchall()
            except ReconError as exc:
                self._lost(str(exc))
                return
            if len(renewed) < len(self.keys):
                gone = sorted(set(self.keys) - {k for (k,) in renewed})
                self._lost(f"the locks {', '.join(gone)} were taken away (broken, or expired)")
                return

    def _lost(self, why: str) -> None:
        if self.on_lost is not None:
            self.on_lost(why)

    def _release(self) -> None:
        if self.conn is None:
            return
        for attempt in range(2):  # the connection may be the one that broke: then once more on a new one
            try:
                if attempt:
                    self.conn = self.b.connect()
                self.conn.execute("DELETE FROM locks WHERE token = %s", (self.token,))
                break
            except Exception:  # a lease not released expires on its own
                continue
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = None
