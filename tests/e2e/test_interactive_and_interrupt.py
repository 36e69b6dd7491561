"""apply on a terminal asks for 'yes'; an apply killed mid-way leaves a journal of what was done."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import crash_apply, recon
from tests.e2e.test_local_cli import assert_converged, group, hoststate, write
from tests.terminal import on_terminal


def _specs(tmp_path: Path) -> None:
    write(tmp_path / "specs", {
        "g.yaml": group("a"),
        "s.yaml": hoststate("s", "- type: file\n  path: /hello\n  content: hi\n"),
    })


def _on_terminal(tmp_path: Path, answer: str) -> tuple[int, str]:
    """`recon apply` on a pseudo-terminal, typing `answer` at the prompt."""
    return on_terminal(["apply"], tmp_path, b"Enter a value:", answer)


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
    (tmp_path / "a-root").mkdir()
    (tmp_path / "a-root" / "first").write_text("old")  # replaced: its backup is kept until the host's script ends
    journal_dir = tmp_path / ".recon" / "journal"
    events: list[dict[str, object]] = []

    def stepped() -> bool:  # the journal has its first step
        files = list(journal_dir.glob("*.jsonl")) if journal_dir.exists() else []
        if files:
            events[:] = [json.loads(line) for line in files[0].read_text().splitlines()]
        return any(e["event"] == "step" for e in events)

    crash_apply(tmp_path, stepped)  # recon and the script it runs, as a crash would
    steps = [(e["change"], e["ok"]) for e in events if e["event"] == "step"]
    assert steps == [("HostState/s/file:/first@a", True)]
    begun = {c["change"] for e in events if e["event"] == "begin" for c in e["changes"]}  # type: ignore[attr-defined]
    assert "HostState/s/file:/last@a" in begun and "end" not in {e["event"] for e in events}
    assert (tmp_path / "a-root" / "first").read_text() == "one"
    assert not (tmp_path / "a-root" / "last").exists()

    assert (tmp_path / "a-root" / "first.recon-bak").read_text() == "old"  # left by the killed run

    got = recon("plan", "--json", cwd=tmp_path)
    pending = {c["id"]: c for c in json.loads(got.out)["changes"] if c["action"] != "noop"}
    assert list(pending) == ["HostState/s/file:/first@a", "HostState/s/command:slow@a", "HostState/s/file:/last@a"]
    assert pending["HostState/s/file:/first@a"]["fields"] == [
        {"path": "backup", "before": "/first.recon-bak", "after": None}]
    assert "left by an interrupted apply" in pending["HostState/s/file:/first@a"]["reason"]
    spec = tmp_path / "specs" / "s.yaml"
    spec.write_text(spec.read_text().replace("sleep 30 && ", ""))
    assert recon("apply", "--auto-approve", cwd=tmp_path).rc == 0
    assert_converged(tmp_path)  # the re-run finished the work and cleaned up after the killed one
    assert "No interrupted apply." in recon("rollback", "--list", cwd=tmp_path).out  # superseded by the re-run
    assert not (tmp_path / "a-root" / "first.recon-bak").exists()
    assert (tmp_path / "a-root" / "first").read_text() == "one"


def test_a_terminal_shows_a_live_table_of_targets(tmp_path: Path) -> None:
    write(tmp_path / "specs", {
        "g.yaml": group("a", "b", "c"),
        "s.yaml": hoststate("s", """\
            - type: file
              path: /one
              content: "1"
            - type: command
              id: slow
              run: sleep 1; touch two
              creates: /two
            """),
    })
    rc, raw = on_terminal(["apply", "--auto-approve"], tmp_path, env={"TERM": "xterm"})
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)  # without colours and cursor moves
    assert rc == 0, out
    assert "target" in out and "state" in out and "running" in out, out  # the table, redrawn
    assert "HostState/s/command:slow" in out
    assert "Apply complete: 6 succeeded" in out
    plain = recon("apply", "--auto-approve", cwd=tmp_path)  # not a terminal: lines only
    assert "running" not in plain.text


def test_an_interrupted_apply_can_be_rolled_back_from_its_journal(tmp_path: Path) -> None:
    write(tmp_path / "specs", {
        "g.yaml": group("a"),
        "s.yaml": hoststate("s", """\
            - type: file
              path: /first
              content: one
            - type: directory
              path: /made
            - type: command
              id: slow
              run: sleep 30 && touch slow-done
              creates: /slow-done
            """),
    })
    (tmp_path / "a-root").mkdir()
    (tmp_path / "a-root" / "first").write_text("old")
    crash_apply(tmp_path, (tmp_path / "a-root" / "made").is_dir, settle=0.3)
    assert (tmp_path / "a-root" / "first").read_text() == "one"
    listed = recon("rollback", "--list", cwd=tmp_path)
    assert "2 of 3 changes finished" in listed.out, listed.text
    refused = recon("rollback", cwd=tmp_path)
    assert refused.rc == 3 and "--auto-approve" in refused.err
    done = recon("rollback", "--auto-approve", cwd=tmp_path)
    assert done.rc == 0, done.text
    assert "Rollback complete: 2 undone, 0 not." in done.out
    assert (tmp_path / "a-root" / "first").read_text() == "old"  # from the backup the killed run kept
    assert not (tmp_path / "a-root" / "made").exists() and not (tmp_path / "a-root" / "first.recon-bak").exists()
    assert "No interrupted apply." in recon("rollback", "--list", cwd=tmp_path).out
    runs = json.loads(recon("audit", "--json", cwd=tmp_path).out)
    assert runs[0]["command"] == "rollback" and runs[0]["outcome"] == "ok"
    assert recon("plan", "--detailed-exitcode", cwd=tmp_path).rc == 2  # the work is to do again
