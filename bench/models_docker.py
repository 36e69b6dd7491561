"""Models on a real Docker engine, as issue 5 asks.

Usage: python bench/models_docker.py [MODELS]   (default 200)

- Plan over MODELS Model specs against a live engine where nothing changed: Docker API calls the
  engine logged (target: one list call plus nothing per unchanged model) and wall time (median of 3).
  Each Model has 1 replica (MODELS containers in all).
- An env change to all MODELS Models with --parallelism 10: wall time of the apply (target: under
  30 s for 200 on this machine; the Models roll at the same time, each replica behind its check);
  then another, of the replicas the first one made.
- A rolling update of 3 replicas (env change): time from apply to all healthy, and the requests
  that failed for a prober that finds replicas by label, sends to every healthy one, and retries a
  refused connection once on another replica, as a label-discovering proxy does (target 0).
- The same Model behind its stable endpoint (issue 19): 50 requests a second to the one address, each
  on a new connection and never retried, through a good rolling update and a failed one (a successor
  that fails its health check): the requests that failed (target 0).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import RECON, measure  # noqa: E402

from tests.peers import docker_engine, haproxy_image  # noqa: E402


def spec(name: str, port: int, replicas: int, version: str) -> str:
    return (f"---\napiVersion: recon/v1\nkind: Model\nmetadata: {{name: {name}}}\nspec:\n  runtime: docker\n"
            f"  image: recon-bench/model:1\n  replicas: {replicas}\n  port: {port}\n"
            f"  env: {{MODEL_VERSION: {version}}}\n  health: {{path: /cgi-bin/health, interval: 0.05}}\n")


def cpu_busy() -> float:
    """CPU-seconds this machine has spent busy (all cores, all processes: recon, the engine, the kernel)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def ok(port: int, path: str = "/cgi-bin/health") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory(prefix="recon-bench-docker-") as tmp:
        root = Path(tmp)
        # a short data root, as a host's /var/lib/docker is: runc and dockerd read the whole mount table at every
        # call, and each running container's overlay mount names the root several times (BENCHMARKS.md)
        engine = docker_engine.start(Path(tempfile.mkdtemp(prefix="rbd-", dir="/tmp")), debug=True)
        try:
            docker_engine.build(engine, "recon-bench/model:1", root / "ctx")
            env = {"DOCKER_HOST": engine.host}
            (root / "specs").mkdir()
            (root / "specs" / "models.yaml").write_text("".join(spec(f"m{i:03}", 20000 + 2 * i, 1, "v1")
                                                                for i in range(n)))
            started = time.perf_counter()
            first = measure([RECON, "apply", "--auto-approve", "--parallelism", "20"], cwd=root, env=env)
            print(f"# {n} Models, 1 replica each: first apply {time.perf_counter() - started:.1f} s (rc {first.rc})")
            samples, calls = [], []
            for _ in range(3):
                mark = engine.mark()
                samples.append(measure([RECON, "plan", "--detailed-exitcode"], cwd=root, env=env))
                calls.append(engine.calls(mark))
            print(f"no-op plan over {n} Models: median {statistics.median(s.seconds for s in samples):.2f} s, "
                  f"rc {samples[-1].rc}, peak RSS {max(s.peak_mb for s in samples):.0f} MB; "
                  f"{len(calls[-1])} Docker API calls: {sorted(set(c.split('?')[0] for c in calls[-1]))}")
            # an env change to every Model: each rolls its replica, up to 10 Models at a time (issue 19: 2); then
            # another, of the replicas the first one made (a fleet that has rolled before)
            for version, what in (("v2", "env change"), ("v3", "another env change")):
                (root / "specs" / "models.yaml").write_text("".join(spec(f"m{i:03}", 20000 + 2 * i, 1, version)
                                                                    for i in range(n)))
                busy = cpu_busy()
                changed = measure([RECON, "apply", "--auto-approve", "--parallelism", "10"], cwd=root, env=env)
                busy = cpu_busy() - busy
                print(f"{what} to {n} Models with --parallelism 10: {changed.seconds:.1f} s (rc {changed.rc}), "
                      f"peak RSS {changed.peak_mb:.0f} MB; the machine busy {busy:.1f} CPU-s of "
                      f"{changed.seconds * (os.cpu_count() or 1):.1f} ({busy / n:.2f} per replaced replica)")
            rolling(root, engine)
            behind_endpoint(root, engine)
        finally:
            engine.stop()


