"""Policy, confirmation, audit, idempotency, locks and secrets, with the real CLI on real directories."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import RECON, crash_apply, recon
from tests.e2e.test_local_cli import assert_converged, group, hoststate, write
from tests.terminal import on_terminal

POLICY = """\
apiVersion: recon/v1
kind: Policy
metadata: {name: guard}
spec:
  environments:
    - name: prod
      match: {labels: {env: prod}}
      confirm: true
    - name: dev
      match: {paths: ["**/dev/**"]}
  rules:
    - name: tmp-files-may-go
      effect: allow
      when: {addresses: ["HostState/*/file:/tmp/*"]}
    - name: no-deletes-in-prod
      effect: deny
      when: {environments: [prod], actions: [delete]}
      message: deletes in prod go through a change request
    - name: no-world-writable
      effect: deny
      when: {field: {path: mode, matches: ["0777", "0666"]}}
      message: world-writable files are not allowed
"""


def _runs(cwd: Path, *args: str) -> list[dict]:  # type: ignore[type-arg]
    got = recon("audit", "--json", *args, cwd=cwd)
    assert got.rc == 0, got.text
    return json.loads(got.out)  # type: ignore[no-any-return]


def _prod(tmp_path: Path, resources: str) -> None:
    (tmp_path / "a-root" / "etc").mkdir(parents=True, exist_ok=True)
    write(tmp_path / "specs", {"g.yaml": group("a"), "policy.yaml": POLICY,
                               "s.yaml": hoststate("app", resources, meta="  labels: {env: prod}\n")})


def test_a_denied_change_is_shown_and_apply_refuses_with_exit_3(tmp_path: Path) -> None:
    _prod(tmp_path, "- type: file\n  path: /etc/old.conf\n  state: absent\n"
                    "- type: file\n  path: /tmp/scratch\n  state: absent\n")
    (tmp_path / "a-root" / "etc" / "old.conf").write_text("x")
    (tmp_path / "a-root" / "tmp").mkdir()
    (tmp_path / "a-root" / "tmp" / "scratch").write_text("x")
    plan = recon("plan", cwd=tmp_path)
    assert plan.rc == 0, plan.text
    assert "✗ denied by Policy/guard rule no-deletes-in-prod: deletes in prod go through a change request" in plan.out
    assert "Denied by policy: 1 change; apply will refuse" in plan.out
    assert "⚠ delete, prod needs confirmation" in plan.out
    data = json.loads(recon("plan", "--json", cwd=tmp_path).out)
    by_id = {c["id"]: c for c in data["changes"]}
    assert by_id["HostState/app/file:/etc/old.conf@a"]["denied"].startswith("Policy/guard rule no-deletes-in-prod")
    assert by_id["HostState/app/file:/tmp/scratch@a"]["denied"] == ""  # the allow rule came first
    assert by_id["HostState/app/file:/tmp/scratch@a"]["environment"] == "prod"

    applied = recon("apply", "--auto-approve", "--confirm", data["plan_id"], cwd=tmp_path)
    assert applied.rc == 3, applied.text
    assert "denied by policy (Policy/guard rule no-deletes-in-prod" in applied.err
    assert (tmp_path / "a-root" / "etc" / "old.conf").exists() and (tmp_path / "a-root" / "tmp" / "scratch").exists()
    [run] = _runs(tmp_path, "--limit", "1")
    assert run["command"] == "apply" and run["outcome"] == "refused"
    assert any(e["event"] == "policy" and not e["ok"] for e in run["events"])


def test_a_field_rule_denies_a_world_writable_mode(tmp_path: Path) -> None:
    write(tmp_path / "specs", {"g.yaml": group("a"), "policy.yaml": POLICY,
                               "s.yaml": hoststate("app", '- type: file\n  path: /srv/x\n  content: x\n'
                                                          '  mode: "0666"\n')})
    got = recon("apply", "--auto-approve", cwd=tmp_path)
    assert got.rc == 3 and "no-world-writable: world-writable files are not allowed" in got.err, got.text


def test_prod_needs_the_plan_id_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    _prod(tmp_path, "- type: file\n  path: /etc/app.conf\n  content: a\n")
    plan = json.loads(recon("plan", "--json", cwd=tmp_path).out)
    pid = plan["plan_id"]
    assert "Needs confirmation: prod: apply with --confirm " + pid in recon("plan", cwd=tmp_path).out
    plain = recon("apply", "--auto-approve", cwd=tmp_path)
    assert plain.rc == 3 and f"re-run with --confirm {pid} (--auto-approve is not enough)" in plain.err, plain.text
    wrong = recon("apply", "--confirm", "0123456789ab", cwd=tmp_path)
    assert wrong.rc == 3 and f"confirms another plan; this plan is {pid}" in wrong.err, wrong.text
    assert not (tmp_path / "a-root" / "etc" / "app.conf").exists()
    right = recon("apply", "--confirm", pid, cwd=tmp_path)
    assert right.rc == 0, right.text
    assert (tmp_path / "a-root" / "etc" / "app.conf").read_text() == "a"
    outcomes = [r["outcome"] for r in _runs(tmp_path) if r["command"] == "apply"]
    assert outcomes == ["ok", "refused", "refused"]
    assert_converged(tmp_path)


def test_prod_on_a_terminal_asks_for_the_environment_name(tmp_path: Path) -> None:
    _prod(tmp_path, "- type: file\n  path: /etc/app.conf\n  content: a\n")
    for answer, rc in (("yes", 3), ("prod", 0)):
        got, out = on_terminal(["apply"], tmp_path, b"prod: ", answer)
        assert got == rc, out
        assert "Type the environment name to confirm" in out
    assert (tmp_path / "a-root" / "etc" / "app.conf").read_text() == "a"


def test_a_saved_plan_and_a_request_id_are_applied_once(tmp_path: Path) -> None:
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate("app", "- type: file\n  path: /x\n"
                                                                                "  content: one\n")})
    assert recon("plan", "--out", "plan.json", cwd=tmp_path).rc == 0
    assert recon("apply", "plan.json", cwd=tmp_path).rc == 0
    again = recon("apply", "plan.json", cwd=tmp_path)
    assert again.rc == 0 and "was already applied at" in again.out, again.text

    (tmp_path / "specs" / "s.yaml").write_text(hoststate("app", "- type: file\n  path: /x\n  content: two\n"))
    first = recon("apply", "--auto-approve", "--request-id", "deploy-42", cwd=tmp_path)
    assert first.rc == 0 and (tmp_path / "a-root" / "x").read_text() == "two"
    (tmp_path / "a-root" / "x").write_text("changed by hand")
    second = recon("apply", "--auto-approve", "--request-id", "deploy-42", cwd=tmp_path)
    assert second.rc == 0 and "request deploy-42 was already applied" in second.out, second.text
    assert (tmp_path / "a-root" / "x").read_text() == "changed by hand"  # the work was done once


def host_key(root: Path) -> str:
    """The lock of a local host with this root, as recon names it."""
    return f"host/local/{socket.gethostname()}{root.resolve()}"


def _slow(tmp_path: Path, name: str, seconds: float, until: Path | None = None) -> None:
    """A group whose apply takes `seconds`, or (`until`) lasts until that file exists (at most a minute): a test
    under a loaded machine must not depend on how long its own steps take."""
    wait = f"for i in $(seq 600); do [ -e {until} ] && break; sleep 0.1; done" if until else f"sleep {seconds}"
    write(tmp_path / "specs", {f"g-{name}.yaml": group(name).replace("name: hosts", f"name: {name}"),
                               f"s-{name}.yaml": hoststate(name, f"- type: command\n  id: slow\n"
                                                                 f"  run: '{wait}; touch done'\n"
                                                                 "  creates: /done\n").replace(
                                   "group: hosts", f"group: {name}")})


def test_two_applies_on_one_group_take_turns_and_on_two_groups_run_together(tmp_path: Path) -> None:
    release = tmp_path / "release"  # the first apply holds its lock until this exists (it took 4 s: flaky under load)
    _slow(tmp_path, "a", 0, until=release)
    (tmp_path / "a-root").mkdir()
    holder = subprocess.Popen([*RECON, "apply", "--auto-approve", "specs/g-a.yaml", "specs/s-a.yaml"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    key = host_key(tmp_path / "a-root")  # locks are keyed by what is changed: the host (here, a local root)
    deadline = time.monotonic() + 20
    listed = recon("lock", "list", cwd=tmp_path)
    while time.monotonic() < deadline and f"{key}: held by" not in listed.out:
        time.sleep(0.2)
        listed = recon("lock", "list", cwd=tmp_path)
    assert f"{key}: held by" in listed.out and f"(pid {holder.pid})" in listed.out, listed.text
    refused = recon("lock", "break", key, cwd=tmp_path)
    assert refused.rc == 1 and "held by a live process" in refused.err

    # the same group, no waiting: refused at once with the holder's details
    (tmp_path / "specs" / "s-a.yaml").write_text((tmp_path / "specs" / "s-a.yaml").read_text())
    (tmp_path / "a2-root").mkdir()
    second = recon("apply", "--auto-approve", "specs/g-a.yaml", "specs/s-a.yaml", cwd=tmp_path)
    assert second.rc == 1 and f"{key} is locked by" in second.err and f"(pid {holder.pid})" in second.err
    # another group runs meanwhile
    _slow(tmp_path, "b", 0)
    (tmp_path / "b-root").mkdir()
    other = recon("apply", "--auto-approve", "specs/g-b.yaml", "specs/s-b.yaml", cwd=tmp_path)
    assert other.rc == 0, other.text
    assert holder.poll() is None, "the other group's apply ran while the first still held its lock"
    # waiting: the same group again, with a timeout long enough; the first lets go a moment after it starts
    threading.Timer(2.0, release.touch).start()
    waited = recon("apply", "--auto-approve", "--lock-timeout", "30s", "specs/g-a.yaml", "specs/s-a.yaml",
                   cwd=tmp_path)
    assert waited.rc == 0 and f"Waiting for the lock {key}" in waited.out, waited.text
    assert holder.wait(timeout=30) == 0


def test_a_killed_apply_leaves_its_steps_in_the_audit_and_a_stale_lock_can_be_broken(tmp_path: Path) -> None:
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate("app", """\
        - type: file
          path: /first
          content: one
        - type: command
          id: slow
          run: sleep 30; touch slow-done
          creates: /slow-done
        """)})
    (tmp_path / "a-root").mkdir()
    crash_apply(tmp_path, (tmp_path / "a-root" / "first").exists, settle=1)
    [run] = _runs(tmp_path, "--limit", "1")
    assert run["outcome"] == "interrupted"
    done = [e["change"] for e in run["events"] if e["event"] == "step" and e["ok"]]
    assert done == ["HostState/app/file:/first@a"]
    assert _runs(tmp_path, "--resource", "HostState/app/file:/first")[0]["run"] == run["run"]
    listed = recon("lock", "list", cwd=tmp_path)
    key = host_key(tmp_path / "a-root")
    assert f"{key}: free; last held by" in listed.out, listed.text
    broken = recon("lock", "break", key, cwd=tmp_path)
    assert broken.rc == 0 and "nobody held it" in broken.out
    (tmp_path / "specs" / "s.yaml").write_text(hoststate("app", "- type: file\n  path: /first\n  content: one\n"))
    assert recon("apply", "--auto-approve", cwd=tmp_path).rc == 0
    assert_converged(tmp_path)


def test_the_audit_log_is_append_only_and_names_who_and_which_commit(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate("app", "- type: file\n  path: /x\n"
                                                                                "  content: one\n")})
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "specs"],
                   cwd=tmp_path, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert recon("apply", "--auto-approve", cwd=tmp_path, env={"GITHUB_RUN_ID": "777"}).rc == 0
    [run] = _runs(tmp_path, "--limit", "1")
    assert run["git"] == {"sha": sha, "branch": run["git"]["branch"], "dirty": False}
    assert run["ci"]["GITHUB_RUN_ID"] == "777" and run["user"] and run["host"]
    assert [e["event"] for e in run["events"]][-1] == "end"
    text = recon("audit", cwd=tmp_path).out
    assert "apply ok" in text and sha[:10] in text and "ci run 777" in text
    db = sqlite3.connect(tmp_path / ".recon" / "audit.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM events")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE events SET ok = 1")
    assert _runs(tmp_path, "--since", "1h") and not _runs(tmp_path, "--since", "2999-01-01")


def test_a_secret_never_appears_in_any_output_file_or_record(tmp_path: Path) -> None:
    secret = "planted-" + os.urandom(12).hex()
    env = {"APP_TOKEN": secret}
    (tmp_path / "a-root").mkdir()
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate("app", """\
        - type: file
          path: /etc/token
          contentFrom: {env: APP_TOKEN}
          mode: "0600"
        """)})
    outputs = [recon("plan", cwd=tmp_path, env=env), recon("plan", "--json", cwd=tmp_path, env=env),
               recon("plan", "--out", "plan.json", cwd=tmp_path, env=env), recon("show", "plan.json", cwd=tmp_path),
               recon("apply", "plan.json", cwd=tmp_path, env=env)]
    assert (tmp_path / "a-root" / "etc" / "token").read_text() == secret
    rotated = {"APP_TOKEN": secret + "-rotated"}
    changed = recon("plan", cwd=tmp_path, env=rotated)
    assert "content: (sensitive) hmac:" in changed.out and "→ (sensitive) hmac:" in changed.out
    outputs += [changed, recon("plan", "--markdown", cwd=tmp_path, env=rotated),
                recon("drift", "--markdown", cwd=tmp_path, env=rotated),
                recon("drift", "--json", cwd=tmp_path, env=rotated),
                recon("apply", "--auto-approve", cwd=tmp_path, env=rotated),
                recon("audit", cwd=tmp_path), recon("audit", "--json", cwd=tmp_path)]
    missing = recon("plan", cwd=tmp_path)
    assert missing.rc == 1 and "environment variable APP_TOKEN is not set" in missing.err
    blobs = [o.text.encode() for o in outputs] + [missing.text.encode()]
    blobs += [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "a-root" not in p.parts]
    for blob in blobs:
        assert secret.encode() not in blob


def test_a_saved_plan_edited_to_drop_a_denial_is_still_refused(tmp_path: Path) -> None:
    _prod(tmp_path, "- type: file\n  path: /etc/old.conf\n  state: absent\n")
    (tmp_path / "a-root" / "etc" / "old.conf").write_text("x")
    assert recon("plan", "--out", "plan.json", cwd=tmp_path).rc == 0
    data = json.loads((tmp_path / "plan.json").read_text())
    for change in data["changes"]:
        change["denied"] = ""
    (tmp_path / "plan.json").write_text(json.dumps(data))
    got = recon("apply", "plan.json", "--confirm", data["plan_id"], cwd=tmp_path)
    assert got.rc == 3 and "no-deletes-in-prod" in got.err, got.text
    assert (tmp_path / "a-root" / "etc" / "old.conf").exists()


def test_environment_paths_match_the_repository_path_however_the_specs_are_named(tmp_path: Path) -> None:
    """A spec below specs/prod/ is in prod whether recon is given `specs`, `./specs`, an absolute path or
    `repo/specs` from the directory above (before, the last two needed no confirmation)."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a-root").mkdir()
    write(repo / "specs", {"g.yaml": group("a"), "policy.yaml": (
        "apiVersion: recon/v1\nkind: Policy\nmetadata: {name: envs}\nspec:\n  environments:\n"
        "    - {name: prod, match: {paths: ['specs/prod/**']}, confirm: true}\n")})
    write(repo / "specs" / "prod", {"s.yaml": hoststate("app", "- type: file\n  path: /x\n  content: one\n")})
    # a pull request cannot take a spec out of prod by making it a link to a file elsewhere
    (repo / "elsewhere").mkdir()
    (repo / "elsewhere" / "linked.yaml").write_text(hoststate("linked", "- type: file\n  path: /y\n  content: one\n"))
    (repo / "specs" / "prod" / "linked.yaml").symlink_to(repo / "elsewhere" / "linked.yaml")
    for cwd, paths in ((repo, "specs"), (repo, "./specs"), (repo, str(repo / "specs")), (tmp_path, "repo/specs")):
        got = recon("plan", paths, "--json", cwd=cwd)
        assert got.rc == 0, got.text
        changes = [c for c in json.loads(got.out)["changes"] if c["action"] != "noop"]
        assert len(changes) == 2, changes
        for change in changes:
            assert change["environment"] == "prod" and "prod needs confirmation" in change["risks"], (paths, change)
        refused = recon("apply", paths, "--auto-approve", cwd=cwd)
        assert refused.rc == 3 and "needs a confirmation" in refused.err, (paths, refused.text)


