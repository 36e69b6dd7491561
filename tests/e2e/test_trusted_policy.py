"""The trusted Policy (issue 18): what the Policy forbids stays forbidden whatever a pull request changes. Each
attack a pull request's author could try is a test here, with the real CLI on real git repositories."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import recon
from tests.e2e.test_local_cli import group, hoststate, write
from tests.peers import kube_api, registry

GUARD = """\
apiVersion: recon/v1
kind: Policy
metadata: {name: guard}
spec:
  environments:
    - {name: prod, match: {paths: ["specs/prod/**"]}, confirm: true}
  teams:
    platform: [alice]
  rules:
    - name: policy-owners
      effect: allow
      when: {kinds: [Policy], subjects: ["team:platform"]}
    - name: no-deletes-in-prod
      effect: deny
      when: {environments: [prod], actions: [delete]}
      message: deletes in prod go through a change request
"""

ALLOW_ALL = """\
apiVersion: recon/v1
kind: Policy
metadata: {name: a-exceptions}
spec:
  rules:
    - {name: everything, effect: allow}
"""

GIT_ENV = {"GIT_AUTHOR_NAME": "alice", "GIT_AUTHOR_EMAIL": "alice@example.com",  # the commit says alice ...
           "GIT_COMMITTER_NAME": "alice", "GIT_COMMITTER_EMAIL": "alice@example.com"}
AS_MALLORY = {"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "mallory"}  # ... the platform vouches for mallory
AS_ALICE = {"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "alice"}


def _git(repo: Path, *args: str) -> str:
    import os

    done = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def _repo(tmp_path: Path) -> Path:
    """main: the guard Policy, a host group and a prod spec that deletes /etc/old.conf (denied)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "a-root" / "etc").mkdir(parents=True)
    (repo / "a-root" / "etc" / "old.conf").write_text("keep me\n")
    write(repo / "specs", {"policy.yaml": GUARD, "hosts.yaml": group("a")})  # the root: specs/../a-root
    write(repo / "specs" / "prod", {"app.yaml": hoststate("app", "- type: file\n  path: /etc/old.conf\n"
                                                                 "  state: absent\n")})
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "main")
    return repo


def _pr(repo: Path, files: dict[str, str]) -> None:
    _git(repo, "checkout", "-q", "-b", "pr")
    for name, text in files.items():
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "a pull request")


def _changes(got_out: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["id"]: c for c in json.loads(got_out)["changes"] if c["action"] != "noop"}


def test_the_policy_governs_whatever_paths_are_given(tmp_path: Path) -> None:
    """Case 1: leaving the Policy's file out of the paths left the Policy out (the delete applied, exit 0)."""
    repo = _repo(tmp_path)
    for paths in (["specs/hosts.yaml", "specs/prod"], ["specs"]):
        got = recon("apply", *paths, "--auto-approve", cwd=repo)
        assert got.rc == 3 and "no-deletes-in-prod" in got.err, (paths, got.text)
    plan = recon("plan", "specs/hosts.yaml", "specs/prod", "--json", cwd=repo)
    assert plan.rc == 0, plan.text
    [change] = _changes(plan.out).values()
    assert change["denied"].startswith("Policy/guard rule no-deletes-in-prod") and change["environment"] == "prod"
    assert (repo / "a-root" / "etc" / "old.conf").exists()


def test_a_policy_that_sorts_first_cannot_switch_a_deny_off(tmp_path: Path) -> None:
    """Case 3: Policy/a-exceptions with an allow-all rule won first-match over Policy/guard's deny."""
    repo = _repo(tmp_path)
    (repo / "specs" / "exceptions.yaml").write_text(ALLOW_ALL)
    plan = recon("plan", "--json", "specs", cwd=repo)
    [change] = _changes(plan.out).values()
    assert change["denied"].startswith("Policy/guard rule no-deletes-in-prod"), change
    got = recon("apply", "specs", "--confirm", json.loads(plan.out)["plan_id"], cwd=repo)
    assert got.rc == 3, got.text
    assert (repo / "a-root" / "etc" / "old.conf").exists()


def test_in_ci_the_base_branch_policy_governs_and_a_pull_request_cannot_weaken_it(tmp_path: Path) -> None:
    """A pull request that deletes the deny, drops prod's confirmation and adds an allow-all Policy: with the
    base branch's Policy trusted, the delete is still denied and still needs confirmation, and the Policy
    change itself is shown and denied: mallory is not in the trusted Policy's policy-owners."""
    repo = _repo(tmp_path)
    weakened = GUARD.replace("confirm: true", "confirm: false").split("    - name: no-deletes-in-prod")[0]
    _pr(repo, {"specs/policy.yaml": weakened, "specs/exceptions.yaml": ALLOW_ALL})
    env = {"RECON_POLICY_REF": "main", **AS_MALLORY}
    plan = recon("plan", "--json", "specs", cwd=repo, env=env)
    assert plan.rc == 0, plan.text
    changes = _changes(plan.out)
    delete = changes["HostState/app/file:/etc/old.conf@a"]
    assert delete["denied"].startswith("Policy/guard rule no-deletes-in-prod")
    assert "prod needs confirmation" in delete["risks"]
    guard, new = changes["Policy/guard/policy"], changes["Policy/a-exceptions/policy"]
    assert (guard["action"], new["action"]) == ("update", "create")
    assert [f["path"] for f in guard["fields"]] == ["environments[prod]", "rules[no-deletes-in-prod]"]
    assert guard["denied"].startswith("the trusted Policy (git main (") and new["denied"]
    assert "no rule allows mallory to change the Policy" in guard["denied"]
    assert json.loads(plan.out)["policy"]["subject"] == "mallory"
    text = recon("plan", "specs", cwd=repo, env=env)
    assert "Policy in force: git main (" in text.out and "checked as mallory" in text.out, text.out
    assert "~ update  Policy/guard/policy" in text.out
    got = recon("apply", "specs", "--auto-approve", cwd=repo, env=env)
    assert got.rc == 3, got.text
    assert (repo / "a-root" / "etc" / "old.conf").exists()
    # locally, without a trusted ref, the repository's Policy is the author's own: the weakened one governs,
    # but even there the allow-all of another Policy does not switch a deny off (a deny wins across Policies)
    local = recon("plan", "--json", "specs", cwd=repo)
    assert not any(c["resource"] == "policy" for c in _changes(local.out).values())


