"""What parsing known_hosts once per SSH connection cost (issue 16): paramiko builds a key object for every
line of the file, so a plan that connects to every host of a fleet parsed the whole file once per host.

Usage: python bench/known_hosts.py [HOSTS]   (default 300): one parse of a file of HOSTS ed25519 lines (median
of 5), and that times HOSTS, which a plan paid before the file was parsed once per process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    import paramiko

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "k"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        kind, blob = key.with_suffix(".pub").read_text().split()[:2]
        known = Path(tmp) / "known_hosts"
        known.write_text("".join(f"10.231.{i // 240}.{10 + i % 240} {kind} {blob}\n" for i in range(n)))
        times = []
        for _ in range(5):
            started = time.perf_counter()
            paramiko.HostKeys(str(known))
            times.append(time.perf_counter() - started)
    one = statistics.median(times)
    print(f"{n} lines: one parse {one * 1000:.1f} ms; once per host, as before: {one * n:.1f} s of CPU per plan")


if __name__ == "__main__":
    main()
