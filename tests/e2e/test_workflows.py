"""Issue 17: the three example workflows run job by job as GitHub runs them (tests/peers/gha_runner.py): a
real clone for actions/checkout, action.yml's own steps (its `pip install` included, offline), the GitHub API
test peer for comments, statuses and issues, and the shared state backend (a real PostgreSQL) that the
examples point every runner at."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, recon
from tests.e2e.test_local_cli import hoststate
from tests.peers import github_api, postgres
from tests.peers.gha_runner import Runner, condition, evaluate, interpolate

EXAMPLES = ROOT / "examples" / "github"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=alice", "-c", "user.email=alice@example.invalid", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class World:
    repo: Path  # where the commits are made; actions/checkout clones it
    live: Path  # the managed host's root, outside every workspace
    runner: Runner
    gh: github_api.FakeGitHub


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with _world(tmp_path_factory.mktemp("gha")) as made:
        yield made


@pytest.fixture
def own_world(tmp_path: Path) -> Iterator[World]:
    """A world of its own: no pull request of another test holds its targets or moved its live state."""
    with _world(tmp_path) as made:
        yield made


@contextmanager
def _world(base: Path) -> Iterator[World]:
    pg = postgres.start()
    gh = github_api.start()
    try:
        pg.create_db("ci")
        repo, live = base / "origin", base / "live"
        (repo / "specs").mkdir(parents=True)
        live.mkdir()
        (repo / "specs" / "hosts.yaml").write_text(
            "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: hosts}\nspec:\n"
            f"  hosts: [{{name: app-1, root: {live}}}]\n")
        (repo / "specs" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /srv/app.conf\n"
                                                                  "  content: v1\n"))
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "add", ".")
        _git(repo, "commit", "-qm", "specs")
        runner = Runner(base / "runner", repo, api_url=gh.url, token=gh.token,
                        secrets={"RECON_HASH_KEY": "k" * 32, "RECON_STATE_DSN": pg.dsn("ci")})
        yield World(repo, live, runner, gh)
        # GitHub's API answers 502 now and then, and the Action tries again where that is safe; this API never
        # does, so a call tried again here means something else answered on its port: say what it was
        retried = [line for log in runner.logs for line in log.splitlines() if "trying again" in line]
        if retried:
            warnings.warn("the Action tried GitHub calls again: " + " | ".join(retried)[:2000], stacklevel=1)
    finally:
        gh.stop()
        pg.stop()


@contextmanager
def _leaves_no_temp_files() -> Iterator[None]:
    """The job writes its scratch files into RUNNER_TEMP, which the runner empties after each job, and nothing
    into the machine's temporary directory: on a self-hosted runner that is never emptied, and each apply left a
    directory with its plan there."""
    where = tempfile.gettempdir()
    before = set(os.listdir(where))
    yield
    left = sorted(set(os.listdir(where)) - before)
    assert not left, f"the job left {left} in {where}"


def test_expressions_as_github_evaluates_them() -> None:
    ctx = {"inputs": {"a": "", "b": "x"}, "steps": {"s": {"outputs": {"has-changes": "true"}}},
           "github": {"event": {"inputs": {}}, "job": "plan"}, "__status": "success"}
    assert evaluate("inputs.a || format('d-{0}', github.job)", ctx) == "d-plan"
    assert evaluate("github.event.inputs.confirm && format('--confirm {0}', github.event.inputs.confirm) || ''",
                    ctx) == ""
    assert condition("steps.s.outputs.has-changes == 'TRUE'", ctx)  # comparisons ignore case
    assert not condition("${{ inputs.a }}", ctx) and condition("always() && inputs.b != 'apply'", ctx)
    assert interpolate("a ${{ inputs.b }} ${{ inputs.missing }}!", ctx) == "a x !"
    assert interpolate("${{ inputs.b }}/${{ inputs.a || 'f.json' }}", ctx) == "x/f.json"


def test_plan_on_a_pull_request_then_apply_on_merge_then_the_nightly_drift(world: World) -> None:
    repo, gh, runner = world.repo, world.gh, world.runner
    main = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-qb", "feature")
    (repo / "specs" / "app.yaml").write_text(hoststate("app", "- type: file\n  path: /srv/app.conf\n"
                                                              "  content: v2\n"))
    _git(repo, "commit", "-qam", "app v2")
    head = _git(repo, "rev-parse", "HEAD")
    pr = {"number": 5, "base": {"sha": main, "ref": "main"}, "head": {"sha": head, "ref": "feature"}}

    # a runner with a proxy in its environment (a closed port here): the Action's calls of a GitHub API on
    # loopback go direct, as GitHub's own tools would (they went to the proxy, and no comment was made)
    proxied = {k: "http://127.0.0.1:9" for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")}
    with _leaves_no_temp_files():
        plan = runner.run_job(EXAMPLES / "plan-pr.yml", "plan", "pull_request", {"pull_request": pr}, head,
                              "refs/pull/5/merge", env=proxied)
    assert plan.ok, plan.log
    recon = plan.step("recon").outputs
    assert recon["exit-code"] == "2" and recon["has-changes"] == "true", (recon, plan.log)
    assert recon["comment"] == "created" and recon["status"] == "success", (recon, plan.log)
    assert gh.statuses[head][-1]["context"] == "recon/plan: specs"
    [comment] = gh.comments.values()
    assert comment["issue"] == 5 and "/srv/app.conf" in comment["body"]
    assert f"plan {recon['plan-id']}, changes true" in plan.steps[-1].log  # outputs reach the script as env
    assert (plan.artifacts / "recon-plan-plan-plan" / "recon-plan.json").exists()
    assert "### recon plan" in plan.summary

    _git(repo, "checkout", "-q", "main")
    _git(repo, "merge", "-q", "--ff-only", "feature")
    gh.pulls[head] = [{"number": 5, "state": "closed", "merged_at": "2026-11-30T12:00:00Z"}]
    push = {"before": main, "after": head, "ref": "refs/heads/main"}
    with _leaves_no_temp_files():
        apply = runner.run_job(EXAMPLES / "apply-main.yml", "apply", "push", push, head, "refs/heads/main")
    assert apply.ok, apply.log
    out = apply.step("recon").outputs
    assert out["reviewed"] == recon["plan-id"] and out["exit-code"] == "0" and out["has-changes"] == "false", out
    assert (world.live / "srv" / "app.conf").read_text() == "v2"
    told = [c["body"] for c in gh.comments.values() if c["issue"] == 5]
    assert any(f"Applied the plan this pull request showed, `{recon['plan-id']}`" in b for b in told), told

    # the nightly drift check runs on a fresh runner: the baseline is the shared backend's
    (world.live / "srv" / "app.conf").write_text("edited by hand\n")
    with _leaves_no_temp_files():
        drift = runner.run_job(EXAMPLES / "drift-nightly.yml", "drift", "schedule", {"schedule": "17 3 * * *"},
                               head, "refs/heads/main")
    assert drift.ok, drift.log
    out = next(s for s in drift.steps if "issue" in s.outputs).outputs
    assert (out["drift"], out["pending"], out["issue"]) == ("1", "0", "opened"), out
    [issue] = gh.issues.values()
    assert issue["state"] == "open" and "recon-drift" in issue["labels"] and "/srv/app.conf" in issue["body"]
    (world.live / "srv" / "app.conf").write_text("v2")
    clean = runner.run_job(EXAMPLES / "drift-nightly.yml", "drift", "schedule", {}, head, "refs/heads/main")
    assert clean.ok, clean.log
    assert next(s for s in clean.steps if "issue" in s.outputs).outputs["issue"] == "closed"
    assert gh.issues[issue["number"]]["state"] == "closed"


def test_a_policy_path_still_measures_the_pull_request_against_its_base(own_world: World, tmp_path: Path) -> None:
    """The Action's policy-path (a Policy the workflow pins outside the repository) left nothing saying what the
    pull request wrote: its spec file for a path of the managed host (/etc/shadow, any content) had the host's
    lines printed in the plan comment on the pull request. The pinned Policy governs, and the base names what
    the pull request wrote, as with the base's Policy."""
    world = own_world
    repo = world.repo
    (world.live / "etc").mkdir()
    (world.live / "etc" / "shadow").write_text("root:$6$the-hash-of-the-host:19000:0:99999:7:::\n")
    trusted = tmp_path / "trusted"  # outside the repository, as a workflow mounts it
    trusted.mkdir()
    (trusted / "policy.yaml").write_text("apiVersion: recon/v1\nkind: Policy\nmetadata: {name: pinned}\nspec:\n  "
                                         "rules:\n    - {name: no-deletes, effect: deny, when: {actions: [delete]}}\n")
    workflow = tmp_path / "plan-pr.yml"
    workflow.write_text((EXAMPLES / "plan-pr.yml").read_text().replace(
        "command: plan\n", f"command: plan\n          policy-path: {trusted}\n"))
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-qb", "steal")
    (repo / "specs" / "steal.yaml").write_text(hoststate("steal", "- type: file\n  path: /etc/shadow\n"
                                                                  "  content: x\n"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "a file to look at")
    head = _git(repo, "rev-parse", "HEAD")
    pr = {"number": 7, "base": {"sha": base, "ref": "main"}, "head": {"sha": head, "ref": "steal"}}
    plan = world.runner.run_job(workflow, "plan", "pull_request", {"pull_request": pr}, head, "refs/pull/7/merge")
    assert plan.ok, plan.log
    [comment] = world.gh.comments.values()
    assert "/etc/shadow" in comment["body"] and "the-hash-of-the-host" not in comment["body"], comment["body"]
    assert "the-hash-of-the-host" not in plan.log
    saved = json.loads((plan.artifacts / "recon-plan-plan-plan" / "recon-plan.json").read_text())
    assert saved["policy"]["source"] == f"file {trusted}", saved["policy"]


def _pull_request(world: World, number: int, content: str) -> tuple[str, str, dict[str, object]]:
    """A pull request changing the app's content, planned by plan-pr.yml, then merged: (base, head, the plan
    step's outputs)."""
    base, head = _open_pr(world, number, content)
    plan = world.runner.run_job(EXAMPLES / "plan-pr.yml", "plan", "pull_request",
                                {"pull_request": world.gh.prs[number]}, head, f"refs/pull/{number}/merge")
    assert plan.ok, plan.log
    _git(world.repo, "merge", "-q", "--ff-only", f"pr-{number}")
    world.gh.pulls[head] = [{"number": number, "state": "closed"}]
    return base, head, plan.step("recon").outputs


def test_a_stale_reviewed_plan_is_applied_anew_only_where_the_policy_allows(world: World) -> None:
    """The live state moved between the review and the merge: the reviewed plan is stale. Without a Policy the
    Action plans anew and applies, and says so; with a trusted Policy that does not allow unreviewed plans it
    refuses (exit 3) and says why."""
    repo, gh = world.repo, world.gh
    base, head, _ = _pull_request(world, 6, "v3")
    (world.live / "srv" / "app.conf").write_text("moved after the review\n")
    push = {"before": base, "after": head, "ref": "refs/heads/main"}
    applied = world.runner.run_job(EXAMPLES / "apply-main.yml", "apply", "push", push, head, "refs/heads/main")
    assert applied.ok, applied.log
    assert applied.step("recon").outputs["reviewed"] == "none"
    assert (world.live / "srv" / "app.conf").read_text() == "v3"
    told = [c["body"] for c in gh.comments.values() if c["issue"] == 6]
    assert any("is stale" in b and "applied unreviewed" in b for b in told), (told, applied.log, gh.requests[-12:])

    (repo / "specs" / "policy.yaml").write_text("apiVersion: recon/v1\nkind: Policy\nmetadata: {name: guard}\n"
                                                "spec: {rules: []}\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "a Policy")
    base, head, _ = _pull_request(world, 7, "v4")
    (world.live / "srv" / "app.conf").write_text("moved again\n")
    push = {"before": base, "after": head, "ref": "refs/heads/main"}
    refused = world.runner.run_job(EXAMPLES / "apply-main.yml", "apply", "push", push, head, "refs/heads/main")
    assert not refused.ok and refused.step("recon").outputs["exit-code"] == "3", refused.log
    assert (world.live / "srv" / "app.conf").read_text() == "moved again\n"
    told = [c["body"] for c in gh.comments.values() if c["issue"] == 7]
    assert any("Not applied" in b and "does not allow applying unreviewed plans" in b for b in told), told


def _open_pr(world: World, number: int, content: str) -> tuple[str, str]:
    """A pull request changing the app's content, its head published as refs/pull/N/head: (base, head)."""
    repo = world.repo
    _git(repo, "checkout", "-q", "main")
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-qb", f"pr-{number}")
    (repo / "specs" / "app.yaml").write_text(hoststate("app", f"- type: file\n  path: /srv/app.conf\n"
                                                              f"  content: {content}\n"))
    _git(repo, "commit", "-qam", f"app {content}")
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "update-ref", f"refs/pull/{number}/head", head)
    _git(repo, "checkout", "-q", "main")
    world.gh.prs[number] = {"number": number, "head": {"sha": head, "ref": f"pr-{number}"},
                            "base": {"sha": base, "ref": "main"}, "mergeable": True, "state": "open"}
    return base, head


def _comment(world: World, number: int, body: str):  # type: ignore[no-untyped-def]
    event = {"issue": {"number": number, "pull_request": {"url": f"https://x/pulls/{number}"}},
             "comment": {"body": body, "user": {"login": world.runner.actor}}}
    main = _git(world.repo, "rev-parse", "main")
    return world.runner.run_job(EXAMPLES / "pr-commands.yml", "command", "issue_comment", event, main,
                                "refs/heads/main")


def _replies(world: World, number: int) -> list[str]:
    return [c["body"] for c in world.gh.comments.values() if c["issue"] == number and "`recon " in c["body"]]


def test_comment_commands_with_apply_requirements_and_pull_request_locks(world: World) -> None:
    """Issue 17: `recon plan` / `recon apply` commented on a pull request; apply needs an approval and a
    mergeable pull request; a pull request's plan holds its targets until it is closed, and another pull request
    changing them is told which holds them."""
    gh = world.gh
    main = _git(world.repo, "rev-parse", "main")
    closed7 = world.runner.run_job(EXAMPLES / "pr-commands.yml", "release", "pull_request",
                                   {"action": "closed", "pull_request": {"number": 7}}, main, "refs/pull/7/merge")
    assert closed7.ok, closed7.log  # the refused pull request of the test before lets go of its target
    _open_pr(world, 8, "v8")
    planned = _comment(world, 8, "recon plan")
    assert planned.ok, planned.log
    assert any("planned" in r for r in _replies(world, 8)), _replies(world, 8)
    assert any("<!-- recon-plan-id: " in c["body"] and c["issue"] == 8 for c in gh.comments.values())

    _, head9 = _open_pr(world, 9, "v9")
    pr9 = {"pull_request": {**gh.prs[9]}}
    other = world.runner.run_job(EXAMPLES / "plan-pr.yml", "plan", "pull_request", pr9, head9, "refs/pull/9/merge")
    assert not other.ok and other.step("recon").outputs["exit-code"] == "3", other.log
    [plan9] = [c["body"] for c in gh.comments.values() if c["issue"] == 9]
    assert "Held by another pull request" in plan9 and "held by pr:8" in plan9, plan9

    refused = _comment(world, 8, "recon apply")
    assert not refused.ok
    assert any("was not run" in r and "approving review" in r for r in _replies(world, 8)), _replies(world, 8)
    conf = world.live / "srv" / "app.conf"
    assert not conf.exists() or conf.read_text() != "v8"

    gh.reviews[8] = [{"user": {"login": "bob"}, "state": "APPROVED"}]
    # anyone may comment the marker with another plan's id: only the bot's comment counts
    forged = min(gh.comments) - 1
    gh.comments[forged] = {"id": forged, "issue": 8, "user": {"login": "mallory", "type": "User"},
                           "body": "<!-- recon:plan:specs -->\n<!-- recon-plan-id: 000000000000 -->\n"}
    applied = _comment(world, 8, "recon apply")
    assert applied.ok, applied.log
    assert (world.live / "srv" / "app.conf").read_text() == "v8"
    assert any("applied the plan" in r for r in _replies(world, 8)), _replies(world, 8)

    closed = world.runner.run_job(EXAMPLES / "pr-commands.yml", "release", "pull_request",
                                  {"action": "closed", "pull_request": gh.prs[8]}, head9, "refs/pull/8/merge")
    assert closed.ok, closed.log
    assert not world.runner.run_job(EXAMPLES / "pr-commands.yml", "command", "pull_request",
                                    {"pull_request": gh.prs[8]}, head9, "refs/pull/8/merge").steps  # job skipped
    again = world.runner.run_job(EXAMPLES / "plan-pr.yml", "plan", "pull_request", pr9, head9, "refs/pull/9/merge")
    assert again.ok and again.step("recon").outputs["exit-code"] == "2", again.log


def test_the_sharded_workflow_plans_in_a_matrix_comments_one_merged_plan_and_each_shard_applies_its_part(
        own_world: World) -> None:
    """Issue 16: examples/github/sharded.yml as one workflow run each: on the pull request three plan jobs (a
    matrix), a merge job that comments once; on the push three apply jobs, each its part of the reviewed plan."""
    world = own_world
    repo, gh = world.repo, world.gh
    hosts = [f"s{i}" for i in range(1, 7)]
    _git(repo, "checkout", "-q", "main")
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-qb", "pr-30")
    (repo / "specs" / "shards.yaml").write_text(
        "apiVersion: recon/v1\nkind: HostGroup\nmetadata: {name: many}\nspec:\n  hosts:\n"
        + "".join(f"    - {{name: {h}, root: {world.live / h}}}\n" for h in hosts) + "---\n"
        + hoststate("many", "- type: file\n  path: /etc/many.conf\n  content: sharded\n").replace(
            "group: hosts", "group: many"))
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "six more hosts")
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "update-ref", "refs/pull/30/head", head)
    _git(repo, "checkout", "-q", "main")
    pr = {"number": 30, "head": {"sha": head, "ref": "pr-30"}, "base": {"sha": base, "ref": "main"},
          "mergeable": True, "state": "open"}
    gh.prs[30] = pr
    statuses_before = len(gh.statuses.get(head, []))

    run = world.runner.run_workflow(EXAMPLES / "sharded.yml", "pull_request", {"pull_request": pr}, head,
                                    "refs/pull/30/merge")
    assert [j.skipped for j in run["apply"]] == [True]
    assert len(run["plan"]) == 3 and all(j.ok for j in run["plan"]), [j.log for j in run["plan"]]
    [merge] = run["merge"]
    assert merge.ok, merge.log
    out = merge.step("recon").outputs
    pid = out["plan-id"]
    assert out["exit-code"] == "2" and out["comment"] == "created" and merge.outputs["plan-id"] == pid, out
    [comment] = [c for c in gh.comments.values() if c["issue"] == 30]  # once, by the merge job alone
    assert f"<!-- recon-plan-id: {pid} -->" in comment["body"] and "Merged from 3 shards" in comment["body"]
    assert [s["context"] for s in gh.statuses[head][statuses_before:]] == ["recon/plan: specs"]
    fragments = [json.loads(f.read_text()) for f in sorted(merge.artifacts.glob("recon-part-*/*.json"))]
    assert [f["shards"]["index"] for f in fragments] == [1, 2, 3]

    _git(repo, "merge", "-q", "--ff-only", "pr-30")
    gh.pulls[head] = [{"number": 30, "state": "closed", "merged_at": "2026-11-30T12:00:00Z"}]
    push = {"before": base, "after": head, "ref": "refs/heads/main"}
    run = world.runner.run_workflow(EXAMPLES / "sharded.yml", "push", push, head, "refs/heads/main")
    assert [j.skipped for j in run["plan"] + run["merge"]] == [True, True]
    assert len(run["apply"]) == 3 and all(j.ok for j in run["apply"]), [j.log for j in run["apply"]]
    assert {j.step("recon").outputs["reviewed"] for j in run["apply"]} == {pid}
    for h in hosts:
        assert (world.live / h / "etc" / "many.conf").read_text() == "sharded"
    told = [c["body"] for c in gh.comments.values() if c["issue"] == 30]
    assert sum(f"the plan this pull request showed, `{pid}`" in b for b in told) == 3, told
    env = {"RECON_STATE_BACKEND": "postgres", "RECON_STATE_DSN": world.runner.secrets["RECON_STATE_DSN"]}
    shown = recon("show", pid, cwd=repo, env=env)
    assert "Applied: 3 of 3 parts" in shown.out, shown.text
    again = recon("plan", "specs", "--detailed-exitcode", cwd=repo, env=env)
    assert again.rc == 0 and "No changes." in again.out, again.text