def test_a_policy_change_is_allowed_by_the_trusted_approval_rule_for_its_subjects_only(tmp_path: Path) -> None:
    """The trusted policy-owners rule allows team platform (alice) to change the Policy; the actor is who
    the platform vouches for, not the commit's author (alice wrote every commit here)."""
    repo = _repo(tmp_path)
    stricter = GUARD + ("    - name: no-updates-in-prod\n      effect: deny\n"
                        "      when: {environments: [prod], actions: [update, create]}\n")
    _pr(repo, {"specs/policy.yaml": stricter, "specs/prod/app.yaml": hoststate(
        "app", "- type: file\n  path: /etc/new.conf\n  content: x\n")})
    for who, ok in ((AS_ALICE, True), (AS_MALLORY, False)):
        plan = recon("plan", "--json", "specs", cwd=repo, env={"RECON_POLICY_REF": "main", **who})
        changes = _changes(plan.out)
        assert bool(changes["Policy/guard/policy"]["denied"]) is not ok, (who, changes)
        # a proposed deny counts at once: a change can always make itself stricter
        assert changes["HostState/app/file:/etc/new.conf@a"]["denied"] == (
            "Policy/guard rule no-updates-in-prod (proposed)")
    got = recon("audit", "--json", cwd=repo)
    runs = json.loads(got.out)
    checked = [e["data"] for r in runs for e in r["events"] if e["event"] == "policy" and not e["change"]]
    assert {e["subject"] for e in checked} == {"alice", "mallory"}
    assert all(e["source"].startswith("git main (") and e["trusted"] == ["Policy/guard"] for e in checked)
    assert {tuple(e["teams"]) for e in checked} == {("platform",), ()}


def test_subjects_decide_who_may_apply_an_environment(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "specs" / "prod" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /etc/new.conf\n"
                                                                       "  content: x\n"))
    (repo / "specs" / "policy.yaml").write_text(GUARD + (
        "    - {name: platform-applies-prod, effect: allow,\n"
        "       when: {environments: [prod], subjects: ['team:platform']}}\n"
        "    - {name: only-platform-in-prod, effect: deny, when: {environments: [prod]},\n"
        "       message: ask team platform}\n"))
    mallory = recon("plan", "--json", "specs", cwd=repo, env=AS_MALLORY)
    [change] = _changes(mallory.out).values()
    assert change["denied"] == "Policy/guard rule only-platform-in-prod: ask team platform"
    alice = recon("plan", "--json", "specs", cwd=repo, env=AS_ALICE)
    pid = json.loads(alice.out)["plan_id"]
    [change] = _changes(alice.out).values()
    assert change["denied"] == ""
    assert recon("apply", "specs", "--confirm", pid, cwd=repo, env=AS_ALICE).rc == 0
    assert (repo / "a-root" / "etc" / "new.conf").read_text() == "x"
    # outside GitHub Actions a GITHUB_ACTOR is not vouched for by anyone: the OS user is the subject
    local = recon("plan", "--json", "specs", cwd=repo, env={"GITHUB_ACTOR": "alice"})
    assert json.loads(local.out)["policy"]["subject"] != "alice"


def test_a_pinned_policy_file_governs_and_a_bad_ref_is_one_clear_error(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    pinned = tmp_path / "trusted"
    pinned.mkdir()
    (pinned / "guard.yaml").write_text(GUARD)
    (repo / "specs" / "policy.yaml").write_text(ALLOW_ALL.replace("a-exceptions", "guard"))  # the PR's version
    got = recon("apply", "specs", "--auto-approve", cwd=repo, env={"RECON_POLICY": str(pinned)})
    assert got.rc == 3 and "no-deletes-in-prod" in got.err, got.text
    bad = recon("plan", "specs", cwd=repo, env={"RECON_POLICY_REF": "no-such-branch"})
    assert bad.rc == 1 and "RECON_POLICY_REF=no-such-branch: no such commit" in bad.err, bad.text
    assert "Traceback" not in bad.text
    (pinned / "guard.yaml").write_text(GUARD.replace("effect: deny", "effect: maybe"))
    broken = recon("plan", "specs", cwd=repo, env={"RECON_POLICY": str(pinned)})
    assert broken.rc == 1 and "guard.yaml:" in broken.err and "effect" in broken.err, broken.text


# Files leaving the machine recon runs on (cases 4 to 6): sources stay in the repository, roots are not escaped.

def test_a_file_source_outside_the_repository_is_refused_with_its_line(tmp_path: Path) -> None:
    """Case 4: `source: ../../../../../etc/shadow` or `/etc/hostname` validated, and shadow was copied to the
    target; a link in the repository to a file outside it is the same attack."""
    repo = _repo(tmp_path)
    (repo / "specs" / "files").mkdir()
    (repo / "specs" / "files" / "ok.conf").write_text("inside\n")
    (repo / "specs" / "files" / "hostname").symlink_to("/etc/hostname")
    (repo / "specs" / "prod" / "app.yaml").unlink()
    for source in ("../../../../../../../../etc/hostname", "/etc/hostname", "files/hostname"):
        (repo / "specs" / "app.yaml").write_text(hoststate("app", (
            "- type: file\n  path: /etc/ok.conf\n  source: files/ok.conf\n"
            f"- type: file\n  path: /etc/stolen\n  source: {source}\n")))
        for command in (("validate", "specs"), ("plan", "specs"), ("apply", "specs", "--auto-approve")):
            got = recon(*command, cwd=repo)
            assert got.rc == 1, (source, command, got.text)
            assert "specs/app.yaml:" in got.err and "resources[1].source" in got.err, got.text
            assert "outside the repository" in got.err and "sourceRoots" in got.err, got.text
            assert "Traceback" not in got.text
    assert not (repo / "a-root" / "etc" / "stolen").exists()
    # a source root of the trusted Policy allows more
    (repo / "specs" / "policy.yaml").write_text(GUARD.replace("  teams:", "  sourceRoots: [/etc]\n  teams:"))
    (repo / "specs" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /etc/copy\n"
                                                              "  source: /etc/hostname\n"))
    allowed = recon("validate", "specs", cwd=repo)
    assert allowed.rc == 0, allowed.text