def test_no_key_for_hashing_secrets_is_an_error_with_the_fix_never_a_constant_key(tmp_path: Path) -> None:
    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate(
        "app", "- type: file\n  path: /token\n  contentFrom: {env: APP_TOKEN}\n  mode: \"0600\"\n")})
    (tmp_path / "a-root").mkdir()
    (tmp_path / "not-a-dir").write_text("")
    env = {"RECON_HASH_KEY": "", "XDG_CONFIG_HOME": str(tmp_path / "not-a-dir"), "APP_TOKEN": "tok-123"}
    got = recon("plan", cwd=tmp_path, env=env)
    assert got.rc == 1 and "no key to hash secrets with:" in got.err and "set RECON_HASH_KEY" in got.err, got.text
    assert "internal error" not in got.text and "tok-123" not in got.text


def test_a_secret_file_is_owner_only_from_its_first_byte_and_a_leftover_temporary_is_found_and_removed(
        tmp_path: Path) -> None:
    """The new content is written under umask 077 and only then given its mode (before, it was written 0644
    and chmodded after: a killed apply left part of a secret readable). A temporary an apply left behind is in
    the next plan and removed by the next apply (issue 18, case 7)."""
    from providers.hosts.model import HostInfo, HostResource, Payload
    from providers.hosts.posix.resources import file as filemod
    from specs.hoststate import FileResource

    res = FileResource.model_validate({"type": "file", "path": "/etc/token", "content": "s3cret", "mode": "0600"})
    script = filemod.script(HostResource(res, HostInfo("a", "local", None), "file:/etc/token",
                                         Payload.of_bytes(b"s3cret")),
                            "create", [])
    lines = script.splitlines()
    at = next(i for i, line in enumerate(lines) if "s3cret" in line)
    assert lines[at - 1] == "umask 077" and lines[at + 1] == "umask 022", script
    assert at < next(i for i, line in enumerate(lines) if "chmod 0600" in line)

    write(tmp_path / "specs", {"g.yaml": group("a"), "s.yaml": hoststate(
        "app", "- type: file\n  path: /token\n  contentFrom: {env: APP_TOKEN}\n  mode: \"0600\"\n")})
    (tmp_path / "a-root").mkdir()
    env = {"APP_TOKEN": "tok-123"}
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert (tmp_path / "a-root" / "token").stat().st_mode & 0o777 == 0o600
    (tmp_path / "a-root" / "token.recon-tmp").write_text("tok-")  # what a kill mid-write used to leave, 0644
    planned = recon("plan", "--detailed-exitcode", cwd=tmp_path, env=env)
    assert planned.rc == 2 and "/token.recon-tmp, left by an interrupted apply, is still there" in planned.out
    assert recon("apply", "--auto-approve", cwd=tmp_path, env=env).rc == 0
    assert not (tmp_path / "a-root" / "token.recon-tmp").exists()
    assert_converged(tmp_path, env=env)
