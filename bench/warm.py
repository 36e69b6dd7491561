"""The resident planner (reconciler/warm.py) on the quickstart: `recon validate` and `recon plan`
as a new process each time (RECON_WARM=0) and handed to the planner, median of 20 runs each, the
`recon` process's peak RSS, and the planner's own RSS. Uses a runtime directory of its own."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RECON, measure  # noqa: E402

QUICKSTART = HERE.parent / "examples" / "quickstart"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="rwb", dir="/tmp"))
    shutil.copytree(QUICKSTART, work / "specs")
    env = {"RECON_QUICKSTART_ROOT": str(work / "root"), "XDG_RUNTIME_DIR": str(work), "RECON_WARM": "60"}
    try:
        print("| run | cold (new process) | warm (resident planner) | `recon` process peak RSS, warm |")
        print("|---|---|---|---|")
        for args in (["validate"], ["plan"]):
            cold = [measure([RECON, *args], cwd=work, env={**env, "RECON_WARM": "0"}) for _ in range(20)]
            measure([RECON, *args], cwd=work, env=env)  # leaves the planner behind
            deadline = time.monotonic() + 30
            while not list(work.glob("recon/plan-*.sock")) and time.monotonic() < deadline:
                time.sleep(0.05)
            warm = [measure([RECON, *args], cwd=work, env=env) for _ in range(20)]
            print(f"| `recon {' '.join(args)}` | {statistics.median(s.seconds for s in cold):.3f} s | "
                  f"{statistics.median(s.seconds for s in warm):.3f} s | {max(s.peak_mb for s in warm):.0f} MB |")
        pid = subprocess.run(["pgrep", "-f", f"reconciler.warm {work}/"], capture_output=True, text=True).stdout.split()
        if pid:
            rss = next(line for line in Path(f"/proc/{pid[0]}/status").read_text().splitlines()
                       if line.startswith("VmRSS"))
            print(f"resident planner: {int(rss.split()[1]) / 1024:.0f} MB RSS")
    finally:
        subprocess.run(["pkill", "-f", f"reconciler.warm {work}/"], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    main()