def test_a_bundle_cannot_publish_files_outside_its_source(tmp_path: Path) -> None:
    """Case 5: a link in the bundle's source to /etc/hostname was published; `source: /etc/ssh` planned the
    host's private keys."""
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "model").mkdir()
    (repo / "model" / "weights.bin").write_bytes(b"w" * 100)
    (repo / "model" / "x").symlink_to("/etc/hostname")
    bundle = ("apiVersion: recon/v1\nkind: Bundle\nmetadata: {name: churn}\nspec:\n"
              "  source: SOURCE\n  ref: oci-layout:../layout:v1\n")
    (repo / "specs" / "bundle.yaml").write_text(bundle.replace("SOURCE", "../model"))
    env = {"RECON_CACHE_DIR": str(tmp_path / "cache")}
    got = recon("apply", "--auto-approve", "specs", cwd=repo, env=env)
    assert got.rc == 1 and "is a symlink to /etc/hostname, outside the source directory" in got.err, got.text
    assert not (repo / "layout").exists()
    (repo / "model" / "x").unlink()
    (repo / "model" / "inner").symlink_to("weights.bin")  # a link inside the source is fine
    assert recon("apply", "--auto-approve", "specs", cwd=repo, env=env).rc == 0
    (repo / "specs" / "bundle.yaml").write_text(bundle.replace("SOURCE", "/etc/ssh") + "  include: ['ssh_host_*']\n")
    got = recon("plan", "specs", cwd=repo, env=env)
    assert got.rc == 1 and "specs/bundle.yaml:" in got.err and "/etc/ssh is outside the repository" in got.err


def test_a_link_inside_a_local_root_does_not_lead_recon_out_of_it(tmp_path: Path) -> None:
    """Case 6: root/srv -> elsewhere made recon write outside the root."""
    repo = _repo(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / "a-root" / "srv").symlink_to(elsewhere)
    (repo / "specs" / "prod" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /srv/app.conf\n"
                                                                       "  content: x\n"))
    for command in (("plan", "specs"), ("apply", "specs", "--confirm", "whatever")):
        got = recon(*command, cwd=repo)
        assert got.rc == 1, got.text
        assert f"a-root/srv is a link to {elsewhere}, outside the host's root" in got.err, got.text
    assert list(elsewhere.iterdir()) == []


def test_a_pull_request_s_command_guard_does_not_run_before_the_review(tmp_path: Path) -> None:
    """A plan runs command guards (`unless`) on the hosts; a pull request that writes one would run code on
    production (and on the runner, with its secrets) before anyone reviewed it. With a trusted ref, a guard the
    change writes is not run by the plan; it runs at apply, in the step, before the command."""
    repo = _repo(tmp_path)
    marker = tmp_path / "ran-before-review"
    (repo / "specs" / "prod" / "app.yaml").write_text(hoststate("app", (
        "- type: command\n  id: migrate\n  run: echo migrated > /tmp/migrated\n  unless: 'false'\n")))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "a guarded command")
    (repo / "a-root" / "tmp").mkdir()
    _pr(repo, {"specs/prod/app.yaml": hoststate("app", (
        "- type: command\n  id: migrate\n  run: echo migrated > $RECON_ROOT/tmp/migrated\n"
        f"  unless: 'touch {marker}; test -e $RECON_ROOT/tmp/migrated'\n"))})
    plan = recon("plan", "--json", "specs", cwd=repo, env={"RECON_POLICY_REF": "main"})
    assert plan.rc == 0, plan.text
    assert not marker.exists(), "the plan ran the pull request's guard"
    [change] = _changes(plan.out).values()
    assert change["action"] == "run" and "was not run by this plan" in change["reason"], change
    # at apply (after the review: the merge's run, which trusts the commit before it) the guard runs first
    pid = json.loads(plan.out)["plan_id"]
    applied = recon("apply", "specs", "--confirm", pid, cwd=repo, env={"RECON_POLICY_REF": "main"})
    assert applied.rc == 0, applied.text
    assert marker.exists() and (repo / "a-root" / "tmp" / "migrated").read_text() == "migrated\n"
    # without a trusted ref (a laptop: the author's own specs) the plan runs guards as before
    marker.unlink()
    assert recon("plan", "specs", cwd=repo).rc == 0 and marker.exists()


