"""`recon --help` wall time (heavy SDKs must be imported lazily). 20 runs, median and max."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RECON, measure


def main() -> None:
    measure([RECON, "--help"])  # warm the page cache and .pyc files
    samples = [measure([RECON, "--help"]) for _ in range(20)]
    secs = [s.seconds for s in samples]
    print(f"recon --help: median {statistics.median(secs):.3f} s, max {max(secs):.3f} s, "
          f"peak RSS {max(s.peak_mb for s in samples):.0f} MB (20 runs)")


if __name__ == "__main__":
    main()
