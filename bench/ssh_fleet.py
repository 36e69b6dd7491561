"""recon over SSH against the test fleet: plan (changes pending), apply, no-op plan, no-op apply.

Usage: python bench/ssh_fleet.py [HOSTS ...]   (default: 20 100); 3 runs each, median wall seconds.
HostResource state per host (as in issue 3): 10 files with given content and a directory.
Also counts SSH connections and session channels per host for one plan, from sshd's VERBOSE log.
Runs as root (network namespaces); recon runs inside the fleet's control namespace.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import RECON, measure

from tests.peers import fleet as fleetmod


def specs(f: fleetmod.Fleet, root: Path, port: int = 22) -> None:
    d = root / "specs"
    d.mkdir()
    hosts = "\n".join(f"    - {{name: {h.name}, address: {h.address}}}" for h in f.hosts)
    (d / "group.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: bench}\nspec:\n  connection: ssh\n"
        f"  concurrency: 100\n  ssh:\n    port: {port}\n    identity: {{file: {f.key}}}\n"
        f"    knownHosts: {f.known_hosts}\n"
        f"  hosts:\n{hosts}\n"
    )
    res = ["    - {type: directory, path: /srv/bench}"]
    res += [f"    - {{type: file, path: /srv/bench/f{i}.conf, content: \"value {i}\\n\"}}" for i in range(10)]
    (d / "state.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostState\nmetadata: {name: bench}\nspec:\n  group: bench\n"
        "  resources:\n" + "\n".join(res) + "\n"
    )


def med(cmd: list[str], cwd: Path, runs: int, reset: str | None, f: fleetmod.Fleet) -> float:
    out = []
    for _ in range(runs):
        if reset:
            for i in range(len(f.hosts)):
                f.ssh(i, reset)
        out.append(measure(cmd, cwd=cwd).seconds)
    return statistics.median(out)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [20, 100]
    print("| hosts | plan (changes) | apply | no-op plan | no-op apply | connections/host | channels/host |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        f = fleetmod.start(n, prefix=f"rcb{n}")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                specs(f, root)
                cmd = [*f.exec_prefix, RECON]
                sizes_before = [(h.dir / "sshd.log").stat().st_size for h in f.hosts]
                plan = med([*cmd, "plan", "specs"], root, 3, None, f)
                logs = [(h.dir / "sshd.log").read_bytes()[s:].decode(errors="replace")
                        for h, s in zip(f.hosts, sizes_before, strict=True)]
                conns = statistics.mean(log.count("Accepted publickey") for log in logs) / 3
                chans = statistics.mean(log.count("Starting session:") for log in logs) / 3
                apply = med([*cmd, "apply", "--auto-approve", "specs"], root, 3, "rm -rf /srv/bench", f)
                noop_plan = med([*cmd, "plan", "specs"], root, 3, None, f)
                noop_apply = med([*cmd, "apply", "--auto-approve", "specs"], root, 3, None, f)
                row = [n, f"{plan:.2f}", f"{apply:.2f}", f"{noop_plan:.2f}", f"{noop_apply:.2f}", f"{conns:.1f}",
                       f"{chans:.1f}"]
                print("| " + " | ".join(str(x) for x in row) + " |", flush=True)
        finally:
            f.stop()


if __name__ == "__main__":
    main()
