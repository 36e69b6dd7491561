"""scripts/sandbox as the README gives it (issue 22: 9): started from a checkout's root, it prints what to type,
and every line it prints runs: each example applies against its servers, and plans empty after."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import ROOT


def test_the_sandbox_runs_every_example_it_points_at(tmp_path: Path) -> None:
    work = tmp_path / "checkout"
    shutil.copytree(ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("busybox"))
    readme = (ROOT / "README.md").read_text()
    assert "sudo scripts/sandbox" in readme
    proc = subprocess.Popen([str(ROOT / "scripts" / "sandbox")], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    said: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            said.append(line.rstrip("\n"))
            if line.strip() == "ready":
                break
        assert said and said[-1] == "ready", "\n".join(said) + (proc.stderr.read() if proc.poll() is not None else "")
        commands = [line.split("#")[0].strip() for line in said if line.startswith("  ")]
        assert commands[0] == ". .sandbox/env"
        env = dict(os.environ)
        for line in (work / ".sandbox" / "env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
        env.pop("RECON_DEBUG", None)
        runs = [shlex.split(c) for c in commands[1:]]
        assert len(runs) == 5 and all("apply" in r for r in runs)
        for argv in runs:  # each as printed, then a plan of the same example: no changes
            got = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
            assert got.returncode == 0, f"{argv}: {got.stdout}{got.stderr}"
            plan = [*argv[:argv.index("apply")], "plan", argv[argv.index("apply") + 1], "--detailed-exitcode"]
            again = subprocess.run(plan, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
            assert again.returncode == 0, f"{plan}: {again.stdout}{again.stderr}"
        health = subprocess.run(["recon", "do", "health", "churn-model", "--specs", "examples/model-docker"], cwd=work,
                                env=env, capture_output=True, text=True, timeout=120, check=False)
        assert health.returncode == 0 and "2 of 2 replicas healthy" in health.stderr, health.stdout + health.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Sandbox stopped." in out, out + err
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "rsbx-" not in spaces and "rsbw-" not in spaces
