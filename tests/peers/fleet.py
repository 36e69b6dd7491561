"""A fleet of real OpenSSH hosts for tests and benchmarks, each in its own network namespace.

Layout (all created here, all removed by `stop`):
- a control namespace `<prefix>-ctl` with a bridge `br0` at 10.231.0.1/24 and no route out;
  clients (recon under test) run inside it: `fleet.exec_prefix + [command…]`;
- host i in namespace `<prefix>-h<i>`, veth into the bridge, address 10.231.0.<10+i>;
  `sshd -D` runs under `unshare --mount --uts --pid --fork --kill-child` with an overlay root
  (lower `/`, upper on a tmpfs private to the host) and `chroot`, so hosts differ in files
  and processes as real ones do. Root's `.bashrc` inside is Debian's skeleton, so no slow
  shell start-up from this machine leaks into the measurements.

Needs root, iproute2 and openssh-server (installed by scripts/setup).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.231.0"
HOST_SCRIPT = r"""
set -e
D="$1"; NAME="$2"; BASE="$3"
hostname "$NAME"
mount --make-rprivate /
mkdir -p "$D/mnt"
mount -t tmpfs -o size=256m tmpfs "$D/mnt"
mkdir -p "$D/mnt/upper" "$D/mnt/work" "$D/mnt/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$D/mnt/upper,workdir=$D/mnt/work" "$D/mnt/root"
R="$D/mnt/root"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/run/sshd" "$R/$BASE"
mount --bind "$BASE" "$R/$BASE"
cp /etc/skel/.bashrc "$R/root/.bashrc"
rm -f "$R/root/.profile" "$R/root/.bash_profile"
echo "$NAME" > "$R/etc/hostname"
exec chroot "$R" /usr/sbin/sshd -D -e -f "$D/sshd_config"
"""


@dataclass
class Host:
    name: str
    address: str
    netns: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Fleet:
    prefix: str
    base: Path
    hosts: list[Host] = field(default_factory=list)
    key: Path = Path()
    known_hosts: Path = Path()
    subnet: str = SUBNET
    _proxies: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ctl(self) -> str:
        return f"{self.prefix}-ctl"

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ctl]

    def ssh(self, host: Host | int, command: str, check: bool = True, timeout: float = 30) -> str:
        """Run a command on a host with the OpenSSH client, from the control namespace."""
        h = self.hosts[host] if isinstance(host, int) else host
        done = subprocess.run(
            [*self.exec_prefix, "ssh", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{h.address}", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"ssh {h.name} {command!r}: {done.returncode} {done.stderr}")
        return done.stdout

    def add_delay(self, rtt_ms: float, port: int = 2222) -> int:
        """Put a proxy in front of every host's sshd that adds `rtt_ms` of round-trip time; returns its
        port. known_hosts gains the `[address]:port` names, so host keys are still checked."""
        script = Path(__file__).with_name("delay_proxy.py")
        lines = []
        for h in self.hosts:
            self._proxies.append(subprocess.Popen(
                ["ip", "netns", "exec", h.netns, sys.executable, str(script), f"{h.address}:{port}",
                 f"{h.address}:22", str(rtt_ms / 2)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            ))
        for line in self.known_hosts.read_text().splitlines():
            address, rest = line.split(" ", 1)
            lines += [line, f"[{address}]:{port} {rest}"]
        self.known_hosts.write_text("\n".join(lines) + "\n")
        deadline = time.monotonic() + 20
        for h in self.hosts:
            while subprocess.run([*self.exec_prefix, "ssh-keyscan", "-T", "2", "-p", str(port), h.address],
                                 capture_output=True, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the delaying proxy of {h.name} did not come up")
                time.sleep(0.1)
        return port

    def kill(self, host: Host | int) -> None:
        """Take a host down hard: SIGKILL its unshare process; --kill-child ends all in it."""
        h = self.hosts[host] if isinstance(host, int) else host
        if h.proc is not None and h.proc.poll() is None:
            h.proc.send_signal(signal.SIGKILL)
            h.proc.wait(timeout=10)

    def stop(self) -> None:
        for p in self._proxies:
            p.kill()
            p.wait(timeout=10)
        for h in self.hosts:
            self.kill(h)
            _run(["ip", "netns", "del", h.netns], check=False)
        _run(["ip", "netns", "del", self.ctl], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def _run(cmd: list[str], check: bool = True) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def start(count: int, prefix: str | None = None, subnet: str = SUBNET, key: Path | None = None,
          names: str = "host") -> Fleet:
    """Start `count` hosts and wait until each answers SSH. Raises with the reason if it cannot. `subnet`: the
    first three octets of its addresses (fleets side by side, e.g. network zones, take different ones); `key`:
    the private key the hosts let in (default: a new one); `names`: the hosts are `<names>1`, `<names>2`, …"""
    for tool in ("ip", "unshare", "/usr/sbin/sshd", "ssh", "ssh-keygen", "ssh-keyscan"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"the SSH test fleet needs {tool}: run scripts/setup")
    if os.geteuid() != 0:
        raise RuntimeError("the SSH test fleet needs root (network namespaces, mounts)")
    prefix = prefix or f"rc{os.getpid() % 100000}"
    base = Path(tempfile.mkdtemp(prefix="recon-fleet-"))
    base.chmod(0o755)  # sshd reads authorized_keys as the logging-in user, who may not be root
    fleet = Fleet(prefix, base, subnet=subnet)
    if key is not None:
        shutil.copy(key, base / "id_ed25519")
        shutil.copy(key.with_name(key.name + ".pub"), base / "id_ed25519.pub")
    try:
        _setup(fleet, count, names)
    except BaseException:
        fleet.stop()
        raise
    return fleet


PER_NET = 240  # hosts per /24; a larger fleet takes the next /24s, on one /16


def _address(subnet: str, i: int, count: int) -> str:
    if count <= PER_NET:
        return f"{subnet}.{10 + i}"
    a, b, c = subnet.split(".")
    return f"{a}.{b}.{int(c) + i // PER_NET}.{10 + i % PER_NET}"


def network(prefix: str, count: int, subnet: str) -> list[tuple[str, str]]:
    """A control namespace `<prefix>-ctl` with a bridge at <subnet>.1 and no route out, and `count` host
    namespaces on it: (namespace, address) of each, addresses from <subnet>.10 (past 240 hosts, the next /24s
    of a /16). `ip netns del` undoes it."""
    ctl = f"{prefix}-ctl"
    bits = 24 if count <= PER_NET else 16
    _run(["ip", "netns", "add", ctl])
    ns = ["ip", "-n", ctl]
    _run([*ns, "link", "set", "lo", "up"])
    _run([*ns, "link", "add", "br0", "type", "bridge"])
    _run([*ns, "addr", "add", f"{subnet}.1/{bits}", "dev", "br0"])
    _run([*ns, "link", "set", "br0", "up"])
    out = []
    for i in range(count):
        netns, address = f"{prefix}-h{i}", _address(subnet, i, count)
        _run(["ip", "netns", "add", netns])
        _run([*ns, "link", "add", f"vc{i}", "type", "veth", "peer", "name", "eth0", "netns", netns])
        _run([*ns, "link", "set", f"vc{i}", "master", "br0"])
        _run([*ns, "link", "set", f"vc{i}", "up"])
        hn = ["ip", "-n", netns]
        _run([*hn, "link", "set", "lo", "up"])
        _run([*hn, "addr", "add", f"{address}/{bits}", "dev", "eth0"])
        _run([*hn, "link", "set", "eth0", "up"])
        out.append((netns, address))
    return out


def _setup(fleet: Fleet, count: int, names: str = "host") -> None:
    base = fleet.base
    fleet.key = base / "id_ed25519"
    if not fleet.key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fleet.key)])
    authorized = base / "authorized_keys"
    authorized.write_text((base / "id_ed25519.pub").read_text())
    for i, (netns, address) in enumerate(network(fleet.prefix, count, fleet.subnet)):
        name = f"{names}{i + 1}"
        host = Host(name, address, netns, base / name)
        host.dir.mkdir()
        fleet.hosts.append(host)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host.dir / "host_key")])
        (host.dir / "sshd_config").write_text(
            f"ListenAddress {host.address}\nPort 22\nHostKey {host.dir / 'host_key'}\n"
            f"AuthorizedKeysFile {authorized}\nPidFile none\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "MaxStartups 200:30:400\nMaxSessions 100\nLogLevel VERBOSE\nAcceptEnv LANG LC_*\n"
            "Subsystem sftp internal-sftp\n"
        )
        (host.dir / "start.sh").write_text(HOST_SCRIPT)
        log = (host.dir / "sshd.log").open("wb")
        host.proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child",
             "sh", str(host.dir / "start.sh"), str(host.dir), name, str(base)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _wait_ready(fleet)


def _wait_ready(fleet: Fleet, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    pending = list(fleet.hosts)
    lines: list[str] = []
    while pending and time.monotonic() < deadline:
        for h in list(pending):
            if h.proc is not None and h.proc.poll() is not None:
                raise RuntimeError(f"{h.name}: sshd exited: {(h.dir / 'sshd.log').read_text()[-2000:]}")
            done = subprocess.run([*fleet.exec_prefix, "ssh-keyscan", "-T", "2", "-t", "ed25519", h.address],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0 and done.stdout.strip():
                lines.append(done.stdout.strip())
                pending.remove(h)
        if pending:
            time.sleep(0.1)
    if pending:
        raise RuntimeError("SSH hosts did not come up: " + ", ".join(h.name for h in pending))
    fleet.known_hosts = fleet.base / "known_hosts"
    fleet.known_hosts.write_text("\n".join(lines) + "\n")
