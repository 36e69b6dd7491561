"""The per-user directory where recon's resident processes (the SSH agent, the resident planner) keep
their sockets: `$XDG_RUNTIME_DIR/recon`, else `/tmp/recon-UID`, mode 0700. Imports nothing of recon,
since the `recon` script reads it before anything else (reconciler/warm.py)."""

from __future__ import annotations

import os
from pathlib import Path


class NotPrivate(OSError):
    """The directory exists, but belongs to someone else or others may enter it."""


def runtime_dir() -> Path:
    """The directory, made if missing; NotPrivate when it is not this user's alone (OSError when it
    cannot be made)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "recon" if runtime else Path(f"/tmp/recon-{os.getuid()}")
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = base.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise NotPrivate(f"{base} is not a directory only you can enter")
    return base


def resident_env(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment a resident process (the SSH agent, the resident planner) starts with: what finding
    programs, files and the locale needs, and `extra` names; never the caller's secrets, which would otherwise
    sit in it for as long as it lives. Each request brings what it needs."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR", "PYTHONPATH", *extra)
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith("LC_")}
