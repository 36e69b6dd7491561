from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.trust import CHANGE_RUNS

ROOT = Path(__file__).resolve().parent.parent
# keyed hashes of secrets (providers/secrets.py) with a fixed key, so fixtures can name them
os.environ.setdefault("RECON_HASH_KEY", "recon-test-key")
# SSH connections are not kept between runs (each test counts its own); tests of the agent turn it on
os.environ.setdefault("RECON_SSH_PERSIST", "0")
# no resident planner (reconciler/warm.py) is left behind by test runs; tests/e2e/test_warm.py turns it on
os.environ.setdefault("RECON_WARM", "0")
# what a CI system running this suite says of its own run is not the tests' to inherit: GitHub's variables (a pull
# request's event, its actor), any system's saying the run is a change's, and recon's trust and state settings
# change what recon trusts and where it keeps state
_SAID = {n for r in CHANGE_RUNS for n in r.names}
for _name in [n for n in os.environ if n.startswith(("GITHUB_", "GITLAB_")) or n in _SAID or n in (
        "RECON_POLICY", "RECON_POLICY_REF", "RECON_STATE_BACKEND", "RECON_STATE_DSN")]:
    del os.environ[_name]
# the run's own runtime directory (the sqlite backend's lock files, resident planners' and SSH agents' sockets), never
# the user's: a lock an earlier run left (an apply killed mid-way keeps its record) would be listed in this one's
_RUNTIME = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: a socket path has at most 107 bytes
os.environ["XDG_RUNTIME_DIR"] = _RUNTIME
atexit.register(shutil.rmtree, _RUNTIME, True)
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


def crash_apply(cwd: Path, ready: Callable[[], bool], settle: float = 0.0, timeout: float = 30,
                env: dict[str, str] | None = None, prefix: list[str] | None = None,
                args: Sequence[str] = ("apply", "--auto-approve")) -> None:
    """`recon apply --auto-approve` (or `args`) killed mid-way, as a crash would kill it: once `ready()` (polled)
    says it has got far enough, and `settle` seconds more, SIGKILL to recon and everything it started."""
    import signal

    proc = subprocess.Popen([*(prefix or []), *RECON, *args], cwd=cwd,
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready():
        time.sleep(0.05)
    time.sleep(settle)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

# The resident planner (reconciler/warm.py), for the tests that turn it on: each gets a runtime directory,
# so a planner, of its own, and RECON_WARM_REPORT makes a served run say so on stderr.
SERVED = re.compile(r"recon: planned by the resident planner \(pid (\d+)\)\n")


@pytest.fixture
def runtime() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rw", dir="/tmp"))  # short: a socket path has at most 107 bytes
    yield path
    subprocess.run(["pkill", "-f", f"reconciler.warm {path}/"], check=False)  # now, not when idle
    shutil.rmtree(path, ignore_errors=True)


def warm_env(runtime: Path, idle: str = "30") -> dict[str, str]:
    return {"RECON_WARM": idle, "RECON_WARM_REPORT": "1", "XDG_RUNTIME_DIR": str(runtime)}


def planners(runtime: Path) -> list[Path]:
    return list(runtime.glob("recon/plan-*.sock"))


def start_planner(runtime: Path, cwd: Path, env: dict[str, str], *args: str, prefix: list[str] | None = None,
                  idle: str = "30") -> Outcome:
    """A first run (`validate` unless `args` say otherwise) plans by itself and leaves the planner behind;
    wait until it listens. The first run's outcome."""
    first = recon(*(args or ("validate",)), cwd=cwd, env={**env, **warm_env(runtime, idle)}, prefix=prefix)
    assert not SERVED.search(first.err), first.text
    deadline = time.monotonic() + 30
    while not planners(runtime):
        assert time.monotonic() < deadline, "no resident planner started"
        time.sleep(0.05)
    return first


def served(got: Outcome) -> tuple[int, Outcome]:
    """The pid of the planner's child that made the run, and the run without the planner's report line."""
    match = SERVED.search(got.err)
    assert match, f"not served by the resident planner: {got.text}"
    return int(match.group(1)), Outcome(got.rc, got.out, SERVED.sub("", got.err))
