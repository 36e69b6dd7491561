"""The state backend: locks, audit, drift baseline and applied plans shared by runners through a real
PostgreSQL (tests/peers/postgres.py), and the same promises with SQLite on one machine. A "runner" is a
working directory of its own, with its own copy of the specs and its own .recon state directory, run as
separate processes: what they share is only the backend and the host they change."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RECON, crash_apply, recon
from tests.peers import postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[postgres.Postgres]:
    server = postgres.start()
    yield server
    server.stop()


@pytest.fixture
def dsn(pg: postgres.Postgres, request: pytest.FixtureRequest) -> str:
    return pg.create_db(re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50])


def shared(dsn: str) -> dict[str, str]:
    return {"RECON_STATE_BACKEND": "postgres", "RECON_STATE_DSN": dsn}


def runner(tmp_path: Path, name: str, target: Path, resources: str, settings: str = "") -> Path:
    """A working directory with its own specs for the local host whose root is `target`."""
    work = tmp_path / name
    (work / "specs").mkdir(parents=True, exist_ok=True)
    (work / "specs" / "group.yaml").write_text(
        f"apiVersion: recon/v1\nkind: HostGroup\nmetadata: {{name: hosts}}\nspec:\n"
        f"  hosts: [{{name: box, root: {target}}}]\n")
    (work / "specs" / "state.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostState\nmetadata: {name: app}\nspec:\n  group: hosts\n  resources:\n"
        + "".join(f"    {line}\n" for line in resources.strip().splitlines()))
    if settings:
        (work / "recon.yaml").write_text(settings)
    target.mkdir(exist_ok=True)
    return work


SLOW = """\
- type: command
  id: slow
  run: sleep 3; touch done
  creates: /done
