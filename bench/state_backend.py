"""The cost of the postgres state backend against sqlite: a no-op plan and an apply of the 20-host SSH
fleet (recon in the fleet's control namespace reaches PostgreSQL over its Unix socket), and lock
acquisition with and without contention.

Usage: python bench/state_backend.py [HOSTS] [RUNS]   (default 20 7). Runs as root (network namespaces).
Medians of RUNS, sqlite and postgres interleaved so drift of this machine hits both alike.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import RECON, measure
from ssh_fleet import specs

from tests.peers import fleet as fleetmod
from tests.peers import postgres


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    pg = postgres.start()
    f = fleetmod.start(hosts, prefix="rcs")
    try:
        pg.create_db("bench")
        socket_dsn = f"postgresql://recon:{pg.password}@/bench?host={pg.root}&port={pg.port}"
        backends = {"sqlite": {"RECON_STATE_BACKEND": "sqlite"},
                    "postgres": {"RECON_STATE_BACKEND": "postgres", "RECON_STATE_DSN": socket_dsn}}
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            specs(f, root)
            cmd = [*f.exec_prefix, RECON]
            times: dict[str, dict[str, list[float]]] = {b: {"noop": [], "apply": [], "cold": []} for b in backends}
            for env in backends.values():  # converge first (and start the resident planner, SSH agent)
                measure([*cmd, "apply", "--auto-approve", "specs"], cwd=root, env=env)
            for _ in range(runs):
                for name, env in backends.items():
                    times[name]["noop"].append(measure([*cmd, "plan", "specs"], cwd=root, env=env).seconds)
            for _ in range(runs):
                for name, env in backends.items():
                    for i in range(len(f.hosts)):
                        f.ssh(i, "rm -f /srv/bench/f0.conf")
                    times[name]["apply"].append(
                        measure([*cmd, "apply", "--auto-approve", "specs"], cwd=root, env=env).seconds)
            for _ in range(runs):  # as the Action runs it: one process per run, no resident planner
                for name, env in backends.items():
                    for i in range(len(f.hosts)):
                        f.ssh(i, "rm -f /srv/bench/f0.conf")
                    times[name]["cold"].append(measure([*cmd, "apply", "--auto-approve", "specs"], cwd=root,
                                                       env={**env, "RECON_WARM": "0"}).seconds)
        print(f"| {hosts} hosts, median of {runs} | sqlite | postgres | added |")
        print("|---|---|---|---|")
        for what, label in (("noop", "no-op plan"), ("apply", "apply (one file per host)"),
                            ("cold", "apply, own process (RECON_WARM=0, as the Action runs it)")):
            a, b = statistics.median(times["sqlite"][what]), statistics.median(times["postgres"][what])
            print(f"| {label} | {a:.3f} s | {b:.3f} s | {1000 * (b - a):+.0f} ms ({100 * (b - a) / a:+.1f} %) |")
        locks(pg)
    finally:
        f.stop()
        pg.stop()


def locks(pg: postgres.Postgres) -> None:
    from reconciler import locks
    from reconciler.state import Backend

    pg.create_db("locks")
    b = Backend("postgres", Path("."), pg.dsn("locks"), "bench", 30.0)
    free = []
    for _ in range(20):
        started = time.perf_counter()
        with locks.hold(b, ["host/ssh/10.0.0.1:22"], {"user": "bench"}, 10):
            free.append(time.perf_counter() - started)
    waits: list[float] = []
    released = [0.0]
    order = threading.Lock()

    def contender() -> None:
        for _ in range(5):
            asked = time.perf_counter()
            with locks.hold(b, ["host/ssh/10.0.0.2:22"], {"user": "bench"}, 60):
                with order:
                    waits.append(time.perf_counter() - max(asked, released[0]))
                time.sleep(0.02)
                released[0] = time.perf_counter()

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print()
    print("| lock acquisition (postgres, one key) | median | p90 |")
    print("|---|---|---|")
    free.sort()
    print(f"| free (connect, take, release): 20 | {1000 * statistics.median(free):.1f} ms | "
          f"{1000 * free[int(len(free) * 0.9)]:.1f} ms |")
    waits.sort()
    print(f"| contended, 8 runners x 5, from the release before to taking it | {1000 * statistics.median(waits):.1f} "
          f"ms | {1000 * waits[int(len(waits) * 0.9)]:.1f} ms |")


if __name__ == "__main__":
    main()