def test_a_pull_request_cannot_read_a_host_file_through_the_plan_s_diff(tmp_path: Path) -> None:
    """A plan shows a changed text file as a diff of the live file's lines. A pull request that adds a file
    resource for a path it wants to read (a key, /etc/shadow), with any other content, would have the host's text
    printed in its own plan and comment. With a trusted ref, the specs the change writes get no live text: their
    files change by digest and size; on a laptop (the author's own specs) the diff shows as before."""
    repo = _repo(tmp_path)
    (repo / "a-root" / "etc" / "shadow").write_text("root:$6$the-hash-of-the-host:19000:0:99999:7:::\n")
    _pr(repo, {"specs/prod/app.yaml": hoststate("app", "- type: file\n  path: /etc/shadow\n  content: x\n")})
    plan = recon("plan", "--json", "specs", cwd=repo, env={"RECON_POLICY_REF": "main"})
    assert plan.rc == 0, plan.text
    assert "the-hash-of-the-host" not in plan.text
    [change] = _changes(plan.out).values()
    assert change["action"] == "update" and [f["path"] for f in change["fields"]] == ["content"], change
    local = recon("plan", "specs", cwd=repo)
    assert local.rc == 0 and "-root:$6$the-hash-of-the-host" in local.out, local.text


def test_a_pull_request_cannot_move_the_state_or_point_recon_at_a_file_of_the_runner(tmp_path: Path) -> None:
    """recon.yaml is in the repository, and its state settings were the pull request's: `backend: postgres` with
    `dsn: {file: …}` made CI read a file of the runner outside the repository as the DSN (and connect where it
    said), and `lease: 3600` would keep a killed runner's locks for an hour. With a trusted ref the state
    settings are the ref's (a change takes effect once merged, and a warning says so); locally the file is the
    author's own."""
    repo = _repo(tmp_path)
    outside = tmp_path / "runner-file"
    outside.write_text("postgresql://recon@127.0.0.1:9/recon\n")
    _pr(repo, {"recon.yaml": f"state:\n  backend: postgres\n  dsn: {{file: {outside}}}\n  lease: 3600\n"})
    env = {"RECON_POLICY_REF": "main", **AS_MALLORY}
    plan = recon("plan", "specs", cwd=repo, env=env)
    assert plan.rc == 0, plan.text
    assert plan.err.count("warning: the state settings of recon.yaml differ from main's; main's are used") == 1
    assert "127.0.0.1:9" not in plan.text and (repo / ".recon" / "audit.db").exists()  # main's: sqlite here
    assert recon("audit", "--json", cwd=repo, env=env).rc == 0
    local = recon("plan", "specs", cwd=repo)  # no trusted ref: the author's recon.yaml, and its DSN is tried
    assert local.rc == 1 and "postgres://recon@127.0.0.1:9/recon cannot be reached" in local.err, local.text
    # once main has it, the same settings govern with the ref too
    _git(repo, "checkout", "-q", "main")
    _git(repo, "merge", "-q", "--ff-only", "pr")
    merged = recon("plan", "specs", cwd=repo, env=env)
    assert merged.rc == 1 and "warning" not in merged.err and "127.0.0.1:9" in merged.err, merged.text
    # a DSN file in the repository is the change's to write, whatever the trusted recon.yaml says of it
    (repo / "recon.yaml").write_text("state:\n  backend: postgres\n  dsn: {file: ci/dsn}\n")
    _git(repo, "commit", "-qam", "the DSN from a file the workflow writes")
    (repo / "ci").mkdir()
    (repo / "ci" / "dsn").write_text("postgresql://recon@127.0.0.1:9/recon\n")  # or a pull request does
    inside = recon("plan", "specs", cwd=repo, env=env)
    assert inside.rc == 1 and "is a file in the repository, which the change under review writes" in inside.err
    assert "127.0.0.1:9" not in inside.text and "Traceback" not in inside.text, inside.text
    (repo / "ci" / "dsn").unlink()
    (repo / "ci" / "dsn").symlink_to(outside)  # a link the pull request adds, to a file of the runner
    linked = recon("plan", "specs", cwd=repo, env=env)
    assert linked.rc == 1 and "is a file in the repository" in linked.err and "127.0.0.1:9" not in linked.text


