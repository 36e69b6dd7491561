"""A real Docker engine for the tests: Debian's dockerd, started by hand with everything in a private
directory and no host networking touched (no bridge, no iptables): dockerd with --bridge=none and
--iptables=false needs no network set-up of this machine.

Images are built here (nothing can be pulled): `FROM scratch` with Debian's static busybox, serving
HTTP with `busybox httpd` and a CGI health endpoint. Variants: a healthy model service, and a broken
one whose health endpoint answers 500.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.peers import procs

DOCKERD = "/usr/sbin/dockerd"
BUSYBOX = "/bin/busybox"

HEALTH = """#!/bin/busybox sh
echo "Status: {status}"
echo "Content-Type: text/plain"
echo
echo "{body} $MODEL_VERSION"
"""
PREDICT = """#!/bin/busybox sh
echo "Content-Type: application/json"
echo
files=$(cat "$MODEL_DIR/version.txt" 2>/dev/null)
echo "{\\"model\\": \\"$MODEL_VERSION\\", \\"replica\\": \\"$PORT\\", \\"files\\": \\"$files\\"}"
"""
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
COPY www /www
ENTRYPOINT ["/bin/busybox"]
CMD ["sh", "-c", "exec /bin/busybox httpd -f -p ${LISTEN:-127.0.0.1}:${PORT:-8080} -h /www"]
"""


@dataclass
class Engine:
    root: Path
    proc: subprocess.Popen[bytes]
    netns: str = ""  # the network namespace dockerd runs in, when it has a bridge

    @property
    def prefix(self) -> list[str]:
        """What runs a command where the published ports are."""
        return ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []

    def calls(self, since: int = 0) -> list[str]:
        """API calls the engine logged (with debug on) after byte offset `since` of its log."""
        text = (self.root / "dockerd.log").read_bytes()[since:].decode(errors="replace")
        return re.findall(r'msg="Calling (\w+ [^"]+)"', text)

    def mark(self) -> int:
        return (self.root / "dockerd.log").stat().st_size

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def docker(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["docker", *args], env={**os.environ, "DOCKER_HOST": self.host},
                              capture_output=True, text=True, timeout=120, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr}")
        return done.stdout.strip()

    def stop(self) -> None:
        for cid in self.docker("ps", "-aq", check=False).split():
            self.docker("rm", "-f", cid, check=False)
        procs.stop(self.proc, grace=20)
        for netns in (self.root / "exec" / "netns").glob("*") if (self.root / "exec" / "netns").exists() else []:
            subprocess.run(["umount", str(netns)], check=False, capture_output=True)
        if self.netns:
            subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)
        for d in glob.glob("/sys/fs/cgroup/*/docker") + glob.glob("/sys/fs/cgroup/docker"):
            with contextlib.suppress(OSError):
                os.rmdir(d)
        shutil.rmtree(self.root, ignore_errors=True)


def start(root: Path, debug: bool = False, bridge: str = "") -> Engine:
    """dockerd in `root`; with `debug`, its log names every API call (`Calling GET /…`), for counting.

    With `bridge` (a network namespace name), dockerd runs in a network namespace of its own, made
    here, with its bridge network and published ports (through docker-proxy, no iptables): clients
    of the published ports must run in that namespace too (Engine.prefix)."""
    if bridge:
        subprocess.run(["ip", "netns", "add", bridge], check=True)
        subprocess.run(["ip", "netns", "exec", bridge, "ip", "link", "set", "lo", "up"], check=True)
    for tool in (DOCKERD, BUSYBOX):
        if not os.path.exists(tool):
            raise RuntimeError(f"{tool} is missing: install Debian's docker.io and busybox-static (scripts/setup)")
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "dockerd.log").open("wb")
    network = (["--iptables=false", "--ip6tables=false"] if bridge else
               ["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"])
    # nsenter, not `ip netns exec`: that one mounts a new /sys, without the cgroups dockerd needs
    inside = ["nsenter", f"--net=/run/netns/{bridge}"] if bridge else []
    proc = subprocess.Popen(
        [*inside, DOCKERD, f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
         f"--pidfile={root / 'dockerd.pid'}", "-H", f"unix://{root / 'docker.sock'}", "--storage-driver=overlay2",
         "--exec-opt", "native.cgroupdriver=cgroupfs", *network, *(["--debug"] if debug else [])], stdout=log,
        stderr=subprocess.STDOUT)
    engine = Engine(root, proc, bridge)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}")
        if (root / "docker.sock").exists() and engine.docker("version", check=False):
            return engine
        time.sleep(0.1)
    engine.stop()
    raise RuntimeError("dockerd did not answer within 30 s")


def model_context(where: Path, status: int = 200) -> Path:
    """A build context of a model service image (healthy, or whose health endpoint fails with `status`)."""
    www = where / "www" / "cgi-bin"
    www.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, where / "busybox")
    body = "ok" if status == 200 else "broken"
    for name, text in (("health", HEALTH.format(status=f"{status} X", body=body)), ("predict", PREDICT)):
        (www / name).write_text(text)
        (www / name).chmod(0o755)
    (where / "Dockerfile").write_text(DOCKERFILE)
    return where


def build(engine: Engine, tag: str, where: Path, status: int = 200) -> str:
    model_context(where, status)
    return engine.docker("build", "-q", "-t", tag, str(where))