"""


def key(target: Path) -> str:
    return f"host/local/{socket.gethostname()}{target.resolve()}"


def held_by(work: Path, target: Path, env: dict[str, str], pid: int, within: float = 20) -> str:
    """Wait until `recon lock list` (from `work`) says the target's lock is held by `pid`; the listing."""
    deadline = time.monotonic() + within
    while True:
        listed = recon("lock", "list", cwd=work, env=env)
        if f"{key(target)}: held by" in listed.out and f"(pid {pid}" in listed.out:
            return listed.out
        assert time.monotonic() < deadline, listed.text
        time.sleep(0.2)


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_two_runners_changing_one_host_take_turns(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    env = shared(request.getfixturevalue("dsn")) if backend == "postgres" else {}
    target = tmp_path / "box"
    first, second = runner(tmp_path, "one", target, SLOW), runner(tmp_path, "two", target, SLOW)
    holder = subprocess.Popen([*RECON, "apply", "--auto-approve"], cwd=first, env={**__import__("os").environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held_by(second, target, env, holder.pid)
    refused = recon("apply", "--auto-approve", cwd=second, env=env)
    assert refused.rc == 1 and f"{key(target)} is locked by" in refused.err, refused.text
    assert f"(pid {holder.pid})" in refused.err and "nothing was applied" in refused.err
    waited = recon("apply", "--auto-approve", "--lock-timeout", "30s", cwd=second, env=env)
    assert waited.rc == 0 and f"Waiting for the lock {key(target)}" in waited.out, waited.text
    assert holder.wait(timeout=30) == 0
    assert "No changes" in waited.out  # it planned after the first apply's work was done
    runs = json.loads(recon("audit", "--json", cwd=second, env=env).out)
    applies = [r for r in runs if r["command"] == "apply" and r["outcome"] == "ok"]
    if backend == "postgres":  # one shared audit: the first runner's apply is in it
        assert [r["pid"] for r in applies] == [holder.pid]
    assert recon("lock", "list", cwd=second, env=env).out.strip() == "No locks."


def test_the_audit_log_in_postgres_is_append_only_and_tamper_evident(tmp_path: Path, dsn: str,
                                                                     pg: postgres.Postgres) -> None:
    env = shared(dsn)
    work = runner(tmp_path, "one", tmp_path / "box", "- {type: file, path: /a, content: one}")
    assert recon("apply", "--auto-approve", cwd=work, env=env).rc == 0
    held = recon("audit", "verify", cwd=work, env=env)
    assert held.rc == 0 and "holds" in held.out and dsn.split("@")[1] in held.out, held.text
    db = dsn.rsplit("/", 1)[1]
    with pytest.raises(Exception, match="append-only"):
        pg.sql(db, "UPDATE events SET message = 'nothing happened' WHERE event = 'result'")
    with pytest.raises(Exception, match="append-only"):
        pg.sql(db, "DELETE FROM events")
    with pytest.raises(Exception, match="append-only"):
        pg.sql(db, "TRUNCATE events")
    (seq,) = pg.sql(db, "SELECT min(seq) FROM events WHERE event = 'result'")[0]
    pg.sql(db, f"ALTER TABLE events DISABLE TRIGGER USER; UPDATE events SET message = 'nothing happened' "
               f"WHERE seq = {seq}; ALTER TABLE events ENABLE TRIGGER USER")
    broken = recon("audit", "verify", cwd=work, env=env)
    assert broken.rc == 2 and f"event {seq} (result of run" in broken.out and "changed after it was written" in \
        broken.out, broken.text
    listed = recon("audit", cwd=work, env=env)
    assert listed.rc == 0 and "has been tampered with" in listed.err
    assert pg.password not in broken.text + listed.text


def test_the_audit_log_in_sqlite_is_tamper_evident(tmp_path: Path) -> None:
    import sqlite3

    work = runner(tmp_path, "one", tmp_path / "box", "- {type: file, path: /a, content: one}")
    assert recon("apply", "--auto-approve", cwd=work).rc == 0
    assert recon("audit", "verify", cwd=work).rc == 0
    db = sqlite3.connect(work / ".recon" / "audit.db")
    (seq,) = db.execute("SELECT min(seq) FROM events WHERE event = 'result'").fetchone()
    db.executescript(f"DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete; "
                     f"UPDATE events SET ok = 1, message = '' WHERE seq = {seq}; DELETE FROM events WHERE seq = 2;")
    db.close()
    broken = recon("audit", "verify", cwd=work)
    assert broken.rc == 2 and "event 3 (" in broken.out and "does not follow the event before it" in broken.out, \
        broken.text
    assert "has been tampered with" in recon("audit", cwd=work).err


def test_a_killed_holders_lease_expires_and_the_next_apply_converges(tmp_path: Path, dsn: str) -> None:
    env = shared(dsn)
    settings = "state:\n  backend: postgres\n  dsn: {env: RECON_STATE_DSN}\n  lease: 5\n"
    target = tmp_path / "box"
    resources = "- type: command\n  id: slow\n  run: sleep 20; touch done\n  creates: /done\n"
    first = runner(tmp_path, "one", target, resources, settings)
    second = runner(tmp_path, "two", target, resources, settings)
    crash_apply(first, lambda: f"{key(target)}: held by" in recon("lock", "list", cwd=second, env=env).out,
                settle=0.5, env=env)
    assert f"{key(target)}: held by" in recon("lock", "list", cwd=second, env=env).out  # until its lease ends
    started = time.monotonic()
    (target / "done").touch()  # what the killed apply would have done: the next apply has nothing left
    waited = recon("apply", "--auto-approve", "--lock-timeout", "30s", cwd=second, env=env)
    assert waited.rc == 0 and "Waiting for the lock" in waited.out, waited.text
    assert 1 < time.monotonic() - started < 20
    assert "No changes" in waited.out
    runs = json.loads(recon("audit", "--json", cwd=second, env=env).out)
    assert [r["outcome"] for r in runs if r["command"] == "apply"] == ["interrupted"]  # the killed one, recorded


def test_drift_on_a_fresh_runner_uses_the_shared_history(tmp_path: Path, dsn: str) -> None:
    env = shared(dsn)
    target = tmp_path / "box"
    first = runner(tmp_path, "one", target, "- {type: file, path: /a, content: one}")
    assert recon("apply", "--auto-approve", cwd=first, env=env).rc == 0
    (target / "a").write_text("changed by hand")
    fresh = runner(tmp_path, "two", target, "- {type: file, path: /a, content: one}")
    report = json.loads(recon("drift", "--json", cwd=fresh, env=env).out)
    assert [c["id"] for c in report["drift"]] == ["HostState/app/file:/a@box"] and report["pending"] == []
    alone = json.loads(recon("drift", "--json", cwd=fresh).out)  # its own sqlite has no history: all pending
    assert alone["drift"] == [] and len(alone["pending"]) == 1
    (fresh / "specs" / "state.yaml").write_text((fresh / "specs" / "state.yaml").read_text().replace("one", "two"))
    report = json.loads(recon("drift", "--json", cwd=fresh, env=env).out)
    assert report["drift"] == [] and [c["id"] for c in report["pending"]] == ["HostState/app/file:/a@box"]


def test_a_saved_plan_applied_on_one_runner_is_not_applied_again_on_another(tmp_path: Path, dsn: str) -> None:
    env = shared(dsn)
    target = tmp_path / "box"
    first = runner(tmp_path, "one", target, "- {type: file, path: /a, content: one}")
    second = runner(tmp_path, "two", target, "- {type: file, path: /a, content: one}")
    assert recon("plan", "--out", "plan.json", cwd=first, env=env).rc == 0
    (second / "plan.json").write_text((first / "plan.json").read_text())
    assert recon("apply", "plan.json", cwd=first, env=env).rc == 0
    (target / "a").unlink()
    again = recon("apply", "plan.json", cwd=second, env=env)
    assert again.rc == 0 and "was already applied at" in again.out, again.text
    assert not (target / "a").exists()


@pytest.mark.parametrize("how", ["wrong password", "nothing listening"])
def test_a_backend_that_cannot_be_reached_is_one_message_and_nothing_is_applied(
        tmp_path: Path, pg: postgres.Postgres, how: str) -> None:
    from tests.peers.registry import free_port

    bad = pg.dsn("postgres", "not-the-password") if how == "wrong password" else \
        f"postgresql://recon:{pg.password}@127.0.0.1:{free_port()}/recon"
    work = runner(tmp_path, "one", tmp_path / "box", "- {type: file, path: /a, content: one}")
    got = recon("apply", "--auto-approve", cwd=work, env=shared(bad))
    assert got.rc == 1 and "error: the state backend postgres://recon@127.0.0.1:" in got.err, got.text
    assert "internal error" not in got.text and pg.password not in got.text and "not-the-password" not in got.text
    assert len(got.err.strip().splitlines()) == 1
    assert not (tmp_path / "box" / "a").exists()


@pytest.mark.parametrize(("settings", "says"), [
    ("state:\n  backend: mysql\n", "recon.yaml:2:3: state.backend: 'mysql' is not a choice here"),
    ("state:\n  backend: postgres\n", "recon.yaml:1:1: state: the postgres backend needs a dsn"),
    ("state:\n  backend: postgres\n  dsn: postgresql://u:pw@db/x\n",
     "recon.yaml:3:3: state.dsn: expected a mapping, got str (not shown: it may be the secret itself)"),
    ("state:\n  backend: postgres\n  dsn: {env: NOT_SET_HERE}\n",
     "error: the postgres state backend's dsn (env NOT_SET_HERE) cannot be read: environment variable NOT_SET_HERE"),
])
def test_bad_state_settings_are_one_clear_message(tmp_path: Path, settings: str, says: str) -> None:
    work = runner(tmp_path, "one", tmp_path / "box", "- {type: file, path: /a, content: one}", settings)
    got = recon("apply", "--auto-approve", cwd=work)
    assert got.rc == 1 and says in got.err and "internal error" not in got.err, got.text
    assert "pw@db" not in got.text
    assert not (tmp_path / "box" / "a").exists()


def test_twenty_applies_at_once_over_five_targets_never_overlap_and_are_each_recorded_once(
        tmp_path: Path, dsn: str) -> None:
    import os

    env = shared(dsn)
    targets = [tmp_path / f"box{t}" for t in range(5)]
    works = []
    for i in range(20):
        guard = (f"- type: command\n  id: step-{i}\n  creates: /done-{i}\n  run: >-\n"
                 f"    if [ -e busy ]; then echo {i} >> overlaps; fi; touch busy; sleep 0.3; rm busy; touch done-{i}\n")
        works.append(runner(tmp_path, f"runner{i}", targets[i % 5], guard))
    procs = [subprocess.Popen([*RECON, "apply", "--auto-approve", "--lock-timeout", "120s"], cwd=w,
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in works]
    outcomes = [(p.wait(timeout=240), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
                for p in procs]
    assert all(rc == 0 for rc, _, _ in outcomes), [o for o in outcomes if o[0]]
    assert not any((t / "overlaps").exists() for t in targets)  # never two applies on one target at once
    assert all((targets[i % 5] / f"done-{i}").exists() for i in range(20))
    runs = json.loads(recon("audit", "--json", "--limit", "100", cwd=works[0], env=env).out)
    applies = [r for r in runs if r["command"] == "apply"]
    assert len(applies) == 20 and {r["outcome"] for r in applies} == {"ok"}
    assert sorted(r["pid"] for r in applies) == sorted(p.pid for p in procs)  # each once
    assert recon("audit", "verify", cwd=works[0], env=env).rc == 0  # twenty writers, one unbroken chain


def test_local_history_migrates_into_postgres_with_its_chain(tmp_path: Path, dsn: str) -> None:
    env = shared(dsn)
    target = tmp_path / "box"
    work = runner(tmp_path, "one", target, "- {type: file, path: /a, content: one}")
    assert recon("apply", "--auto-approve", cwd=work).rc == 0  # sqlite: this machine's history
    local = json.loads(recon("audit", "--json", cwd=work).out)
    moved = recon("state", "migrate", "--to", "postgres", cwd=work, env=env)
    assert moved.rc == 0 and "its chain holds" in moved.out, moved.text
    assert json.loads(recon("audit", "--json", cwd=work, env=env).out) == local
    assert recon("audit", "verify", cwd=work, env=env).rc == 0
    (target / "a").write_text("changed by hand")
    fresh = runner(tmp_path, "two", target, "- {type: file, path: /a, content: one}")
    report = json.loads(recon("drift", "--json", cwd=fresh, env=env).out)
    assert [c["id"] for c in report["drift"]] == ["HostState/app/file:/a@box"]  # the baseline came along
    again = recon("state", "migrate", "--to", "postgres", cwd=work, env=env)
    assert again.rc == 1 and "already holds events" in again.err


def test_a_plan_saved_on_one_runner_is_shown_and_applied_by_its_id_on_another(tmp_path: Path, dsn: str) -> None:
    env = shared(dsn)
    target = tmp_path / "box"
    first = runner(tmp_path, "pr", target, "- {type: file, path: /a, content: one}")
    second = runner(tmp_path, "merge", target, "- {type: file, path: /a, content: one}")
    planned = recon("plan", "--out", "plan.json", "--json", cwd=first, env=env)
    plan_id = json.loads(planned.out)["plan_id"]
    shown = recon("show", plan_id, "--json", cwd=second, env=env)
    assert shown.rc == 0 and json.loads(shown.out) == json.loads(planned.out), shown.text
    applied = recon("apply", plan_id, cwd=second, env=env)
    assert applied.rc == 0 and (target / "a").read_text() == "one", applied.text
    assert "was already applied" in recon("apply", plan_id, cwd=first, env=env).out
    missing = recon("show", "0123456789ab", cwd=second, env=env)
    assert missing.rc == 1 and "no plan 0123456789ab is kept in postgres://recon@127.0.0.1:" in missing.err


def test_a_backend_lost_mid_apply_starts_no_new_step_and_the_next_apply_records_what_was_done(
        tmp_path: Path, dsn: str, pg: postgres.Postgres) -> None:
    import os

    env = shared(dsn)
    target = tmp_path / "box"
    work = runner(tmp_path, "one", target, "- type: command\n  id: slow\n  run: touch started; sleep 3; touch "
                  "slow-done\n  creates: /slow-done\n", "state:\n  backend: postgres\n  dsn: {env: RECON_STATE_DSN}\n"
                  "  lease: 6\n")
    (work / "specs" / "later.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostState\nmetadata: {name: later, dependsOn: [HostState/app]}\nspec:\n"
        "  group: hosts\n  resources:\n    - {type: file, path: /b, content: later}\n")
    proc = subprocess.Popen([*RECON, "apply", "--auto-approve"], cwd=work, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not (target / "started").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    db = dsn.rsplit("/", 1)[1]
    pg.sql("postgres", f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "the audit log could not be written during the apply" in out and "no step started after that" in out
    assert (target / "slow-done").exists() and not (target / "b").exists()  # the step under way finished; no new one
    assert "HostState/later/file:/b@box" in out and "not run:" in out
    again = recon("apply", "--auto-approve", "--lock-timeout", "30s", cwd=work, env=env)
    assert again.rc == 0 and (target / "b").read_text() == "later", again.text
    runs = json.loads(recon("audit", "--json", cwd=work, env=env).out)
    (lost,) = [r for r in runs if any(e["event"] == "synced" for e in r["events"])]
    assert lost["command"] == "apply" and lost["pid"] == proc.pid
    events = [(e["event"], e["change"]) for e in lost["events"]]
    assert ("applied", "HostState/app/command:slow@box") in events and events.count(("end", "")) == 1, events
    assert recon("audit", "verify", cwd=work, env=env).rc == 0


def test_an_audit_log_that_cannot_be_made_is_one_message(tmp_path: Path) -> None:
    work = runner(tmp_path, "one", tmp_path / "box", "- {type: file, path: /a, content: one}")
    (tmp_path / "file").write_text("not a directory")
    got = recon("apply", "--auto-approve", cwd=work, env={"RECON_AUDIT": str(tmp_path / "file" / "audit.db")})
    assert got.rc == 1 and f"the audit log {tmp_path / 'file' / 'audit.db'} cannot be opened" in got.err, got.text
    assert "internal error" not in got.text and not (tmp_path / "box" / "a").exists()


def test_a_lock_directory_others_may_enter_is_refused_with_the_fix(tmp_path: Path) -> None:
    work = runner(tmp_path, "one", tmp_path / "box", "- {type: file, path: /a, content: one}")
    shared_dir = tmp_path / "run"
    (shared_dir / "recon").mkdir(parents=True)
    (shared_dir / "recon").chmod(0o777)
    got = recon("apply", "--auto-approve", cwd=work, env={"XDG_RUNTIME_DIR": str(shared_dir)})
    assert got.rc == 1 and "no directory for locks:" in got.err and "RECON_LOCK_DIR" in got.err, got.text
    assert "internal error" not in got.text and not (tmp_path / "box" / "a").exists()


def test_a_dsn_in_the_environment_wins_over_a_recon_yaml_a_pull_request_edited(tmp_path: Path, dsn: str) -> None:
    """recon.yaml is in the repository, so a pull request may write `backend: sqlite` there; CI's shared state,
    given by RECON_STATE_DSN, is used all the same (before, the file's backend won when only the DSN was set)."""
    work = runner(tmp_path, "one", tmp_path / "box", "- {type: file, path: /a, content: one}",
                  "state:\n  backend: sqlite\n")
    assert recon("apply", "--auto-approve", cwd=work, env={"RECON_STATE_DSN": dsn}).rc == 0
    verified = recon("audit", "verify", cwd=work, env={"RECON_STATE_DSN": dsn})
    assert verified.rc == 0 and "postgres://recon@127.0.0.1:" in verified.out, verified.text
    assert not (work / ".recon" / "audit.db").exists()
