"""The SSH transport: one paramiko connection per host, one channel (`sh -s`) per script.

Host keys are always checked against a known_hosts file (RejectPolicy). Only failures to reach
a host are transient; a refused key, a wrong password or an unknown host key fail at once.
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from providers.hosts.model import HostInfo, Payload
from providers.hosts.transport import RunResult, Script, whole
from specs.errors import TransportError

# Parsed once per process, not once per host: parsing known_hosts builds a key object for every line, so with a
# connection per host it cost O(hosts²): with 300 hosts one parse took 42-54 ms here, 13-16 s of CPU for one plan
# (bench/known_hosts.py).
_PARSED_LOCK = threading.Lock()
_KNOWN: dict[tuple[str, int, int], Any] = {}  # (path, mtime, size) -> paramiko.HostKeys
_KEYS: dict[str, Any] = {}  # sha256 of the private key's text -> its PKey


def host_keys(paramiko: Any, known: Path) -> Any:
    """The known_hosts file, parsed once while it is unchanged (OSError when it cannot be read)."""
    st = known.stat()
    key = (str(known), st.st_mtime_ns, st.st_size)
    with _PARSED_LOCK:
        found = _KNOWN.get(key)
    if found is None:
        found = paramiko.HostKeys(str(known))
        with _PARSED_LOCK:
            if len(_KNOWN) > 16:
                _KNOWN.clear()
            _KNOWN[key] = found
    return found

class SshTransport:
    def __init__(self, host: HostInfo, secrets: dict[str, str] | None = None) -> None:
        assert host.ssh is not None
        self.host = host
        self.settings = host.ssh
        self.base = Path(host.base)
        self.secrets = secrets  # identity, password, becomePassword as resolved by a client (ssh_agent.py)
        self._client: Any = None
        self._jump: Any = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"{self.host.name} ({self.host.user}@{self.host.address}:{self.host.port})"

    def _connect(self) -> Any:
        import paramiko

        known = self.settings.known_hosts_at(self.base)
        pkey = self._key(paramiko) if self.settings.identity is not None else None
        password = self.secret("password")
        sock = None
        jump = self.settings.jump
        if jump is not None:
            self._jump = self._open(paramiko, known, jump.address, jump.port, jump.user or self.host.user, pkey,
                                    password, None, f"jump host {jump.address}:{jump.port}")
            try:
                sock = self._jump.get_transport().open_channel(
                    "direct-tcpip", (self.host.address, self.host.port), ("127.0.0.1", 0),
                    timeout=self.settings.connectTimeout,
                )
            except (paramiko.SSHException, OSError) as exc:
                raise TransportError(
                    f"{self.where}: the jump host {jump.address} could not reach it: {exc}", transient=True
                ) from None
        return self._open(paramiko, known, self.host.address, self.host.port, self.host.user, pkey, password, sock,
                          self.where)

    def _open(self, paramiko: Any, known: Path, address: str, port: int, user: str, pkey: Any,
              password: str | None, sock: Any, where: str) -> Any:
        """One authenticated connection, host key checked; every failure one sentence with its fix."""
        client = paramiko.SSHClient()
        name = address if port == 22 else f"[{address}]:{port}"
        try:
            entry = host_keys(paramiko, known).lookup(name)
        except OSError as exc:
            raise TransportError(
                f"{self.host.name}: cannot read known_hosts {known}: {exc.strerror}; "
                f"create it with the host keys of the group (ssh-keyscan, after checking the fingerprints)"
            ) from None
        for keytype, key in (entry or {}).items():  # only this host's: the client checks the server's key with them
            client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                address, port=port, username=user, pkey=pkey, password=password, sock=sock,
                timeout=self.settings.connectTimeout, banner_timeout=self.settings.connectTimeout,
                auth_timeout=self.settings.connectTimeout, allow_agent=pkey is None and password is None,
                look_for_keys=pkey is None and password is None,
            )
        except paramiko.BadHostKeyException:
            raise TransportError(
                f"{where}: the host key changed since it was recorded in {known}. This can be an attack, "
                f"or the host was re-installed. If you know it was re-installed, remove the old key "
                f"(ssh-keygen -R {name} -f {known}) and add the new one after checking it"
            ) from None
        except paramiko.AuthenticationException:
            raise TransportError(
                f"{where}: authentication failed: the server refused the key or password for user {user}"
            ) from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise TransportError(
                    f"{where}: the host key is not in {known}; after checking its fingerprint, add it: "
                    f"ssh-keyscan -p {port} {address} >> {known}"
                ) from None
            raise TransportError(f"{where}: SSH failed: {exc}", transient=True) from None
        except (OSError, EOFError) as exc:
            reason = "timed out" if isinstance(exc, socket.timeout) else (getattr(exc, "strerror", None) or str(exc))
            raise TransportError(f"{where}: cannot connect: {reason}", transient=True) from None
        return client

    def _key(self, paramiko: Any) -> Any:
        ref = self.settings.identity
        assert ref is not None
        try:
            text = self.secret("identity") or ""
        except (KeyError, OSError) as exc:
            raise TransportError(f"{self.host.name}: cannot read the identity ({ref.describe()}): {exc}") from None
        digest = hashlib.sha256(text.encode()).hexdigest()
        with _PARSED_LOCK:
            if digest in _KEYS:
                return _KEYS[digest]
        for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                key = cls.from_private_key(io.StringIO(text))
            except (paramiko.SSHException, ValueError):
                continue
            with _PARSED_LOCK:
                _KEYS[digest] = key
            return key
        raise TransportError(
            f"{self.host.name}: the identity ({ref.describe()}) is not an unencrypted Ed25519, ECDSA or RSA "
            "private key in OpenSSH or PEM format"
        )

    def secret(self, name: str) -> str | None:
        """identity, password or becomePassword: from the references of the settings, or as a client gave them."""
        if self.secrets is not None:
            return self.secrets.get(name)
        ref = getattr(self.settings, name)
        return None if ref is None else str(ref.resolve(self.base).get_secret_value())

    def alive(self) -> bool:
        """Connected, and the connection still up (a kept connection may have been dropped meanwhile)."""
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and bool(transport.is_active())

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def run(self, script: Script, on_line: Callable[[bytes], None] | None = None) -> RunResult:
        import paramiko

        client = self.client()
        command, first = self._become("sh -s")
        stdin = first + whole(script).encode()
        try:
            chan = client.get_transport().open_session()
            chan.exec_command(command)
            writer = threading.Thread(target=_feed, args=(chan, stdin), daemon=True)
            writer.start()
            out = bytearray()
            stdout = chan.makefile("rb")
            for line in stdout:
                out += line
                if on_line is not None:
                    on_line(line)
            err = chan.makefile_stderr("rb").read()
            rc = chan.recv_exit_status()
            writer.join(timeout=5)
            chan.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"{self.where}: connection lost: {exc}", transient=True) from None
        if rc == -1:
            raise TransportError(f"{self.where}: connection lost before the script finished", transient=True)
        if self.settings.become and rc != 0 and not out and err.lstrip().startswith(b"sudo:"):
            reason = err.decode("utf-8", "replace").strip().splitlines()[0]
            raise TransportError(
                f"{self.where}: sudo refused ({reason}); give {self.host.user} passwordless sudo, or set "
                "ssh.becomePassword"
            )
        return RunResult(rc, bytes(out), err)

    def _become(self, command: str) -> tuple[str, bytes]:
        """The command as the connection runs it (through sudo with `become`), and what stdin must start with
        (sudo's password line, when one is set)."""
        if not self.settings.become:
            return command, b""
        if self.settings.becomePassword is None:
            return f"sudo -n -- {command}", b""
        secret = (self.secret("becomePassword") or "").strip()
        return f"sudo -S -p '' -- {command}", secret.encode() + b"\n"

    def put(self, payload: Payload, remote: str) -> None:
        self.put_stream(payload.chunks(), remote)

    def put_stream(self, chunks: Iterable[bytes], remote: str) -> None:
        """`put` from chunks: `cat` on the host reads them from the channel, never more than a window at once."""
        import posixpath

        import paramiko

        from providers.hosts.model import q
        from providers.hosts.transport import PUT_SCRIPT

        inner = PUT_SCRIPT.format(parent=q(posixpath.dirname(remote) or "/"), tmp=q(remote))
        command, first = self._become(f"sh -c {q(inner)}")
        try:
            chan = self.client().get_transport().open_session()
            try:
                chan.exec_command(command)
                try:
                    if first:
                        chan.sendall(first)
                    for chunk in chunks:
                        chan.sendall(chunk)
                    chan.shutdown_write()
                except OSError:
                    if not chan.exit_status_ready():
                        raise
                    # the writer on the host gave up (a full disk): its own words say why, below
                err = chan.makefile_stderr("rb").read()
                rc = chan.recv_exit_status()
            finally:
                chan.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"{self.where}: connection lost while sending {remote}: {exc}",
                                 transient=True) from None
        if rc != 0:
            raise TransportError(f"{self.where}: cannot write {remote}: {tail_text(err)}")

    def close(self) -> None:
        with self._lock:
            for client in (self._client, self._jump):
                if client is not None:
                    client.close()
            self._client = self._jump = None


def _feed(chan: Any, data: bytes) -> None:
    """Send the script; if the host goes away meanwhile, the reader reports it."""
    import paramiko

    try:
        chan.sendall(data)
        chan.shutdown_write()
    except (paramiko.SSHException, OSError, EOFError):
        pass



def tail_text(err: bytes) -> str:
    return err.decode("utf-8", "replace").strip()[-300:] or "(no message)"
