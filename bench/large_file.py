"""Memory of applying one large file (issue 18): a local root, and one SSH host of the test fleet (its own
network namespace; recon connects itself, RECON_SSH_PERSIST=0, so the streaming is in the measured process).
Peak RSS of the recon process (wait4's ru_maxrss), plan and apply, each its own process (RECON_WARM=0).

Usage: python bench/large_file.py [MIB]   (default 1024). Runs as root (network namespaces).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import RECON, measure

from tests.peers import fleet as fleetmod


def _write(path: Path, mib: int) -> str:
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for i in range(mib):
            chunk = block[i % 251:] + block[:i % 251]
            out.write(chunk)
            h.update(chunk)
    return h.hexdigest()


def _sha(path: Path) -> str:
    """Hashed a chunk at a time: this process must stay small, or the children it forks start with its pages
    (ru_maxrss would count them)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    env = {"RECON_WARM": "0", "RECON_SSH_PERSIST": "0"}
    rows = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        root = Path(tmp)
        (root / "specs").mkdir()
        digest = _write(root / "specs" / "model.bin", mib)
        state = ("apiVersion: recon/v1\nkind: HostState\nmetadata: {name: big}\nspec:\n  group: g\n  resources:\n"
                 "    - {type: file, path: /srv/big/model.bin, source: model.bin, mode: '0644'}\n")
        (root / "specs" / "s.yaml").write_text(state)
        (root / "specs" / "g.yaml").write_text(
            "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: g}\nspec:\n  hosts: [{name: a, root: ../r}]\n")
        (root / "r").mkdir()
        plan = measure([RECON, "plan", "specs"], cwd=root, env=env)
        apply = measure([RECON, "apply", "--auto-approve", "specs"], cwd=root, env=env)
        assert apply.rc == 0
        assert _sha(root / "r" / "srv" / "big" / "model.bin") == digest
        rows.append(("local root", plan, apply))
        (root / "r" / "srv" / "big" / "model.bin").unlink()

        f = fleetmod.start(1, prefix="rlf")
        try:
            # the host's own root is a 256 MB tmpfs: the file goes below the fleet's directory, which every
            # host has bind-mounted from this machine's disk
            (root / "specs" / "s.yaml").write_text(state.replace("/srv/big/", f"{f.base}/big/"))
            (root / "specs" / "g.yaml").write_text(
                "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: g}\nspec:\n  connection: ssh\n"
                f"  ssh: {{user: root, identity: {{file: {f.key}}}, knownHosts: {f.known_hosts}}}\n"
                f"  hosts: [{{name: h0, address: {f.hosts[0].address}}}]\n")
            cmd = [*f.exec_prefix, RECON]
            plan = measure([*cmd, "plan", "specs"], cwd=root, env=env)
            apply = measure([*cmd, "apply", "--auto-approve", "specs"], cwd=root, env=env)
            assert apply.rc == 0
            assert f.ssh(0, f"sha256sum {f.base}/big/model.bin").split()[0] == digest
            rows.append(("SSH host (paramiko, own connection)", plan, apply))
        finally:
            f.stop()
    print(f"| one file of {mib} MiB | plan: time, peak RSS | apply: time, peak RSS |")
    print("|---|---|---|")
    for name, plan, apply in rows:
        print(f"| {name} | {plan.seconds:.1f} s, {plan.peak_mb:.0f} MB "
              f"| {apply.seconds:.1f} s, {apply.peak_mb:.0f} MB |")


if __name__ == "__main__":
    main()
