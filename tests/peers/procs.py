"""Ending a server process a test started: SIGTERM, and SIGKILL when it has not exited within a grace."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen[bytes], grace: float = 5) -> None:
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