def test_a_pinned_policy_governs_and_the_base_still_says_what_the_pull_request_wrote(tmp_path: Path) -> None:
    """A Policy pinned outside the repository (RECON_POLICY, the Action's policy-path) set nothing of what the
    change is measured against: with the pull request's base named too (RECON_POLICY_REF), the base's Policy
    governed instead of the pinned one, and a pinned recon.yaml beside it was never read. The pinned Policy
    governs; the base says which spec files the pull request wrote (no host text for them) and its recon.yaml
    is used over the pull request's; a recon.yaml beside the pinned Policy wins over both."""
    repo = _repo(tmp_path)
    pinned = tmp_path / "trusted"
    pinned.mkdir()
    (pinned / "guard.yaml").write_text(GUARD + "    - {name: pinned-no-files-in-prod, effect: deny, "
                                               "when: {resources: [file], environments: [prod]}}\n")
    (repo / "a-root" / "etc" / "shadow").write_text("root:$6$the-hash-of-the-host:19000:0:99999:7:::\n")
    outside = tmp_path / "runner-file"
    outside.write_text("postgresql://recon@127.0.0.1:9/recon\n")
    _pr(repo, {"specs/prod/app.yaml": hoststate("app", "- type: file\n  path: /etc/shadow\n  content: x\n"),
               "recon.yaml": f"state:\n  backend: postgres\n  dsn: {{file: {outside}}}\n  lease: 3600\n"})
    env = {"RECON_POLICY": str(pinned), "RECON_POLICY_REF": "main", **AS_MALLORY}
    plan = recon("plan", "--json", "specs", cwd=repo, env=env)
    assert plan.rc == 0, plan.text
    assert json.loads(plan.out)["policy"]["source"] == f"file {pinned}"
    changes = _changes(plan.out)
    shadow = changes["HostState/app/file:/etc/shadow@a"]
    assert shadow["denied"].startswith("Policy/guard rule pinned-no-files-in-prod"), shadow
    assert "the-hash-of-the-host" not in plan.text and "127.0.0.1:9" not in plan.text
    assert plan.err.count("warning: the state settings of recon.yaml differ from main's; main's are used") == 1
    # whoever pins the Policy may pin the state settings beside it: they win over the base's and the change's
    (pinned / "recon.yaml").write_text("state:\n  backend: postgres\n  dsn: {env: PINNED_DSN}\n")
    beside = recon("plan", "specs", cwd=repo, env={**env, "PINNED_DSN": "postgresql://recon@127.0.0.1:8/recon"})
    assert beside.rc == 1 and "postgres://recon@127.0.0.1:8/recon cannot be reached" in beside.err, beside.text
    assert f"differ from those of {pinned / 'recon.yaml'} (beside the pinned Policy); those are used" in beside.err
    # a relative {file: …} there is beside it: the pull request's file of that name in the work tree is not read
    (pinned / "recon.yaml").write_text("state:\n  backend: postgres\n  dsn: {file: dsn}\n")
    (pinned / "dsn").write_text("postgresql://recon@127.0.0.1:7/recon\n")
    (repo / "dsn").write_text("postgresql://recon@127.0.0.1:9/recon\n")
    relative = recon("plan", "specs", cwd=repo, env=env)
    assert relative.rc == 1 and "postgres://recon@127.0.0.1:7/recon cannot be reached" in relative.err, relative.text


