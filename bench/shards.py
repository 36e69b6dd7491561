"""One plan over 1, 2 and 3 runners (issue 16): the SSH test fleet, the state of bench/ssh_fleet.py per host
(a directory and 10 files), the shared PostgreSQL state backend (tests/peers/postgres.py, by its socket).

Usage: python bench/shards.py [HOSTS] [RUNS]   (default 300 hosts, 1 run; median wall seconds of RUNS)
For each number of shards S: every shard's cold plan (new process, new connections: RECON_SSH_PERSIST=0,
RECON_WARM=0) run alone, as its own runner would run it (its time, per-host cost and peak memory); all S at
once on this machine (2 cores: what one machine gains, which is not what S machines gain); the merge; every
part's apply alone; and every shard's no-op plan after it. Runs as root; recon runs inside the fleet's
control namespace.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import RECON, Sample, measure  # noqa: E402
from ssh_fleet import specs  # noqa: E402

from tests.peers import fleet as fleetmod  # noqa: E402
from tests.peers import postgres  # noqa: E402


def median(samples: list[Sample]) -> Sample:
    return Sample(statistics.median(s.seconds for s in samples), max(s.peak_mb for s in samples), samples[-1].rc)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    started = time.monotonic()
    f = fleetmod.start(n, prefix="rcsh")
    up = time.monotonic() - started
    pg = postgres.start()
    try:
        pg.create_db("shards")
        env = {"RECON_STATE_BACKEND": "postgres", "RECON_SSH_PERSIST": "0", "RECON_WARM": "0",
               "RECON_STATE_DSN": f"postgresql://recon:{pg.password}@/shards?host={pg.root}&port={pg.port}"}
        ns = f.exec_prefix
        print(f"{n} hosts (fleet up in {up:.0f} s), 2 cores, {runs} run(s), median wall seconds; PostgreSQL backend")
        print("| shards | cold plan, each shard alone (slowest) | per host | peak memory per runner | all shards at "
              "once on this machine | merge | apply, each part alone (slowest) | no-op plan (slowest) |")
        print("|---|---|---|---|---|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            specs(f, root)
            for count in (1, 2, 3):
                shards = [f"{k}/{count}" for k in range(1, count + 1)]
                plans: list[Sample] = []
                for k, shard in enumerate(shards, 1):
                    got = []
                    for _ in range(runs):
                        for i in range(n):
                            f.ssh(i, "rm -rf /srv/bench")
                        got.append(measure([*ns, RECON, "plan", "specs", "--shard", shard, "--out", f"part{k}.json"],
                                           cwd=root, env=env))
                    plans.append(median(got))
                # all at once, on this one machine
                t = time.perf_counter()
                procs = [subprocess.Popen([*ns, RECON, "plan", "specs", "--shard", shard, "--out", f"part{k}.json"],
                                          cwd=root, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
                         for k, shard in enumerate(shards, 1)]
                assert all(p.wait() in (0, 2) for p in procs)
                together = time.perf_counter() - t
                merge = measure([*ns, RECON, "plan", "merge", *(f"part{k}.json" for k in range(1, count + 1)),
                                 "--out", "plan.json"], cwd=root, env=env)
                applies = [measure([*ns, RECON, "apply", "plan.json", "--shard", shard], cwd=root, env=env)
                           for shard in shards]
                noop = [measure([*ns, RECON, "plan", "specs", "--shard", shard], cwd=root, env=env) for shard in shards]
                slow = max(plans, key=lambda s: s.seconds)
                per_host = 1000 * slow.seconds / (n / count)
                print(f"| {count} | {slow.seconds:.2f} s | {per_host:.1f} ms | "
                      f"{max(p.peak_mb for p in plans):.0f} MB | {together:.2f} s | {merge.seconds:.2f} s "
                      f"({merge.peak_mb:.0f} MB) | {max(a.seconds for a in applies):.2f} s | "
                      f"{max(p.seconds for p in noop):.2f} s |", flush=True)
    finally:
        pg.stop()
        f.stop()


if __name__ == "__main__":
    main()
