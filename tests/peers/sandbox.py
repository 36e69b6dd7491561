"""A sandbox for trying every example on this machine: the servers the tests use, started together
(`scripts/sandbox`), with what to type to point each example at them. It runs in the foreground
until Ctrl-C (or SIGTERM), then stops everything it started.

- an SSH fleet of three hosts (web1..web3) in network namespaces: examples/fleet, copied with its
  HostGroup pointed at them (recon runs in the fleet's control namespace, the only way in);
- three WinRM hosts (cis-01..cis-03) running StationController 2.4.0: examples/stationcontroller,
  copied the same way;
- an OCI registry on 127.0.0.1 (Debian's docker-registry): examples/bundle, through RECON_BUNDLE_REF;
- a Docker engine (Debian's dockerd) of its own: examples/model-docker, through DOCKER_HOST (its
  image builds FROM scratch with Debian's static busybox, copied into its build context here);
- the Kubernetes test API server with a namespace ml: examples/model-kubernetes, through KUBECONFIG.

Needs root (network namespaces, dockerd) and what scripts/setup installs; run from the repository's
root (its examples/ are the ones pointed at). Everything lives below `--dir` (default .sandbox/),
which is made anew.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATION = r"C:\Program Files\Station\stationcontroller.exe"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=".sandbox", help="where the sandbox keeps its files (made anew)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("scripts/sandbox needs root: network namespaces for the SSH and WinRM hosts, and dockerd "
              "(run it with sudo)", file=sys.stderr)
        return 1
    if not (Path("examples") / "model-docker").is_dir():
        print("run scripts/sandbox from the repository's root (it points the examples/ there at the sandbox)",
              file=sys.stderr)
        return 1
    base = Path(args.dir).resolve()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started: list[Any] = []
    try:
        lines = _start(base, started)
        print("\n".join(lines), flush=True)
        stop.wait()
        print("Stopping the sandbox…", flush=True)
    except RuntimeError as exc:
        print(f"the sandbox cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        for thing in reversed(started):
            try:
                thing.stop()
            except Exception as exc:  # keep stopping the others
                print(f"warning: stopping {type(thing).__name__}: {exc}", file=sys.stderr)
    print("Sandbox stopped.", flush=True)
    return 0


def _start(base: Path, started: list[Any]) -> list[str]:
    from tests.peers import docker_engine, kube_api, registry, windows_real, winrm_fleet
    from tests.peers import fleet as fleetmod
    from tests.peers.kube_store import BY_PLURAL

    fleet = fleetmod.start(3, prefix="rsbx", subnet="10.233.0", names="web")
    started.append(fleet)
    win = winrm_fleet.start(3, prefix="rsbw")
    started.append(win)
    for h in windows_real.peer_hosts(win):
        h.install_build("2.4.0", STATION)
        h.add_service("StationController", STATION)
    reg = registry.start(base / "registry")
    started.append(reg)
    # short: a socket's path has at most 107 bytes, and --dir may be deep
    engine = docker_engine.start(Path(tempfile.mkdtemp(prefix="rsbd", dir="/tmp")))
    started.append(engine)
    kube = kube_api.start()
    started.append(kube)
    kubeconfig = kube.kubeconfig(base / "kubeconfig")
    kube.store.create(BY_PLURAL["v1", "namespaces"], "", {"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": "ml"}}, "sandbox")

    examples = base / "examples"
    shutil.copytree(Path("examples") / "fleet", examples / "fleet")
    (examples / "fleet" / "hosts.yaml").write_text(
        "# examples/fleet/hosts.yaml, pointed at the sandbox's SSH hosts\n"
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: web, labels: {tier: frontend}}\nspec:\n"
        "  connection: ssh\n  concurrency: 20\n"
        f"  ssh: {{user: root, identity: {{file: {fleet.key}}}, knownHosts: {fleet.known_hosts}}}\n  hosts:\n"
        + "".join(f"    - {{name: {h.name}, address: {h.address}}}\n" for h in fleet.hosts))
    shutil.copytree(Path("examples") / "stationcontroller", examples / "stationcontroller")
    (examples / "stationcontroller" / "cis-servers.yaml").write_text(
        "# examples/stationcontroller/cis-servers.yaml, pointed at the sandbox's WinRM hosts\n"
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: cis-servers, labels: {site: cis}}\nspec:\n"
        f"  connection: winrm\n  winrm: {{user: '{winrm_fleet.USER}', password: {{env: CIS_WINRM_PASSWORD}}, "
        f"scheme: https, transport: ntlm, caFile: '{win.ca}'}}\n  concurrency: 10\n  hosts:\n"
        + "".join(f"    - {{name: cis-0{i + 1}, address: {h.address}}}\n" for i, h in enumerate(win.hosts)))
    context = Path("examples") / "model-docker" / "model-service"
    shutil.copy(docker_engine.BUSYBOX, context / "busybox")  # (ignored by git)

    venv = ROOT / ".venv" / "bin"
    env = {"PATH": f"{venv}:{os.environ.get('PATH', '/usr/bin:/bin')}", "DOCKER_HOST": engine.host,
           "KUBECONFIG": str(kubeconfig), "RECON_BUNDLE_REF": f"{reg.host}/models/churn:v1",
           "CIS_WINRM_PASSWORD": winrm_fleet.PASSWORD, "CHURN_API_KEY": "sandbox-api-key"}
    (base / "env").write_text("".join(f"export {k}='{v}'\n" for k, v in env.items()))
    rel = os.path.relpath(base, Path.cwd())
    return [
        "The recon sandbox is up. In another terminal, from this directory:",
        "",
        f"  . {rel}/env          # DOCKER_HOST, KUBECONFIG, RECON_BUNDLE_REF, CIS_WINRM_PASSWORD, CHURN_API_KEY, PATH",
        "  recon apply examples/model-docker --auto-approve",
        "  recon apply examples/model-kubernetes --auto-approve",
        "  recon apply examples/bundle --auto-approve",
        f"  {' '.join(fleet.exec_prefix)} recon apply {rel}/examples/fleet --auto-approve",
        f"  {' '.join(win.exec_prefix)} recon apply {rel}/examples/stationcontroller --auto-approve",
        "",
        f"The SSH hosts {', '.join(h.name for h in fleet.hosts)} and the WinRM hosts cis-01..cis-03 are reached only "
        "from their namespaces (the `ip netns exec` above); their examples are copies whose HostGroup names them.",
        "Then `recon plan …` again shows no changes; `recon do health churn-model --specs examples/model-docker` "
        "checks its replicas.",
        "Ctrl-C stops the sandbox and everything it started.",
        "ready",
    ]


if __name__ == "__main__":
    sys.exit(main())
