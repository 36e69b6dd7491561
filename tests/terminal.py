"""Run the real CLI on a pseudo-terminal, as a person at a terminal does, answering its prompts."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from tests.conftest import RECON


def on_terminal(args: list[str], cwd: Path, prompt: bytes = b"", answer: str = "",
                env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    """`recon ARGS` with a pty as stdin, stdout and stderr; types `answer` once `prompt` has been shown.
    Returns the exit code and everything the terminal showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*RECON, *args], cwd=cwd, stdin=follower, stdout=follower, stderr=follower,
                            env={**os.environ, "COLUMNS": "200", "TERM": "dumb", **(env or {})})
    os.close(follower)
    out = b""
    answered = not prompt
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not answered and prompt in out:
                os.write(leader, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    rc = proc.wait(timeout=30)
    os.close(leader)
    return rc, out.decode(errors="replace")
