"""Windows hosts over WinRM against the project's WinRM test hosts, as issue 9 asks.

Usage: python bench/winrm.py [HOSTS]   (default 20; needs root for the network namespaces)

- plan over HOSTS hosts, each with 10 files, a directory and a service (median of 3, nothing to
  change): WS-Man requests per host (target: one shell, one fact command) and wall time;
- the transfer of a 10 MB file to one host (apply), as MB/s, and the requests it took.
The hosts speak HTTPS with Basic auth on 10.232.0.x inside network namespaces; recon runs in the
control namespace. The PowerShell is emulated by the test hosts, so these figures measure recon,
pywinrm and the protocol, not Windows.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import RECON, measure  # noqa: E402

from tests.peers import winrm_fleet  # noqa: E402

ENV = {"WIN_PASSWORD": winrm_fleet.PASSWORD}


def group(fleet: winrm_fleet.WinFleet, hosts: list[winrm_fleet.WinHost]) -> str:
    listed = "\n".join(f"    - {{name: {h.name}, address: {h.address}}}" for h in hosts)
    return (f"apiVersion: recon/v1\nkind: HostGroup\nmetadata: {{name: win}}\nspec:\n  connection: winrm\n"
            f"  winrm: {{user: Administrator, password: {{env: WIN_PASSWORD}}, transport: basic, "
            f"caFile: {fleet.ca}}}\n  hosts:\n{listed}\n")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    fleet = winrm_fleet.start(n)
    try:
        with tempfile.TemporaryDirectory(prefix="recon-bench-winrm-") as tmp:
            root = Path(tmp)
            (root / "specs").mkdir()
            (root / "specs" / "group.yaml").write_text(group(fleet, fleet.hosts))
            files = "".join(f"    - {{type: file, path: 'C:\\App\\conf\\f{i}.ini', content: 'value {i}'}}\n"
                            for i in range(10))
            (root / "specs" / "state.yaml").write_text(
                "apiVersion: recon/v1\nkind: HostState\nmetadata: {name: app}\nspec:\n  group: win\n  resources:\n"
                + files + "    - {type: directory, path: 'C:\\App\\logs'}\n"
                "    - {type: service, name: AppService, state: running}\n")
            for h in fleet.hosts:
                h.sandbox.add_service("AppService", "C:\\App\\app.exe")
                h.sandbox.path("C:\\App\\app.exe").parent.mkdir(parents=True, exist_ok=True)
                h.sandbox.path("C:\\App\\app.exe").write_bytes(b"app")
            first = measure([*fleet.exec_prefix, RECON, "apply", "--auto-approve"], cwd=root, env=ENV)
            print(f"# {n} WinRM hosts; first apply (10 files, a directory each): {first.seconds:.2f} s, rc {first.rc}")
            samples, per_host = [], Counter[str]()
            for _ in range(3):
                for h in fleet.hosts:
                    (h.root / "requests.log").unlink(missing_ok=True)
                samples.append(measure([*fleet.exec_prefix, RECON, "plan", "--detailed-exitcode"], cwd=root,
                                       env=ENV))
                per_host = Counter(h.requests().count("Command") for h in fleet.hosts)
                kinds = Counter(r for h in fleet.hosts for r in h.requests())
            print(f"no-op plan over {n} hosts: median {statistics.median(s.seconds for s in samples):.2f} s, rc "
                  f"{samples[-1].rc}, peak RSS {max(s.peak_mb for s in samples):.0f} MB; commands per host "
                  f"{dict(per_host)}; requests in all {dict(kinds)}")
            transfer(fleet, root / "big")
    finally:
        fleet.stop()


def transfer(fleet: winrm_fleet.WinFleet, root: Path) -> None:
    host = fleet.hosts[0]
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "group.yaml").write_text(group(fleet, [host]))
    (root / "specs" / "big.bin").write_bytes(os.urandom(10 * 1024 * 1024))
    (root / "specs" / "state.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostState\nmetadata: {name: big}\nspec:\n  group: win\n  resources:\n"
        "    - {type: file, path: 'C:\\Models\\big.bin', source: big.bin}\n")
    (host.root / "requests.log").unlink(missing_ok=True)
    started = time.perf_counter()
    run = measure([*fleet.exec_prefix, RECON, "apply", "--auto-approve"], cwd=root, env=ENV)
    seconds = time.perf_counter() - started
    print(f"10 MB file to one host: apply {seconds:.2f} s (rc {run.rc}), {10 / seconds:.1f} MB/s end to end; "
          f"requests {dict(Counter(host.requests()))}")


if __name__ == "__main__":
    main()
