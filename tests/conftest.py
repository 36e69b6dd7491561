from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli import run

ROOT = Path(__file__).resolve().parent.parent
# keyed hashes of secrets (reconciler/secrets.py) with a fixed key, so fixtures can name them
os.environ.setdefault("RECON_HASH_KEY", "recon-test-key")
# SSH connections are not kept between runs (each test counts its own); tests of the agent turn it on
os.environ.setdefault("RECON_SSH_PERSIST", "0")
# no resident planner (reconciler/warm.py) is left behind by test runs; tests/e2e/test_warm.py turns it on
os.environ.setdefault("RECON_WARM", "0")
# the installed console script, as users run it; `python -m reconciler` where it is not installed
_SCRIPT = Path(sys.executable).parent / "recon"
RECON = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "reconciler"]


@dataclass
class Outcome:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The CLI in-process (fast), in tmp_path, returning exit code and output."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def call(*args: str) -> Outcome:
        capsys.readouterr()
        rc = run(list(args))
        got = capsys.readouterr()
        return Outcome(rc, got.out, got.err)

    return call


def recon(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120, prefix: list[str] | None = None
) -> Outcome:
    """The real CLI in a child process, as a user runs it (inside `prefix`, e.g. a network namespace)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("RECON_DEBUG", None)
    done = subprocess.run(
        [*(prefix or []), *RECON, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)
