"""Models on Kubernetes against the project's API server (tests/peers/kube_api.py), as issue 6 asks.

Usage: python bench/models_kube.py [MODELS] [NAMESPACES]   (default 500 and 5)

Each Model is a ConfigMap, a Deployment and a Service (no secret env), so 3 objects; the peer's
rollouts finish at once (settle 0), so the apply measures recon and the server, not a controller.
- plan of everything new: API calls (LISTs, dry runs) and wall time;
- plan where nothing changed (median of 3): target one LIST per kind and namespace, no dry run;
- plan where 10 Models changed their env: target the LISTs plus one dry run per changed object.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import RECON, Sample, measure  # noqa: E402

from tests.peers import kube_api  # noqa: E402


def spec(name: str, namespace: str, kubeconfig: Path, version: str) -> str:
    return (f"---\napiVersion: recon/v1\nkind: Model\nmetadata: {{name: {name}}}\nspec:\n  runtime: kubernetes\n"
            f"  image: registry.local/models/{name}:1\n  replicas: 2\n  port: 8080\n"
            f"  kubernetes: {{kubeconfig: {kubeconfig}, namespace: {namespace}}}\n"
            f"  env: {{MODEL_VERSION: {version}}}\n  resources: {{cpus: 0.5, memory: 512m}}\n"
            "  health: {path: /health}\n")


def write(root: Path, n: int, spaces: int, kubeconfig: Path, changed: int = 0) -> None:
    (root / "specs" / "models.yaml").write_text("".join(
        spec(f"m{i:03}", f"ns{i % spaces}", kubeconfig, "v2" if i < changed else "v1") for i in range(n)))


def counted(peer: kube_api.KubePeer, root: Path, *args: str) -> tuple[Sample, Counter[str]]:
    mark = len(peer.store.calls)
    sample = measure([RECON, *args], cwd=root)
    return sample, Counter(v for v, _ in peer.store.calls[mark:])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    spaces = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    peer = kube_api.start(settle=0)
    try:
        for i in range(spaces):
            peer.store.create(kube_api.BY_PLURAL["v1", "namespaces"], "", {"metadata": {"name": f"ns{i}"}}, "bench")
        with tempfile.TemporaryDirectory(prefix="recon-bench-kube-") as tmp:
            root = Path(tmp)
            (root / "specs").mkdir()
            kubeconfig = peer.kubeconfig(root / "kubeconfig")
            write(root, n, spaces, kubeconfig)
            first, calls = counted(peer, root, "plan")
            print(f"# {n} Models in {spaces} namespaces, 3 objects each ({3 * n} objects)")
            print(f"plan, all new: {first.seconds:.2f} s, peak RSS {first.peak_mb:.0f} MB; API calls {dict(calls)}")
            started = time.perf_counter()
            applied, calls = counted(peer, root, "apply", "--auto-approve")
            print(f"apply, all new: {time.perf_counter() - started:.1f} s (rc {applied.rc}); API calls {dict(calls)}")
            samples, calls = [], Counter()
            for _ in range(3):
                sample, calls = counted(peer, root, "plan", "--detailed-exitcode")
                samples.append(sample)
            print(f"plan, nothing changed: median {statistics.median(s.seconds for s in samples):.2f} s, rc "
                  f"{samples[-1].rc}, peak RSS {max(s.peak_mb for s in samples):.0f} MB; API calls {dict(calls)}")
            write(root, n, spaces, kubeconfig, changed=10)
            sample, calls = counted(peer, root, "plan")
            print(f"plan, 10 Models changed: {sample.seconds:.2f} s; API calls {dict(calls)}")
    finally:
        peer.stop()


if __name__ == "__main__":
    main()
