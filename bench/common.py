"""Helpers for benchmarks: run a command, measure wall time and peak memory (RSS) of the child."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RECON = str(Path(sys.executable).parent / "recon")


@dataclass
class Sample:
    seconds: float
    peak_mb: float
    rc: int


def measure(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Sample:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        err = proc.stderr.read().decode()
        proc.stderr.close()
        if rc not in (0, 2):
            raise RuntimeError(f"{' '.join(cmd)} failed ({rc}): {err}")
    return Sample(seconds, usage.ru_maxrss / 1024, rc)


def median(samples: list[Sample]) -> Sample:
    return Sample(statistics.median(s.seconds for s in samples),
                  max(s.peak_mb for s in samples), samples[-1].rc)
