"""Real OCI registries for the tests: Debian's docker-registry (CNCF distribution) on 127.0.0.1.

Three shapes: open, htpasswd (basic auth), and token auth with a small token server of our
own (tests/peers/token_server.py) that signs JWTs the registry checks against its certificate.
The registry's access log is kept so tests can count requests (blob PUTs, blob GETs).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from tests.peers import procs

REGISTRY = "/usr/bin/docker-registry"
# one completed request in the registry's log (logrus fields are in alphabetical order)
_REQUEST = re.compile(r'http\.request\.method=(\w+) http\.request\.remoteaddr=\S+ http\.request\.uri="?([^" ]+)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_handed_out: set[int] = set()


def free_block(size: int) -> int:
    """The first of `size` consecutive ports that are free now, for servers that bind them later (containers on
    host networking). Taken below the kernel's ephemeral range (ip_local_port_range), so no client connection of
    this machine is given one of them meanwhile: a port from bind(0) is an ephemeral one and was once taken by
    an outgoing connection before the container that was meant to listen on it started."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, low - size) // 10 * 10
        if base in _handed_out:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", port))
        except OSError:
            continue
        _handed_out.add(base)
        return base
    raise RuntimeError(f"no {size} consecutive free ports between 20000 and {low}")


@dataclass
class Registry:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    users: dict[str, str] = field(default_factory=dict)
    extra: list[object] = field(default_factory=list)  # things to stop with it (a token server)
    address: str = "127.0.0.1"
    cert: Path | None = None  # with tls: the registry's self-signed certificate (a client's CA file)

    @property
    def host(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    def requests(self, method: str, pattern: str = "") -> list[str]:
        """Request lines (`METHOD path`) the registry logged, filtered by method and a regex on the path."""
        return self.since(0, method, pattern)

    def mark(self) -> int:
        """The log's length now: pass to `since` to count only later requests."""
        return self.log.stat().st_size

    def since(self, mark: int, method: str, pattern: str = "") -> list[str]:
        # the registry logs a request just after answering it: wait until the log is still for a moment
        size, still = -1, 0
        while still < 3:
            now = self.log.stat().st_size
            still = still + 1 if now == size else 0
            size = now
            time.sleep(0.03)
        lines = self.log.read_bytes()[mark:].decode(errors="replace").splitlines()
        found = [_REQUEST.search(line) for line in lines if 'msg="response completed' in line]
        return [f"{m[1]} {m[2]}" for m in found if m and m[1] == method and re.search(pattern, m[2])]

    def stop(self) -> None:
        procs.stop(self.proc)
        for thing in self.extra:
            thing.stop()  # type: ignore[attr-defined]


def start(root: Path, auth: str = "none", users: dict[str, str] | None = None, address: str = "127.0.0.1",
          netns: str = "", tls: bool = False) -> Registry:
    """A registry with storage under `root`; auth is none | htpasswd | token. With `netns`, it runs inside that
    network namespace (made by the test) on `address`; with `tls`, it serves HTTPS with a self-signed
    certificate for `address` (Registry.cert)."""
    if not os.path.exists(REGISTRY):
        raise RuntimeError(f"{REGISTRY} is missing: install Debian's docker-registry (scripts/setup does)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port() if not netns else 5000  # a namespace of the test's own has every port free
    users = dict(users or {})
    extra: list[object] = []
    auth_conf = ""
    if auth == "htpasswd":
        lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}" for u, p in users.items()]
        (root / "htpasswd").write_text("\n".join(lines) + "\n")
        auth_conf = f"auth:\n  htpasswd:\n    realm: recon-test\n    path: {root / 'htpasswd'}\n"
    elif auth == "token":
        from tests.peers import token_server

        server = token_server.start(root / "token", users, service="recon-test-registry")
        extra.append(server)
        auth_conf = (
            "auth:\n  token:\n"
            f"    realm: {server.realm}\n    service: recon-test-registry\n"
            f"    issuer: {token_server.ISSUER}\n    rootcertbundle: {server.cert}\n"
        )
    cert = _certificate(root, address) if tls else None
    tls_conf = f"  tls:\n    certificate: {cert}\n    key: {root / 'tls.key'}\n" if cert else ""
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: \"{f'[{address}]' if ':' in address else address}:{port}\"\n" + tls_conf
        + auth_conf
    )
    log = root / "registry.log"
    prefix = ["ip", "netns", "exec", netns] if netns else []
    with log.open("wb") as out:
        proc = subprocess.Popen([*prefix, REGISTRY, "serve", str(root / "config.yml")], stdout=out,
                                stderr=subprocess.STDOUT)
    reg = Registry(root, port, proc, log, users, extra, address, cert)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        if netns:  # not reachable from here: its own word that it listens
            if "listening on" in log.read_text(errors="replace"):
                return reg
            time.sleep(0.05)
            continue
        try:
            with socket.create_connection((address, port), timeout=0.2):
                return reg
        except OSError:
            time.sleep(0.05)
    reg.stop()
    raise RuntimeError(f"docker-registry did not listen on {port}: {log.read_text()[-2000:]}")


def wipe(reg: Registry) -> None:
    reg.stop()
    shutil.rmtree(reg.root, ignore_errors=True)


def _certificate(root: Path, address: str) -> Path:
    """A self-signed certificate (and key, tls.key) for the IP address `address`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (root / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    path = root / "tls.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path
