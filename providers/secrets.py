"""Keyed hashes: what stands in for a secret in plans, the audit log and journals.

A plain SHA-256 of a short secret can be found by trying candidates; an HMAC needs the key too.
The key is RECON_HASH_KEY when set (give CI the same one, so a plan saved there and applied
elsewhere compares equal), else a random key made once per user in the config directory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from specs.errors import UsageError


@lru_cache(maxsize=1)
def hash_key() -> bytes:
    env = os.environ.get("RECON_HASH_KEY")
    if env:
        return env.encode()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")) / "recon"
    path = base / "hash-key"
    why = "it could not be read"
    for _ in range(2):
        try:
            return path.read_bytes()
        except FileNotFoundError:
            try:
                base.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue  # another process made it just now: read that one
            except OSError as exc:
                why = exc.strerror or str(exc)
                break
            key = secrets.token_hex(32).encode()
            with os.fdopen(fd, "wb") as out:
                out.write(key)
            return key
        except OSError as exc:
            why = exc.strerror or str(exc)
            break
    # never a constant key instead: a hash of a short secret under a known key can be reversed by guessing
    raise UsageError(f"no key to hash secrets with: {path} cannot be made ({why}); set RECON_HASH_KEY to a "
                     "long random value (the same on every machine that applies saved plans), or make "
                     f"{base} writable")


def keyed(value: str | bytes) -> str:
    """A short keyed hash, e.g. `hmac:3f2a9c01d4e7`."""
    data = value.encode() if isinstance(value, str) else value
    return "hmac:" + hmac.new(hash_key(), data, hashlib.sha256).hexdigest()[:12]


def masker(secrets: Iterable[tuple[str, str]]) -> Callable[[str], str]:
    """Hides each secret's value in a line of output, as `(secret NAME)` (longest first, so one secret inside
    another cannot leave a piece of it); values under 4 characters are left, as they would mask ordinary text."""
    known = sorted(((name, value) for name, value in secrets if len(value) >= 4), key=lambda nv: -len(nv[1]))

    def mask(text: str) -> str:
        for name, value in known:
            text = text.replace(value, f"(secret {name})")
        return text

    return mask