def test_a_pinned_policy_in_a_pull_request_s_run_without_its_base_is_refused(tmp_path: Path) -> None:
    """On GitHub a pull request's run with a pinned Policy and nothing naming its base would take the pull
    request's spec files and recon.yaml as reviewed: one clear error says what to set."""
    repo = _repo(tmp_path)
    pinned = tmp_path / "trusted"
    pinned.mkdir()
    (pinned / "guard.yaml").write_text(GUARD)
    env = {"RECON_POLICY": str(pinned), "GITHUB_EVENT_NAME": "pull_request", **AS_MALLORY}
    got = recon("plan", "specs", cwd=repo, env=env)
    assert got.rc == 1 and "set RECON_POLICY_REF to its base" in got.err and "Traceback" not in got.text, got.text
    assert recon("plan", "specs", cwd=repo, env={**env, "RECON_POLICY_REF": "main"}).rc == 0
    assert recon("plan", "specs", cwd=repo, env={**env, "GITHUB_EVENT_NAME": "schedule"}).rc == 0
    gitlab = {"RECON_POLICY": str(pinned), "GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "merge_request_event"}
    mr = recon("plan", "specs", cwd=repo, env=gitlab)
    assert mr.rc == 1 and "CI_MERGE_REQUEST_DIFF_BASE_SHA" in mr.err, mr.text


# A change's run as each CI system says it (its own variables, which a change cannot set), and the variable the
# error names for its base. A run of the same systems that is not a change's (the last entry of each) trusts the
# work tree, as a laptop's or a nightly run's does.
CHANGE_RUNS = [
    ({"TF_BUILD": "True", "BUILD_REASON": "PullRequest", "SYSTEM_PULLREQUEST_TARGETBRANCH": "refs/heads/main"},
     "SYSTEM_PULLREQUEST_TARGETBRANCH", {"TF_BUILD": "True", "BUILD_REASON": "IndividualCI"}),
    ({"BITBUCKET_BUILD_NUMBER": "7", "BITBUCKET_PR_ID": "12", "BITBUCKET_PR_DESTINATION_BRANCH": "main"},
     "BITBUCKET_PR_DESTINATION_BRANCH", {"BITBUCKET_BUILD_NUMBER": "7", "BITBUCKET_BRANCH": "main"}),
    ({"JENKINS_URL": "http://jenkins.invalid/", "CHANGE_ID": "12", "CHANGE_TARGET": "main"}, "CHANGE_TARGET",
     {"JENKINS_URL": "http://jenkins.invalid/", "BRANCH_NAME": "main"}),
    ({"BUILDKITE": "true", "BUILDKITE_PULL_REQUEST": "12", "BUILDKITE_PULL_REQUEST_BASE_BRANCH": "main"},
     "BUILDKITE_PULL_REQUEST_BASE_BRANCH", {"BUILDKITE": "true", "BUILDKITE_PULL_REQUEST": "false"}),
    ({"CIRCLECI": "true", "CIRCLE_PULL_REQUEST": "https://github.com/acme/models/pull/12"}, "base branch",
     {"CIRCLECI": "true", "CIRCLE_BRANCH": "main"}),
    ({"TRAVIS": "true", "TRAVIS_PULL_REQUEST": "12", "TRAVIS_BRANCH": "main"}, "TRAVIS_BRANCH",
     {"TRAVIS": "true", "TRAVIS_PULL_REQUEST": "false", "TRAVIS_BRANCH": "main"}),
    ({"CI": "woodpecker", "CI_PIPELINE_EVENT": "pull_request", "CI_COMMIT_TARGET_BRANCH": "main"},
     "CI_COMMIT_TARGET_BRANCH", {"CI": "woodpecker", "CI_PIPELINE_EVENT": "push"}),
    ({"DRONE": "true", "DRONE_BUILD_EVENT": "pull_request", "DRONE_TARGET_BRANCH": "main"}, "DRONE_TARGET_BRANCH",
     {"DRONE": "true", "DRONE_BUILD_EVENT": "push"}),
    ({"ATLANTIS_TERRAFORM_VERSION": "1.9.0", "PULL_NUM": "12", "BASE_BRANCH_NAME": "main"}, "BASE_BRANCH_NAME",
     {"ATLANTIS_TERRAFORM_VERSION": "1.9.0"}),
]


@pytest.mark.parametrize(("change", "names", "branch"), CHANGE_RUNS, ids=[
    "azure", "bitbucket", "jenkins", "buildkite", "circleci", "travis", "woodpecker", "drone", "atlantis"])
def test_a_pinned_policy_without_its_base_is_refused_in_a_change_s_run_on_other_ci_systems(
        tmp_path: Path, change: dict[str, str], names: str, branch: dict[str, str]) -> None:
    """RECON_POLICY alone trusted the work tree's spec files and recon.yaml in a pull request's run everywhere
    but on GitHub and GitLab: each CI system that says a run is a change's is told apart from its branch runs."""
    repo = _repo(tmp_path)
    pinned = tmp_path / "trusted"
    pinned.mkdir()
    (pinned / "guard.yaml").write_text(GUARD)
    got = recon("plan", "specs", cwd=repo, env={"RECON_POLICY": str(pinned), **change})
    assert got.rc == 1 and "set RECON_POLICY_REF" in got.err and names in got.err, got.text
    assert "Traceback" not in got.text
    assert recon("plan", "specs", cwd=repo, env={"RECON_POLICY": str(pinned), "RECON_POLICY_REF": "main",
                                                  **change}).rc == 0
    assert recon("plan", "specs", cwd=repo, env={"RECON_POLICY": str(pinned), **branch}).rc == 0


def _exec_kubeconfig(server: str, marker: Path) -> str:
    """A kubeconfig whose user is an exec plugin: the client runs its command to get a token."""
    credential = {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": "t"}}
    run = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/bin/sh", "interactiveMode": "Never",
           "args": ["-c", f"touch {marker}; echo '{json.dumps(credential)}'"]}
    return json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "x",
                       "clusters": [{"name": "c", "cluster": {"server": server}}],
                       "users": [{"name": "u", "user": {"exec": run}}],
                       "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]})


def _kube_model(kubeconfig: str) -> str:
    return ("apiVersion: recon/v1\nkind: Model\nmetadata: {name: churn}\nspec:\n  runtime: kubernetes\n"
            "  image: registry.local/churn:1\n  replicas: 1\n  port: 8080\n"
            f"  kubernetes: {{kubeconfig: {kubeconfig}}}\n  health: {{path: /health}}\n")


def test_a_pull_request_s_kubeconfig_does_not_run_its_commands_in_the_plan(tmp_path: Path) -> None:
    """A kubeconfig decides what the client runs (exec plugins) and where it sends credentials. A pull request
    that adds a Model with a kubeconfig of its own, or edits the kubeconfig a reviewed Model names, had its
    command run on the runner by the plan. Under a trusted ref, a trust file the change wrote (a kubeconfig,
    known_hosts, a CA bundle) is one clear error naming the spec's line and field; the file the ref has is used
    as before; on a laptop the author's own file is used."""
    peer = kube_api.start(settle=0)
    try:
        repo = _repo(tmp_path)
        marker = tmp_path / "ran"
        # main: a reviewed Model whose kubeconfig (token auth) is in the repository
        (repo / "ci").mkdir()
        peer.kubeconfig(repo / "ci" / "kube.yaml")
        (repo / "specs" / "model.yaml").write_text(_kube_model("../ci/kube.yaml"))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "a model")
        assert recon("plan", "specs", cwd=repo, env={"RECON_POLICY_REF": "main"}).rc == 0

        # the pull request edits that kubeconfig: its user runs a command
        _pr(repo, {"ci/kube.yaml": _exec_kubeconfig(peer.url, marker)})
        got = recon("plan", "specs", cwd=repo, env={"RECON_POLICY_REF": "main", **AS_MALLORY})
        assert not marker.exists(), "the pull request's kubeconfig ran its command in the plan"
        assert got.rc == 1 and "Traceback" not in got.text, got.text
        assert "specs/model.yaml:" in got.err and "kubernetes.kubeconfig" in got.err, got.err
        assert "the change under review wrote" in got.err, got.err
        # ... as when the runner's KUBECONFIG names it
        (repo / "specs" / "model.yaml").write_text(_kube_model("../ci/kube.yaml").replace(
            "  kubernetes: {kubeconfig: ../ci/kube.yaml}\n", ""))
        got = recon("plan", "specs", cwd=repo, env={"RECON_POLICY_REF": "main", "KUBECONFIG": "ci/kube.yaml",
                                                    **AS_MALLORY})
        assert not marker.exists() and got.rc == 1 and "KUBECONFIG names it" in got.err, got.text
        _git(repo, "checkout", "-q", "--", "specs/model.yaml")

        # ... or adds a Model of its own with a kubeconfig of its own
        _git(repo, "checkout", "-q", "main", "--", "ci/kube.yaml")
        (repo / "ci" / "own.yaml").write_text(_exec_kubeconfig(peer.url, marker))
        (repo / "specs" / "model2.yaml").write_text(_kube_model("../ci/own.yaml").replace("churn", "churn2"))
        got = recon("plan", "specs", cwd=repo, env={"RECON_POLICY_REF": "main", **AS_MALLORY})
        assert not marker.exists() and got.rc == 1 and "specs/model2.yaml:" in got.err, got.text
        # ... named as the client reads it, whatever the name looks like (`~/…` is relative to the spec file too)
        (repo / "specs" / "model2.yaml").unlink()
        (repo / "specs" / "~").mkdir()
        (repo / "specs" / "~" / "kube.conf").write_text(_exec_kubeconfig(peer.url, marker))
        (repo / "specs" / "model3.yaml").write_text(_kube_model("~/kube.conf").replace("churn", "churn3"))
        got = recon("plan", "specs", cwd=repo, env={"RECON_POLICY_REF": "main", **AS_MALLORY})
        assert not marker.exists() and got.rc == 1 and "specs/model3.yaml:" in got.err, got.text
        (repo / "specs" / "model3.yaml").unlink()
        (repo / "specs" / "model2.yaml").write_text(_kube_model("../ci/own.yaml").replace("churn", "churn2"))

        # an apply comes after the review (a merge, an approval): it uses the file the change wrote
        applied = recon("apply", "specs", "--auto-approve", "--target", "Model/churn2", cwd=repo,
                        env={"RECON_POLICY_REF": "main", **AS_MALLORY})
        assert marker.exists() and "the change under review wrote" not in applied.err, applied.text
        marker.unlink()

        # a laptop: the author's own kubeconfig is theirs to run
        local = recon("plan", "specs", cwd=repo)
        assert marker.exists() and local.rc == 0, local.text
    finally:
        peer.stop()


