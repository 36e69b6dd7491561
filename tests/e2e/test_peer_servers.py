"""The project's own HTTP test servers accept connections as the servers they stand for do.

A real Kubernetes API server, GitHub's API, a registry's token service and WinRM's HTTP.sys take a burst of new
connections: Go's net/http listens with the kernel's somaxconn, HTTP.sys keeps a large queue. Python's
socketserver listens with a backlog of 5: sixteen connections opened at once (recon's plan sends its dry runs
sixteen at a time) overflowed it, a SYN cookie that could not be checked was answered with a reset, and one
`recon plan` in four of bench/models_kube.py failed with "Connection reset by peer" — a failure of the test
server, not of recon, and one a real cluster would not give."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.peers import github_api, kube_api, token_server, winrm_fleet

WANT = 128  # the least a real server's queue holds here (net.core.somaxconn is 4096 on these machines)


def backlogs(port: int, netns: str = "") -> list[int]:
    """The accept queue's size of each socket listening on `port` (ss's Send-Q for a listening socket)."""
    where = ["ip", "netns", "exec", netns] if netns else []
    out = subprocess.run([*where, "ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True)
    return [int(line.split()[2]) for line in out.stdout.splitlines()]


def test_the_kubernetes_github_and_token_servers_take_a_burst_of_connections(tmp_path: Path) -> None:
    kube = kube_api.start(settle=0)
    github = github_api.start()
    tokens = token_server.start(tmp_path, {"ci": "secret"}, "registry")
    try:
        for name, server in (("kube_api", kube.server), ("github_api", github.server),
                             ("token_server", tokens.server)):
            found = backlogs(server.server_address[1])
            assert found and min(found) >= WANT, f"{name} listens with a backlog of {found}"
    finally:
        kube.stop()
        github.stop()
        tokens.stop()


def test_the_winrm_hosts_take_a_burst_of_connections() -> None:
    fleet = winrm_fleet.start(1)
    try:
        host = fleet.hosts[0]
        for port in (winrm_fleet.PORT, 5985):
            found = backlogs(port, host.netns)
            assert found and min(found) >= WANT, f"{host.name}:{port} listens with a backlog of {found}"
    finally:
        fleet.stop()
