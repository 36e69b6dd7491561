"""recon against pyinfra and Ansible on the same SSH fleet and the same desired state
(each host: a directory and 10 files with given content), as issue 3 asks.

Setup (benchmark environment only, never a dependency of recon):
    python3 -m venv bench/.venv-peers && bench/.venv-peers/bin/pip install 'pyinfra>=3,<4' ansible-core
Usage: python bench/peers.py HOSTS [RUNS] [RTT_MS]   (default 20 hosts, 3 runs (1 for Ansible), 0 ms added
round-trip time through tests/peers/delay_proxy.py; median wall seconds); BENCH_TOOLS=recon,pyinfra picks
tools. recon runs three ways: as a new process connecting anew each run; with connections kept by its
agent (ssh.persist); and with those and the resident planner (reconciler/warm.py) for its plans, as
recon runs by default. The last two are warmed by one run first, as a second run of the day finds them.
Columns: check/plan with changes pending, apply, no-op check/plan, no-op apply; then the session channels per
host each opened in that order (from sshd's log, over all four), which shows that each really looked.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import RECON, measure  # noqa: E402
from ssh_fleet import specs  # noqa: E402

from tests.peers import fleet as fleetmod  # noqa: E402

PEERS = Path(os.environ.get("RECON_BENCH_PEERS", HERE / ".venv-peers")) / "bin"


def pyinfra_files(f: fleetmod.Fleet, root: Path, port: int) -> None:
    hosts = ", ".join(
        f'("{h.address}", {{"ssh_user": "root", "ssh_port": {port}, "ssh_key": "{f.key}", '
        f'"ssh_known_hosts_file": "{f.known_hosts}", "ssh_strict_host_key_checking": "yes"}})'
        for h in f.hosts
    )
    (root / "inventory.py").write_text(f"hosts = [{hosts}]\n")
    (root / "deploy.py").write_text(textwrap.dedent("""\
        from io import StringIO
        from pyinfra.operations import files
        files.directory(name="dir", path="/srv/bench")
        for i in range(10):
            files.put(name=f"f{i}", src=StringIO(f"value {i}\\n"), dest=f"/srv/bench/f{i}.conf")
        """))


def ansible_files(f: fleetmod.Fleet, root: Path, port: int) -> None:
    lines = ["[bench]"] + [f"{h.name} ansible_host={h.address} ansible_port={port}" for h in f.hosts]
    lines += ["[bench:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={f.key}",
              f"ansible_ssh_common_args='-o UserKnownHostsFile={f.known_hosts} -o StrictHostKeyChecking=yes'",
              "ansible_python_interpreter=/usr/bin/python3"]
    (root / "inventory.ini").write_text("\n".join(lines) + "\n")
    (root / "ansible.cfg").write_text("[defaults]\nforks = 20\nhost_key_checking = True\ngathering = explicit\n"
                                      "[ssh_connection]\npipelining = True\n")
    (root / "play.yml").write_text(textwrap.dedent("""\
        - hosts: bench
          gather_facts: false
          tasks:
            - file: {path: /srv/bench, state: directory}
            - copy: {dest: "/srv/bench/f{{ item }}.conf", content: "value {{ item }}\\n"}
              loop: "{{ range(10) | list }}"
        """))


def tool_commands(f: fleetmod.Fleet) -> dict[str, tuple[list[str], list[str]]]:
    ns = f.exec_prefix
    fresh = ["env", "RECON_SSH_PERSIST=0", "RECON_WARM=0"]  # a new process and connection to every host each run
    kept = ["env", "RECON_WARM=0"]  # connections kept by the agent, but no resident planner
    return {
        "recon": ([*ns, *fresh, RECON, "plan", "specs"], [*ns, *fresh, RECON, "apply", "--auto-approve", "specs"]),
        "recon, connections kept (ssh.persist)": ([*ns, *kept, RECON, "plan", "specs"],
                                                  [*ns, *kept, RECON, "apply", "--auto-approve", "specs"]),
        "recon, connections kept and the resident planner (the defaults)": (
            [*ns, RECON, "plan", "specs"], [*ns, RECON, "apply", "--auto-approve", "specs"]),
        # the check is `--dry` alone: with `-y` pyinfra 3.10 skips change detection and runs no command on the
        # hosts at all (0 session channels per host in sshd's log, against 31 for `--dry`)
        "pyinfra": ([*ns, str(PEERS / "pyinfra"), "inventory.py", "deploy.py", "--dry"],
                    [*ns, str(PEERS / "pyinfra"), "inventory.py", "deploy.py", "-y"]),
        "ansible": ([*ns, str(PEERS / "ansible-playbook"), "-i", "inventory.ini", "play.yml", "--check"],
                    [*ns, str(PEERS / "ansible-playbook"), "-i", "inventory.ini", "play.yml"]),
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rtt = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    f = fleetmod.start(n, prefix=f"rcp{n}")
    port = f.add_delay(rtt) if rtt else 22
    env = {"ANSIBLE_CONFIG": "ansible.cfg", "PATH": f"{PEERS}:{os.environ['PATH']}"}
    print(f"{n} hosts, {rtt:g} ms added round-trip time, median wall seconds")
    print("| tool | check/plan | apply | no-op check/plan | no-op apply | channels/host (each of the four) |")
    print("|---|---|---|---|---|---|")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            specs(f, root, port)
            pyinfra_files(f, root, port)
            ansible_files(f, root, port)
            wanted = os.environ.get("BENCH_TOOLS", "")
            for tool, (check, apply) in tool_commands(f).items():
                if wanted and tool.split(",")[0] not in wanted.split(","):
                    continue
                if "kept" in tool:
                    measure(check, cwd=root, env=env)  # the agent starts and connects: later runs reuse it
                    time.sleep(2)  # (and the resident planner, started after that run, is listening)
                k = 1 if tool == "ansible" else runs
                reset = "rm -rf /srv/bench"
                cols = []
                channels = []
                for cmd, wipe in ((check, True), (apply, True), (check, False), (apply, False)):
                    secs = []
                    for _ in range(k):
                        if wipe:
                            for i in range(n):
                                f.ssh(i, reset)
                        sizes = [(h.dir / "sshd.log").stat().st_size for h in f.hosts]
                        secs.append(measure(cmd, cwd=root, env=env).seconds)
                    logs = [(h.dir / "sshd.log").read_bytes()[m:].decode(errors="replace")
                            for h, m in zip(f.hosts, sizes, strict=True)]  # of the last run
                    channels.append(statistics.mean(log.count("Starting session: command") for log in logs))
                    cols.append(statistics.median(secs))
                print(f"| {tool} | " + " | ".join(f"{c:.2f}" for c in cols) + " | "
                      + " / ".join(f"{c:g}" for c in channels) + " |", flush=True)
    finally:
        f.stop()


if __name__ == "__main__":
    main()