def test_a_pull_request_s_known_hosts_or_ca_bundle_is_not_trusted(tmp_path: Path) -> None:
    """known_hosts decides which SSH host keys recon accepts, a CA bundle which HTTPS certificates (and so where
    a password goes): written by the change under review, either is refused under a trusted ref, and so is a
    group file it writes that does not check certificates at all."""
    repo = _repo(tmp_path)
    (repo / "ci").mkdir()
    (repo / "ci" / "kh").write_text("")
    (repo / "ci" / "ca.pem").write_text("")
    ssh = ("apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: fleet}\nspec:\n  connection: ssh\n"
           "  ssh: {knownHosts: ../ci/kh}\n  hosts: [{name: h1, address: 127.0.0.1}]\n")
    win = ("apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: win}\nspec:\n  connection: winrm\n"
           "  winrm: {caFile: ../ci/ca.pem, password: {env: P}}\n  hosts: [{name: w1, address: 127.0.0.1}]\n")
    _pr(repo, {"specs/fleet.yaml": ssh, "specs/win.yaml": win})
    got = recon("plan", "specs", cwd=repo, env={"RECON_POLICY_REF": "main", "P": "pw", **AS_MALLORY})
    assert got.rc == 1 and "Traceback" not in got.text, got.text
    assert "specs/fleet.yaml:" in got.err and "ssh.knownHosts" in got.err, got.err
    assert "specs/win.yaml:" in got.err and "winrm.caFile" in got.err, got.err
    # ... or turns the certificate check off in a group file it writes
    (repo / "specs" / "win.yaml").write_text(win.replace("caFile: ../ci/ca.pem", "validateCerts: false"))
    (repo / "specs" / "fleet.yaml").unlink()
    got = recon("plan", "specs", cwd=repo, env={"RECON_POLICY_REF": "main", "P": "pw", **AS_MALLORY})
    assert got.rc == 1 and "specs/win.yaml:" in got.err and "winrm.validateCerts" in got.err, got.text
    assert "certificates are not checked" in got.err and "change under review" in got.err, got.err


def test_a_pinned_policy_inside_the_repository_is_not_the_pull_request_s_to_edit(tmp_path: Path) -> None:
    """A workflow that pins a Policy directory inside the repository (RECON_POLICY=.recon/policy) had the pull
    request's version of it govern: a pull request that rewrote it to allow everything switched the Policy off,
    and the recon.yaml beside it chose the state. Under a trusted ref, a pinned Policy or recon.yaml the change
    wrote is one clear error; one the change left as the ref has it governs as before."""
    repo = _repo(tmp_path)
    (repo / ".recon").mkdir()
    (repo / ".recon" / "guard.yaml").write_text(GUARD)
    _git(repo, "rm", "-q", "specs/policy.yaml")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the Policy, pinned in .recon")
    env = {"RECON_POLICY": ".recon", "RECON_POLICY_REF": "main", **AS_MALLORY}
    kept = recon("plan", "specs", cwd=repo, env=env)
    assert "no-deletes-in-prod" in kept.out and "Traceback" not in kept.text, kept.text

    _pr(repo, {".recon/guard.yaml": ALLOW_ALL.replace("a-exceptions", "guard")})
    got = recon("plan", "specs", cwd=repo, env=env)
    assert got.rc == 1 and "RECON_POLICY=.recon is inside the repository" in got.err, got.text
    assert ".recon/guard.yaml" in got.err and "Traceback" not in got.text, got.text
    _git(repo, "checkout", "-q", "main", "--", ".recon/guard.yaml")
    (repo / ".recon" / "recon.yaml").write_text("state:\n  backend: postgres\n  dsn: {env: X}\n")
    beside = recon("plan", "specs", cwd=repo, env=env)
    assert beside.rc == 1 and ".recon/recon.yaml" in beside.err, beside.text


