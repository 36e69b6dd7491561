"""A real HTTP proxy for the tests: Debian's tinyproxy, started by hand with its own configuration and log,
optionally inside a network namespace the tests made (`netns`), on 127.0.0.1 there.

It forwards plain-http requests given in absolute form (`GET http://host:port/path`) and tunnels
CONNECT to the ports listed (`connect_ports`); its log names every request, which is how the tests
tell that a client went through it (`requests()`).
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.peers import procs

TINYPROXY = "/usr/bin/tinyproxy"
_LINE = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+)")


@dataclass
class Proxy:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """`METHOD target` of each request the proxy took, in order (`CONNECT host:port` for a tunnel)."""
        if not self.log.exists():
            return []
        return [f"{m[1]} {m[2]}" for m in _LINE.finditer(self.log.read_text(errors="replace"))]

    def stop(self) -> None:
        procs.stop(self.proc)


def start(root: Path, netns: str = "", connect_ports: tuple[int, ...] = (443,)) -> Proxy:
    """tinyproxy listening on 127.0.0.1 (in `netns` when given), its files under `root`."""
    if not Path(TINYPROXY).exists():
        raise RuntimeError(f"{TINYPROXY} is missing: install Debian's tinyproxy (scripts/setup does)")
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port() if not netns else 8888  # a namespace of the test's own has every port free
    log = root / "tinyproxy.log"
    (root / "tinyproxy.conf").write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{log}\"\nLogLevel Info\nMaxClients 64\n"
        f"Allow 127.0.0.1\nDisableViaHeader Yes\n" + "".join(f"ConnectPort {p}\n" for p in connect_ports))
    prefix = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.Popen([*prefix, TINYPROXY, "-d", "-c", str(root / "tinyproxy.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    proxy = Proxy(root, port, proc, log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tinyproxy exited: {log.read_text()[-2000:] if log.exists() else ''}")
        if log.exists() and "listening on" in log.read_text(errors="replace").lower():
            return proxy
        time.sleep(0.05)
    proxy.stop()
    raise RuntimeError(f"tinyproxy did not listen on {port}: {log.read_text()[-2000:] if log.exists() else ''}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
