"""`recon plan` over N local file specs where nothing changed (after one apply): wall time and peak RSS;
and the first apply that created them.

Usage: python bench/plan_local.py [N ...]   (default: 500 1000 2000 5000); 5 runs each, median.
The specs: N files of ~60 bytes with a mode, in HostStates of 100 resources, 10 per spec file.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RECON, Sample, measure, median

PER_STATE = 100


def make_specs(root: Path, n: int) -> Path:
    specs = root / "specs"
    specs.mkdir()
    (specs / "group.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: bench}\n"
        f"spec:\n  hosts:\n    - {{name: local, root: {root / 'root'}}}\n"
    )
    states = (n + PER_STATE - 1) // PER_STATE
    for s in range(states):
        lines = [f"---\napiVersion: recon/v1\nkind: HostState\nmetadata: {{name: s{s}}}\n"
                 "spec:\n  group: bench\n  resources:\n"]
        for i in range(s * PER_STATE, min(n, (s + 1) * PER_STATE)):
            lines.append(f"    - type: file\n      path: /data/d{s}/f{i}.conf\n      mode: \"0644\"\n"
                         f"      content: \"value-{i} = {'x' * 40}\\n\"\n")
        (specs / f"states-{s // 10}.yaml").open("a").write("".join(lines))
    return specs


def run(n: int, runs: int = 5) -> tuple[Sample, Sample]:
    """(first apply, median no-op plan)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_specs(root, n)
        applied = measure([RECON, "apply", "--auto-approve", "specs"], cwd=root)
        samples = [measure([RECON, "plan", "specs", "--detailed-exitcode"], cwd=root) for _ in range(runs)]
        if any(s.rc != 0 for s in samples):
            raise RuntimeError("the plan after apply was not empty")
        return applied, median(samples)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [500, 1000, 2000, 5000]
    print("| files | no-op plan, median wall s | plan peak RSS MB | first apply wall s | apply peak RSS MB |")
    print("|---|---|---|---|---|")
    for n in sizes:
        applied, s = run(n)
        print(f"| {n} | {s.seconds:.2f} | {s.peak_mb:.0f} | {applied.seconds:.2f} | {applied.peak_mb:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