def test_a_pull_request_cannot_send_the_runner_s_secrets_to_a_server_of_its_own(tmp_path: Path) -> None:
    """A plan logs in where the specs say. A pull request that pointed a WinRM host (any address with a public
    certificate passes the check), an SSH password, or a Bundle's registry at a server of its own had the plan
    send the runner's password or token there. Under a trusted ref, a spec file the change wrote sends a secret
    only where a spec of the ref sends it; a change that keeps the destinations plans as before."""
    repo = _repo(tmp_path)
    (repo / "model").mkdir()
    (repo / "model" / "w.bin").write_text("weights")
    win = ("apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: win}\nspec:\n  connection: winrm\n"
           "  winrm: {password: {env: WIN_PW}}\n  hosts: [{name: w1, address: 127.0.0.1, port: 9}]\n")
    ssh = ("apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: fleet}\nspec:\n  connection: ssh\n"
           "  ssh: {password: {env: SSH_PW}}\n  hosts: [{name: h1, address: 127.0.0.1, port: 9}]\n")
    bundle = ("apiVersion: recon/v1\nkind: Bundle\nmetadata: {name: churn}\nspec:\n  source: ../model\n"
              "  ref: 127.0.0.1:9/models/churn:v1\n  credentials: {username: ci, password: {env: REG_TOKEN}}\n")
    write(repo / "specs", {"win.yaml": win, "fleet.yaml": ssh, "bundle.yaml": bundle})
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "groups and a bundle")
    env = {"RECON_POLICY_REF": "main", "WIN_PW": "w-secret", "SSH_PW": "s-secret", "REG_TOKEN": "r-secret",
           **AS_MALLORY}
    said = "where main sends it nowhere"

    # a change that keeps every destination (a label, another tag) is planned as before
    _pr(repo, {"specs/win.yaml": win.replace("hosts: [{name: w1,", "hosts: [{name: w1, labels: {a: b},"),
               "specs/bundle.yaml": bundle.replace(":v1", ":v2")})
    kept = recon("plan", "specs", cwd=repo, env=env)
    assert said not in kept.err and "Traceback" not in kept.text, kept.text

    # one that moves them: the WinRM host, the SSH host, the registry (other loopback addresses stand for the
    # servers of the pull request's author: a test talks to no other address, even when recon would)
    (repo / "specs" / "win.yaml").write_text(win.replace("127.0.0.1, port: 9", "127.0.0.2"))
    (repo / "specs" / "fleet.yaml").write_text(ssh.replace("port: 9}", "port: 2222}"))
    (repo / "specs" / "bundle.yaml").write_text(bundle.replace("127.0.0.1:9", "127.0.0.3:9"))
    moved = recon("plan", "specs", cwd=repo, env=env)
    assert moved.rc == 1 and "Traceback" not in moved.text, moved.text
    for where in ("winrm 127.0.0.2:5986", "ssh 127.0.0.1:2222", "registry 127.0.0.3:9"):
        assert f"to {where}, {said}" in moved.err, moved.err
    assert "specs/win.yaml:" in moved.err and "winrm.password" in moved.err
    assert "specs/bundle.yaml:" in moved.err and "credentials.password" in moved.err
    assert not any(s in moved.text for s in ("w-secret", "s-secret", "r-secret"))
    # ... or adds a group of its own that sends the same password
    _git(repo, "checkout", "-q", "main", "--", "specs")
    (repo / "specs" / "mine.yaml").write_text(win.replace("name: win}", "name: mine}").replace(
        "127.0.0.1, port: 9", "127.0.0.4"))
    added = recon("plan", "specs", cwd=repo, env=env)
    assert added.rc == 1 and "specs/mine.yaml:" in added.err and f"to winrm 127.0.0.4:5986, {said}" in added.err


def test_a_pull_request_cannot_read_the_runner_s_environment_through_a_variable(tmp_path: Path) -> None:
    """`${VAR}` in a Bundle's ref or a host's root is taken from the environment. A pull request that wrote
    `${SECRET_TOKEN}` into a ref had the runner's token printed in its own plan (the registry it could not
    reach, named by the expanded ref), or sent in a lookup of a name it chose. Under a trusted ref, a spec file
    the change wrote expands only the variables the ref's specs expand; on a laptop, any."""
    reg = registry.start(tmp_path / "registry")
    try:
        repo = _repo(tmp_path)
        (repo / "model").mkdir()
        (repo / "model" / "w.bin").write_text("weights")
        bundle = ("apiVersion: recon/v1\nkind: Bundle\nmetadata: {name: churn}\nspec:\n  source: ../model\n"
                  f"  ref: {reg.host}/${{TEAM:-ml}}/churn:v1\n")
        write(repo / "specs", {"bundle.yaml": bundle})
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "a bundle")
        env = {"RECON_POLICY_REF": "main", "SECRET_TOKEN": "ghp-the-runner-s-token", "TEAM": "risk", **AS_MALLORY}
        _pr(repo, {"specs/bundle.yaml": bundle.replace("${TEAM:-ml}", "${SECRET_TOKEN}")})
        got = recon("plan", "specs", cwd=repo, env=env)
        assert "ghp-the-runner-s-token" not in got.text, got.text
        assert got.rc == 1 and "specs/bundle.yaml:" in got.err and "spec.ref" in got.err, got.text
        assert "${SECRET_TOKEN}" in got.err and "Traceback" not in got.text, got.text
        # a variable the ref's specs expand already is the change's to use, as on a laptop any is
        (repo / "specs" / "bundle.yaml").write_text(bundle.replace("churn:v1", "churn:v2"))
        kept = recon("plan", "specs", cwd=repo, env=env)
        assert kept.rc == 0 and "risk/churn:v2" in kept.out, kept.text
        local = recon("plan", "specs", cwd=repo, env={"SECRET_TOKEN": "ghp-the-runner-s-token"})
        assert local.rc == 0 and "ml/churn:v2" in local.out, local.text
    finally:
        reg.stop()
