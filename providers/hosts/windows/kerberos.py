"""Kerberos tickets for WinRM, as Ansible's "managed kinit" gets them.

With `transport: kerberos` and a `password`, recon runs `kinit` (MIT's, Debian's krb5-user) once per
principal and run, the password on its standard input, into a credential cache of its own: a DIR
collection in a private temporary directory, removed when the run ends, which KRB5CCNAME points this
process at, so pywinrm's Kerberos client (pykerberos) finds the ticket of each group's principal in
it. Without a password, the user's own credential cache is used (run `kinit` first, or let a
domain-joined machine's login provide it).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

from specs.errors import TransportError

_lock = threading.Lock()
_caches: dict[tuple[str, str], str] = {}
_collection: list[str] = []


def ensure_ticket(principal: str, password: str, where: str) -> None:
    """A ticket-granting ticket for `principal` in this run's credential cache (kinit, once)."""
    key = (principal, hashlib.sha256(password.encode()).hexdigest())
    with _lock:
        if key in _caches:
            return
        kinit = shutil.which("kinit")
        if kinit is None:
            raise TransportError(f"{where}: transport kerberos with a password needs MIT's kinit (Debian and "
                                 "Ubuntu: apt install krb5-user); or run kinit yourself and leave out the password")
        if not _collection:
            base = tempfile.mkdtemp(prefix="recon-krb5-")  # mode 0700
            atexit.register(shutil.rmtree, base, True)
            _collection.append(base)
            os.environ["KRB5CCNAME"] = f"DIR:{base}"
        cache = f"DIR::{_collection[0]}/tkt{len(_caches)}"
        try:
            done = subprocess.run([kinit, "-c", cache, principal], input=password + "\n", capture_output=True,
                                  text=True, timeout=60, check=False, env={**os.environ, "LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            raise TransportError(f"{where}: kinit {principal} got no answer from the KDC in 60 s",
                                 transient=True) from None
        if done.returncode != 0:
            said = " ".join((done.stderr or done.stdout).replace(password, "***").split())
            raise TransportError(f"{where}: kinit {principal} failed: {_reason(said)}; check winrm.user (as "
                                 "user@REALM) and the password it refers to, and the realm in krb5.conf")
        _caches[key] = cache


def _reason(said: str) -> str:
    """kinit's message without its prompt ("Password for x@R: kinit: ... while getting initial credentials")."""
    if "kinit:" in said:
        said = said[said.index("kinit:") + len("kinit:"):].strip()
    return said or "no reason given"
