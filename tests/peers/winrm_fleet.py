"""Windows test hosts: WinRM peers (tests/peers/winrm_host.py), each in a network namespace of its own.

The namespaces are made as for the SSH fleet (tests/peers/fleet.py `network`): a control namespace
with no route out, where recon runs (`exec_prefix`), and host i at 10.232.0.<10+i>, serving WinRM on
HTTPS port 5986 with a certificate from a CA made here (its file is `ca`, for winrm.caFile) and
Basic authentication (user `Administrator`, password `password`), NTLM, and Kerberos with tickets from
a real KDC in the control namespace (tests/peers/kdc.py; the hosts are also `win<i>.recon.test`
there, and the tests give recon the fleet's `kerberos_env`). Each host's sandbox (`root`) holds
its files (`C/…`), its services and processes (`state.json`) and its request log (`requests.log`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import kdc as kdcmod
from tests.peers.fleet import _run, network
from tests.peers.ps_emulator import Sandbox

SUBNET = "10.232.0"
USER, PASSWORD = "Administrator", "password"
PORT = 5986


@dataclass
class WinHost:
    name: str
    address: str
    netns: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sandbox(self) -> Sandbox:
        return Sandbox(self.root)

    def requests(self) -> list[str]:
        log = self.root / "requests.log"
        return log.read_text().split() if log.exists() else []


@dataclass
class WinFleet:
    prefix: str
    base: Path
    hosts: list[WinHost] = field(default_factory=list)
    kdc: kdcmod.Kdc | None = None

    @property
    def kerberos_env(self) -> dict[str, str]:
        assert self.kdc is not None
        return self.kdc.env

    @property
    def ca(self) -> Path:
        return self.base / "ca.pem"

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", f"{self.prefix}-ctl"]

    def stop(self) -> None:
        for h in self.hosts:
            if h.proc is not None and h.proc.poll() is None:
                h.proc.kill()
                h.proc.wait(timeout=10)
            _run(["ip", "netns", "del", h.netns], check=False)
        if self.kdc is not None:
            self.kdc.stop()
        _run(["ip", "netns", "del", f"{self.prefix}-ctl"], check=False)
        shutil.rmtree(Path("/etc/netns") / f"{self.prefix}-ctl", ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _certificates(base: Path, addresses: list[str]) -> None:
    """A CA, and one server certificate for every host address and name (subject alternative names)."""
    ca_key, ca = base / "ca.key", base / "ca.pem"
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=recon test CA",
          "-keyout", str(ca_key), "-out", str(ca)])
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=winrm", "-keyout",
          str(base / "host.key"), "-out", str(base / "host.csr")])
    names = [f"DNS:win{i + 1}.{kdcmod.DOMAIN}" for i in range(len(addresses))]
    (base / "san.ext").write_text("subjectAltName=" + ",".join([f"IP:{a}" for a in addresses] + names) + "\n")
    _run(["openssl", "x509", "-req", "-in", str(base / "host.csr"), "-CA", str(ca), "-CAkey", str(ca_key),
          "-CAcreateserial", "-days", "2", "-extfile", str(base / "san.ext"), "-out", str(base / "host.pem")])


def start(count: int, prefix: str | None = None) -> WinFleet:
    for tool in ("ip", "openssl"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"the WinRM test hosts need {tool}: run scripts/setup")
    if os.geteuid() != 0:
        raise RuntimeError("the WinRM test hosts need root (network namespaces)")
    prefix = prefix or f"rw{os.getpid() % 100000}"
    base = Path(tempfile.mkdtemp(prefix="recon-winrm-"))
    fleet = WinFleet(prefix, base)
    try:
        spaces = network(prefix, count, SUBNET)
        names = Path("/etc/netns") / f"{prefix}-ctl"  # `ip netns exec` mounts its files over /etc
        names.mkdir(parents=True, exist_ok=True)
        (names / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
            f"{a} win{i + 1}.{kdcmod.DOMAIN} win{i + 1}\n" for i, (_, a) in enumerate(spaces)))
        _certificates(base, [a for _, a in spaces])
        fleet.kdc = kdcmod.start(fleet.exec_prefix, [f"win{i + 1}" for i in range(count)])
        peer_env = {**os.environ, "KRB5_KTNAME": str(fleet.kdc.keytab), **fleet.kdc.env}
        script = Path(__file__).with_name("winrm_host.py")
        for i, (netns, address) in enumerate(spaces):
            host = WinHost(f"win{i + 1}", address, netns, base / f"win{i + 1}")
            (host.root / "C").mkdir(parents=True)
            fleet.hosts.append(host)
            host.proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, str(script), address, str(PORT), str(host.root),
                 USER, PASSWORD, str(base / "host.pem"), str(base / "host.key")], env=peer_env,
                stdout=subprocess.PIPE, stderr=(host.root / "peer.log").open("wb"), start_new_session=True)
        for h in fleet.hosts:
            assert h.proc is not None and h.proc.stdout is not None
            deadline = time.monotonic() + 30
            line = h.proc.stdout.readline()
            if line.strip() != b"ready" or time.monotonic() > deadline:
                raise RuntimeError(f"{h.name}: the WinRM peer did not start: "
                                   f"{(h.root / 'peer.log').read_text()[-2000:]}")
    except BaseException:
        fleet.stop()
        raise
    return fleet
