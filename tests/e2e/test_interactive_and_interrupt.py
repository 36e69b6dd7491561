"""apply on a terminal asks for 'yes'; an apply killed mid-way leaves a journal of what was done."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import RECON, recon
from tests.e2e.test_local_cli import assert_converged, group, hoststate, write


def _specs(tmp_path: Path) -> None:
    write(tmp_path / "specs", {
        "g.yaml": group("a"),
        "s.yaml": hoststate("s", "- type: file\n  path: /hello\n  content: hi\n"),
    })


def _on_terminal(tmp_path: Path, answer: str) -> tuple[int, str]:
    """Run `recon apply` with a pseudo-terminal as stdin/stdout, type `answer` at the prompt."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*RECON, "apply"], cwd=tmp_path, stdin=follower, stdout=follower, stderr=follower,
                            env={**os.environ, "COLUMNS": "200", "TERM": "dumb"})
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"Enter a value:" in out:
                os.write(leader, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    rc = proc.wait(timeout=30)
    os.close(leader)
    return rc, out.decode(errors="replace")


def test_apply_asks_on_a_terminal(tmp_path: Path) -> None:
    _specs(tmp_path)
    rc, out = _on_terminal(tmp_path, "no")
    assert rc == 3, out
    assert "Only 'yes' will be accepted" in out and "apply cancelled" in out
    assert not (tmp_path / "a-root" / "hello").exists()
    rc, out = _on_terminal(tmp_path, "yes")
    assert rc == 0, out
    assert "Apply complete: 1 succeeded" in out
    assert (tmp_path / "a-root" / "hello").read_text() == "hi"
    assert_converged(tmp_path)


def test_killed_apply_leaves_a_record_and_a_rerun_converges(tmp_path: Path) -> None:
    write(tmp_path / "specs", {
        "g.yaml": group("a"),
        "s.yaml": hoststate("s", """\
            - type: file
              path: /first
              content: one
            - type: command
              id: slow
              run: sleep 30 && touch slow-done
              creates: /slow-done
            - type: file
              path: /last
              content: three
            """),
    })
    proc = subprocess.Popen([*RECON, "apply", "--auto-approve"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    journal_dir = tmp_path / ".recon" / "journal"
    deadline = time.monotonic() + 30
    events: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        files = list(journal_dir.glob("*.jsonl")) if journal_dir.exists() else []
        if files:
            events = [json.loads(line) for line in files[0].read_text().splitlines()]
            if any(e["event"] == "step" for e in events):
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # recon and the script it runs, as a crash would
    proc.wait()
    steps = [(e["change"], e["ok"]) for e in events if e["event"] == "step"]
    assert steps == [("HostState/s/file:/first@a", True)]
    begun = {c["change"] for e in events if e["event"] == "begin" for c in e["changes"]}  # type: ignore[attr-defined]
    assert "HostState/s/file:/last@a" in begun and "end" not in {e["event"] for e in events}
    assert (tmp_path / "a-root" / "first").read_text() == "one"
    assert not (tmp_path / "a-root" / "last").exists()

    got = recon("plan", "--json", cwd=tmp_path)
    pending = [c["id"] for c in json.loads(got.out)["changes"] if c["action"] != "noop"]
    assert pending == ["HostState/s/command:slow@a", "HostState/s/file:/last@a"]
    spec = tmp_path / "specs" / "s.yaml"
    spec.write_text(spec.read_text().replace("sleep 30 && ", ""))
    assert recon("apply", "--auto-approve", cwd=tmp_path).rc == 0
    assert_converged(tmp_path)
