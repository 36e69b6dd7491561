"""End to end: the resident planner (reconciler/warm.py). A run it serves must be the run the `recon`
process would have made: the same output, exit code and messages, with the caller's environment,
directory and signals. Each test has a runtime directory of its own, so a planner of its own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reconciler.warm import code_stamp
from tests.conftest import RECON, ROOT, SERVED, planners, recon, served, start_planner, warm_env

QUICKSTART = ROOT / "examples" / "quickstart"


@pytest.fixture
def quickstart(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    shutil.copytree(QUICKSTART, tmp_path / "specs")
    return tmp_path, {"RECON_QUICKSTART_ROOT": str(tmp_path / "root")}


def test_warm_runs_are_the_runs_recon_makes_by_itself(quickstart: tuple[Path, dict[str, str]],
                                                      runtime: Path) -> None:
    cwd, env = quickstart
    start_planner(runtime, cwd, env)
    (cwd / "bad").mkdir()
    (cwd / "bad" / "x.yaml").write_text("apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: g}\n"
                                        "spec:\n  hosts: [{name: a, colour: blue}]\n")
    cases = [("plan",), ("plan", "--detailed-exitcode"), ("plan", "--json"), ("plan", "--markdown"), ("validate",),
             ("validate", "bad"), ("plan", "bad"), ("plan", "nowhere"), ("plan", "--parallelism", "0"),
             ("plan", "--help")]
    seen = {}
    for args in cases:
        cold = recon(*args, cwd=cwd, env={**env, "RECON_WARM": "0"})
        _, warm = served(recon(*args, cwd=cwd, env={**env, **warm_env(runtime)}))
        strip = re.compile(r'"created_at": "[^"]*"')  # the plan's own timestamp
        assert (warm.rc, strip.sub("", warm.out), warm.err) == (cold.rc, strip.sub("", cold.out), cold.err), args
        assert "Traceback" not in warm.text
        seen[args] = warm
    assert seen[("plan",)].rc == 0 and "5 to create" in seen[("plan",)].out
    assert seen[("plan", "--detailed-exitcode")].rc == 2
    bad = seen[("validate", "bad")]
    assert bad.rc == 1 and "bad/x.yaml:5" in bad.err and "colour" in bad.err, bad.text


def test_warm_run_takes_the_callers_environment_and_directory(quickstart: tuple[Path, dict[str, str]],
                                                              runtime: Path) -> None:
    cwd, env = quickstart
    assert recon("apply", "--auto-approve", cwd=cwd, env=env).rc == 0
    start_planner(runtime, cwd, env)
    _, same = served(recon("plan", "--detailed-exitcode", cwd=cwd, env={**env, **warm_env(runtime)}))
    assert same.rc == 0, same.text
    elsewhere = {"RECON_QUICKSTART_ROOT": str(cwd / "other-root")}  # the environment of this run, not the first
    _, moved = served(recon("plan", "--detailed-exitcode", cwd=cwd, env={**elsewhere, **warm_env(runtime)}))
    assert moved.rc == 2 and "5 to create" in moved.out, moved.text
    (cwd / "sub").mkdir()
    _, below = served(recon("plan", "--detailed-exitcode", "../specs", cwd=cwd / "sub",
                            env={**env, **warm_env(runtime)}))
    assert below.rc == 0, below.text


def _slow_project(cwd: Path, marker: Path) -> None:
    """A plan that waits in a command's guard until it is stopped, having touched `marker`."""
    (cwd / "r").mkdir()  # the host's root, where its commands start
    (cwd / "specs").mkdir()
    (cwd / "specs" / "slow.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: hosts}\nspec:\n  hosts: [{name: here, root: ../r}]\n"
        "---\napiVersion: recon/v1\nkind: HostState\nmetadata: {name: slow}\nspec:\n  group: hosts\n  resources:\n"
        f"    - {{type: command, id: wait, run: 'true', unless: 'touch {marker}; sleep 60'}}\n")


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _start_slow(cwd: Path, runtime: Path, marker: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([*RECON, "plan"], cwd=cwd, env={**os.environ, **warm_env(runtime)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = SERVED.match(line)
    assert match, line
    _wait_for(marker)  # the plan is running its guard
    return proc, int(match.group(1))


def test_ctrl_c_reaches_the_warm_run(tmp_path: Path, runtime: Path) -> None:
    marker = tmp_path / "guard-running"
    _slow_project(tmp_path, marker)
    start_planner(runtime, tmp_path, {})
    proc, pid = _start_slow(tmp_path, runtime, marker)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, out, err)
    assert time.monotonic() - started < 10
    assert _gone(pid)


def test_warm_run_ends_when_its_caller_is_killed(tmp_path: Path, runtime: Path) -> None:
    marker = tmp_path / "guard-running"
    _slow_project(tmp_path, marker)
    start_planner(runtime, tmp_path, {})
    proc, pid = _start_slow(tmp_path, runtime, marker)
    proc.kill()
    proc.communicate(timeout=10)
    assert _gone(pid), "the run went on without its caller"


def test_planner_leaves_when_idle(quickstart: tuple[Path, dict[str, str]], runtime: Path) -> None:
    cwd, env = quickstart
    first = start_planner(runtime, cwd, env, idle="1")
    assert first.rc == 0, first.text
    deadline = time.monotonic() + 30
    while planners(runtime):
        assert time.monotonic() < deadline, "the planner stayed after its idle time"
        time.sleep(0.1)
    off = recon("validate", cwd=cwd, env={**env, **warm_env(runtime, idle="0")})
    assert off.rc == 0 and not SERVED.search(off.err)
    time.sleep(1)
    assert not planners(runtime), "RECON_WARM=0 must not leave a planner"


def test_code_stamp_follows_every_module_file(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    first = code_stamp([pkg])
    assert code_stamp([pkg]) == first
    (pkg / "a.py").write_text("x = 22\n")
    assert code_stamp([pkg]) != first
    second = code_stamp([pkg])
    (pkg / "b.py").write_text("")
    assert code_stamp([pkg]) != second


def test_unattended_apply_is_served_and_is_the_apply_recon_makes_by_itself(tmp_path: Path, runtime: Path) -> None:
    """An apply with no terminal on stdin (CI, scripts) is served: the same output, exit code, files and
    audit record as an apply in its own process, and a second apply of the same plan is refused alike."""
    runs = {}
    for name in ("cold", "warm"):
        cwd = tmp_path / name
        shutil.copytree(QUICKSTART, cwd / "specs")
        env = {"RECON_QUICKSTART_ROOT": str(cwd / "root")}
        if name == "warm":
            start_planner(runtime, cwd, env)
            env = {**env, **warm_env(runtime)}
        else:
            env = {**env, "RECON_WARM": "0"}
        got = recon("apply", "--auto-approve", cwd=cwd, env=env)
        if name == "warm":
            _, got = served(got)
        again = recon("plan", "--detailed-exitcode", cwd=cwd, env=env)
        audit = recon("audit", "--json", cwd=cwd, env={**env, "RECON_WARM": "0"})
        runs[name] = (got, again, audit, sorted(p.relative_to(cwd / "root").as_posix()
                                                 for p in (cwd / "root").rglob("*")))
    (cold, cold_again, _, cold_files), (warm, warm_again, warm_audit, warm_files) = runs["cold"], runs["warm"]
    strip = re.compile(r"\b[0-9a-f]{12,64}\b|\d+(\.\d+)? ?m?s\b")  # plan ids, digests of timestamps, durations
    assert warm.rc == cold.rc == 0, warm.text
    assert strip.sub("", warm.out) == strip.sub("", cold.out)
    assert warm_files == cold_files and warm_files
    assert warm_again.rc == cold_again.rc == 0
    assert warm_audit.rc == 0 and '"apply"' in warm_audit.out and "Traceback" not in warm_audit.text


def test_apply_with_a_terminal_on_stdin_keeps_its_own_process(quickstart: tuple[Path, dict[str, str]],
                                                              runtime: Path) -> None:
    """A prompt read from the terminal by a process outside the terminal's foreground group would stop
    it (SIGTTIN), so an apply whose stdin is a terminal is never handed to the planner."""
    cwd, env = quickstart
    start_planner(runtime, cwd, env)
    leader, follower = os.openpty()
    try:
        done = subprocess.run([*RECON, "apply", "--auto-approve"], cwd=cwd, stdin=follower, capture_output=True,
                              text=True, env={**os.environ, **env, **warm_env(runtime)}, timeout=120, check=False)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 0, done.stderr
    assert not SERVED.search(done.stderr), "an apply with a terminal on stdin was served"


def test_ctrl_c_reaches_a_served_apply(tmp_path: Path, runtime: Path) -> None:
    marker = tmp_path / "guard-running"
    _slow_project(tmp_path, marker)
    start_planner(runtime, tmp_path, {})
    proc = subprocess.Popen([*RECON, "apply", "--auto-approve"], cwd=tmp_path, env={**os.environ, **warm_env(runtime)},
                            text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    match = SERVED.match(proc.stderr.readline())
    assert match
    _wait_for(marker)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, out, err)
    assert _gone(int(match.group(1)))