def rolling(root: Path, engine: docker_engine.Engine) -> None:
    env = {"DOCKER_HOST": engine.host}
    work = root / "rolling"
    (work / "specs").mkdir(parents=True)
    (work / "specs" / "m.yaml").write_text(spec("rolling", 21000, 3, "v1"))
    measure([RECON, "apply", "--auto-approve"], cwd=work, env=env)
    (work / "specs" / "m.yaml").write_text(spec("rolling", 21000, 3, "v2"))
    failed, sent = [], [0]
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            labels = engine.docker("ps", "--filter", "label=recon.dev/spec=Model/rolling", "--format",
                                   '{{.Label "recon.dev/port"}}').split()
            healthy = [int(p) for p in labels if ok(int(p))]
            for p in healthy:
                sent[0] += 1
                others = [q for q in healthy if q != p][:1]
                if not ok(p, "/cgi-bin/predict") and not any(ok(q, "/cgi-bin/predict") for q in others):
                    failed.append(p)  # failed, and failed again on another replica
            if not healthy:
                failed.append(0)

    t = threading.Thread(target=probe)
    t.start()
    run = measure([RECON, "apply", "--auto-approve"], cwd=work, env=env)
    stop.set()
    t.join()
    print(f"rolling update of 3 replicas: {run.seconds:.2f} s from apply to all healthy (rc {run.rc}); "
          f"{sent[0]} requests, {len(failed)} failed")


def behind_endpoint(root: Path, engine: docker_engine.Engine) -> None:
    env = {"DOCKER_HOST": engine.host}
    haproxy_image.build(engine, root / "haproxy")
    docker_engine.build(engine, "recon-bench/model:broken", root / "broken", status=500)
    work = root / "endpoint"
    (work / "specs").mkdir(parents=True)
    front = f"  endpoint: {{port: 21500, image: '{haproxy_image.TAG}'}}\n"
    (work / "specs" / "m.yaml").write_text(spec("front", 21100, 3, "v1") + front)
    measure([RECON, "apply", "--auto-approve"], cwd=work, env=env)
    served, lost, stop = [0], [0], threading.Event()

    def load() -> None:
        due = time.monotonic()
        while not stop.is_set():
            due += 0.02
            if ok(21500):
                served[0] += 1
            else:
                lost[0] += 1
            stop.wait(max(0.0, due - time.monotonic()))

    t = threading.Thread(target=load)
    t.start()
    (work / "specs" / "m.yaml").write_text(spec("front", 21100, 3, "v2") + front)
    good = measure([RECON, "apply", "--auto-approve"], cwd=work, env=env)
    (work / "specs" / "m.yaml").write_text(spec("front", 21100, 3, "v3").replace("model:1", "model:broken")
                                           .replace("interval: 0.05}", "interval: 0.05, startTimeout: 3}") + front)
    started = time.perf_counter()
    bad = subprocess.run([RECON, "apply", "--auto-approve"], cwd=work, env={**os.environ, **env},
                         capture_output=True, text=True, check=False)  # fails (rolled back): rc 1
    bad_seconds = time.perf_counter() - started
    time.sleep(0.5)
    stop.set()
    t.join()
    back = "rolled back" if "rolled back" in bad.stdout else "NOT rolled back"
    print(f"behind the endpoint, 50 requests/s: good rolling update of 3 replicas {good.seconds:.2f} s (rc "
          f"{good.rc}), failed one {bad_seconds:.2f} s (rc {bad.returncode}, {back}); "
          f"{served[0] + lost[0]} requests, {lost[0]} failed")


if __name__ == "__main__":
    main()
