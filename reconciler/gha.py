"""The GitHub Action's work (the `recon-action` command), run by action.yml's steps.

It runs recon (plan, apply or drift) on the spec path, then, from what a real run provides
(GITHUB_EVENT_PATH, GITHUB_STEP_SUMMARY, GITHUB_OUTPUT, GITHUB_API_URL, GITHUB_REPOSITORY,
GITHUB_SERVER_URL, GITHUB_RUN_ID): writes the job summary, creates or updates one PR comment
(found by a hidden marker, so each push edits the same comment), or for drift opens, updates or
closes one issue; and sets the outputs exit-code, plan-id, has-changes and a count per action.

Exit code: recon's own, except 2 (changes pending, or drift): that is an answer, not a failure;
it is in the `exit-code` output, and fails the step only with `fail-on-changes: true`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.plan import Plan
from reconciler.render.markdown import COMMENT_LIMIT, SUMMARY_LIMIT, render, render_drift, utf8

ACTIONS = ("create", "update", "replace", "delete", "restart", "run")
DRIFT_LABEL = "recon-drift"


def _input(name: str, default: str = "") -> str:
    return os.environ.get(f"INPUT_{name.upper().replace('-', '_')}", default).strip()


class GitHubError(Exception):
    """A call the token may not make (401/403: e.g. a pull request from a fork has a read-only token), or that
    failed: the plan itself stands; the action says so and goes on."""

    def __init__(self, code: int, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.code = code  # 0: no answer
        self.refused = refused  # the connection was refused: the request never left


class GitHub:
    """The few REST calls the action makes, with the token; errors name the call."""

    def __init__(self, token: str) -> None:
        from providers.proxies import proxy_for

        self.api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
        self.repo = os.environ["GITHUB_REPOSITORY"]
        self.token = token
        proxy = proxy_for(self.api)  # a runner's proxy, as the runner's own tools use it (providers/proxies.py)
        scheme = self.api.split(":", 1)[0]
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({scheme: proxy} if proxy else {}))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, repeatable: bool | None = None,
             landed: Callable[[], bool] | None = None) -> Any:
        """One REST call; a transient failure (no connection, 429, 5xx) is tried again twice, after 0.5 and 1.5 s.
        GitHub answers 502 now and then, and a gateway's 502 does not say whether the request was carried out, so
        a request is repeated only where that is safe: GET and PATCH (`repeatable`, default: not a POST), any
        request whose connection was refused (it never left), and a POST whose `landed` check says the failed one
        made nothing (a comment or issue is looked for before it is made again: never twice)."""
        repeatable = method != "POST" if repeatable is None else repeatable
        for delay in (0.5, 1.5, None):
            try:
                return self._once(method, path, body)
            except GitHubError as exc:
                transient = exc.code in (0, 429, 500, 502, 503, 504)
                if delay is None or not (exc.refused or (transient and (repeatable or landed is not None))):
                    raise
                print(f"recon action: {exc}; trying again in {delay} s", file=sys.stderr)
                time.sleep(delay)
                if not exc.refused and landed is not None and landed():
                    return None
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        req = urllib.request.Request(
            f"{self.api}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json",
                     "User-Agent": "recon-action"})
        try:
            with self.opener.open(req, timeout=30) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            raise GitHubError(exc.code, f"GitHub API {method} {path} answered {exc.code}: "
                              f"{exc.read(500).decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GitHubError(0, f"GitHub API {method} {path} cannot be reached: {exc}",
                              refused=isinstance(reason, ConnectionRefusedError)) from None
        return json.loads(data) if data else None

    def all(self, path: str) -> list[Any]:
        out: list[Any] = []
        page = 1
        while True:
            sep = "&" if "?" in path else "?"
            got = self.call("GET", f"{path}{sep}per_page=100&page={page}")
            out += got
            if len(got) < 100:
                return out
            page += 1

    def upsert_comment(self, number: int, marker: str, body: str) -> str:
        """Edit the comment that carries the marker, or create it; 'created' or 'updated'."""
        for comment in self.all(f"/repos/{self.repo}/issues/{number}/comments"):
            if marker in (comment.get("body") or ""):
                self.call("PATCH", f"/repos/{self.repo}/issues/comments/{comment['id']}", {"body": body})
                return "updated"
        self.comment(number, body)
        return "created"

    def comment(self, number: int, body: str) -> None:
        """A new comment on an issue or pull request, made once even when a failed attempt is tried again."""
        path = f"/repos/{self.repo}/issues/{number}/comments"
        self.call("POST", path, {"body": body}, landed=lambda: any(c.get("body") == body for c in self.all(path)))

    def status(self, sha: str, context: str, state: str, description: str, url: str) -> str:
        """A commit status (what branch protection can require), one per context: the latest wins."""
        self.call("POST", f"/repos/{self.repo}/statuses/{sha}", repeatable=True,  # set twice, the latest wins
                  body={"state": state, "context": context, "description": description[:140], "target_url": url})
        return state

    def drift_issue(self, marker: str, body: str, drifted: bool) -> str:
        """One open issue while there is drift: opened, updated, or closed when clean."""
        def marked() -> list[dict[str, Any]]:  # the open drift issues that carry the marker
            return [i for i in self.all(f"/repos/{self.repo}/issues?state=open&labels={DRIFT_LABEL}")
                    if marker in (i.get("body") or "")]

        found = marked()
        if drifted:
            if found:
                self.call("PATCH", f"/repos/{self.repo}/issues/{found[0]['number']}", {"body": body})
                return "updated"
            self.call("POST", f"/repos/{self.repo}/issues",
                      {"title": "recon: drift detected", "body": body, "labels": [DRIFT_LABEL]},
                      landed=lambda: bool(marked()))
            return "opened"
        for issue in found:
            self.comment(int(issue["number"]), "No drift any more: closing.")
            self.call("PATCH", f"/repos/{self.repo}/issues/{issue['number']}", {"state": "closed"})
        return "closed" if found else "none"


def trusted_policy(event: dict[str, Any], cwd: Path, name: str = "") -> dict[str, str]:
    """What this run trusts (reconciler/trust.py): the ref the change is measured against (RECON_POLICY_REF):
    the `policy-ref` input, else what the event says: a pull request's base commit, or the commit before a push,
    fetched when a shallow checkout lacks it; and the `policy-path` input (RECON_POLICY), whose Policy then
    governs instead of the ref's, while the ref still says what the change wrote. {} when there is neither (a
    scheduled run: the checked-out Policy is the trusted one)."""
    pinned = {"RECON_POLICY": _input("policy-path")} if _input("policy-path") else {}
    ref = _input("policy-ref")
    name = name or os.environ.get("GITHUB_EVENT_NAME", "")
    if name == "issue_comment" and event.get("pull_request"):  # a comment command: its pull request's base
        name = "pull_request"
    if not ref and name in ("pull_request", "pull_request_target"):
        ref = str(((event.get("pull_request") or {}).get("base") or {}).get("sha") or "")
    elif not ref and name == "push":
        before = str(event.get("before") or "")
        ref = before if before.strip("0") else ""  # a new branch's push has no before
    if not ref:
        return pinned

    def have() -> bool:
        return subprocess.run(["git", "cat-file", "-e", f"{ref}^{{commit}}"], cwd=cwd, capture_output=True,
                              check=False).returncode == 0

    if not have():
        subprocess.run(["git", "fetch", "--no-tags", "--depth=1", "origin", ref], cwd=cwd, capture_output=True,
                       check=False, timeout=120)
    return {**pinned, "RECON_POLICY_REF": ref}


def _run(args: list[str], cwd: Path) -> tuple[int, str]:
    rc, out, _ = _run3(args, cwd)
    return rc, out


def _run3(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """recon with these arguments: (exit code, stdout, stderr), both also passed on to the log."""
    recon = Path(sys.executable).parent / "recon"
    command = [str(recon)] if recon.exists() else [sys.executable, "-m", "reconciler"]
    env = {"RECON_WARM": "0", **os.environ}  # one run per job: no resident planner left behind (warm.py)
    done = subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode, done.stdout, done.stderr


PLAN_ID_MARK = re.compile(r"<!-- recon-plan-id: ([0-9a-f]{12}) -->")


def _reviewed(token: str, sha: str, spec_path: str) -> tuple[int | None, str]:
    """The pull request this commit came from, and the plan id its recon comment showed last ("": none)."""
    gh = GitHub(token)
    for pr in gh.call("GET", f"/repos/{gh.repo}/commits/{sha}/pulls") or []:
        return _reviewed_pr(gh, int(pr["number"]), spec_path)
    return None, ""


def apply_reviewed(token: str, sha: str, spec_path: str, extra: list[str], cwd: Path,
                   run_url: str) -> tuple[int, dict[str, Any]]:
    """On a merge: apply the plan the pull request showed, by its id (kept in the shared state backend), when it
    is still fresh. Else (stale, or no reviewed plan) plan anew and apply with --unreviewed, which the trusted
    Policy decides; the pull request is told which happened."""
    outputs: dict[str, Any] = {}
    try:
        number, pid = _reviewed(token, sha, spec_path) if token and sha else (None, "")
    except GitHubError as exc:
        number, pid = None, ""
        _cannot("find the pull request of this commit", exc)
    why = "no pull request showed a plan for this commit"
    if pid:
        rc, _, err = _run3(["apply", pid, *extra], cwd)
        if rc == 0 or ("stale" not in err and "no plan" not in err):
            outputs["reviewed"] = pid
            part = next((f"part {b} of " for a, b in itertools.pairwise(extra) if a == "--shard"), "")
            note = (f"✅ Applied {part}the plan this pull request showed, `{pid}`." if rc == 0 else
                    f"❌ Applying {part}the reviewed plan `{pid}` failed (exit {rc}).")
            if rc == 0 and number:
                _run(["lock", "release", "--owner", f"pr:{number}"], cwd)  # merged: its targets are free again
            _reply(token, number, f"{note} [The run]({run_url}).", outputs)
            return rc, outputs
        why = (f"the plan it showed, `{pid}`, is stale (the specs or the live state moved since)"
               if "stale" in err else f"the plan it showed, `{pid}`, is not kept in the state backend")
    rc, _, err = _run3(["apply", spec_path, "--auto-approve", "--unreviewed", *extra], cwd)
    outputs["reviewed"] = "none"
    if rc == 0 and number:
        _run(["lock", "release", "--owner", f"pr:{number}"], cwd)  # merged: its targets are free again
    if rc == 3 and "not reviewed" in err:
        note = f"❌ Not applied: {why}, and the Policy does not allow applying unreviewed plans."
    else:
        note = f"⚠ {why[0].upper()}{why[1:]}: planned anew and applied unreviewed (exit {rc}), as the Policy allows."
    _reply(token, number, f"{note} [The run]({run_url}).", outputs)
    return rc, outputs


def _reply(token: str, number: int | None, text: str, outputs: dict[str, Any] | None = None) -> None:
    """A new comment on the pull request (none without a token or a pull request); one the token may not make is
    a warning (and the `comment` output, when given)."""
    if not (token and number):
        return
    gh = GitHub(token)
    try:
        gh.comment(number, text)
    except GitHubError as exc:
        failed = _cannot("comment on the pull request", exc)
        if outputs is not None:
            outputs["comment"] = failed


def _write(path_var: str, text: str) -> None:
    path = os.environ.get(path_var)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)


def _outputs(values: dict[str, Any]) -> None:
    _write("GITHUB_OUTPUT", "".join(f"{k}={v}\n" for k, v in values.items()))


COMMANDS = ("plan", "merge", "apply", "drift", "comment", "release")


def main() -> int:
    command = _input("command", "plan")
    if command not in COMMANDS:
        print(f"recon action: command {command!r} is not one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 1
    event: dict[str, Any] = {}
    if os.environ.get("GITHUB_EVENT_PATH") and Path(os.environ["GITHUB_EVENT_PATH"]).exists():
        event = json.loads(Path(os.environ["GITHUB_EVENT_PATH"]).read_text())
    if command == "comment":
        return comment_command(event)
    if command == "release":
        number = (event.get("pull_request") or {}).get("number")
        if not number:
            print("recon action: release needs a pull_request event (closed)", file=sys.stderr)
            return 1
        rc, _ = _run(["lock", "release", "--owner", f"pr:{number}"], _cwd())
        _outputs({"exit-code": rc})
        return rc
    return run_command(command, event)


def _cwd() -> Path:
    return Path(_input("working-directory", ".") or ".")


def _text(path: Path) -> str | None:
    """A plan file's text, None if the run that was to write it did not."""
    return path.read_text() if path.exists() else None


def _run_url() -> str:
    return (f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{os.environ.get('GITHUB_REPOSITORY', '')}"
            f"/actions/runs/{os.environ.get('GITHUB_RUN_ID', '')}")


def run_command(command: str, event: dict[str, Any]) -> int:
    """plan, apply or drift, as the inputs say; for `event` (a pull request's, or the run's own)."""
    cwd = _cwd()
    spec_path = _input("path", "specs")
    extra = _input("args").split()
    plan_file = Path(_input("plan-file") or "recon-plan.json")  # GitHub hands an unset input over as ""
    run_url = _run_url()
    where = f"the `{_input('artifact-name') or 'recon-plan'}` artifact of [this run]({run_url})"
    os.environ.update(trusted_policy(event, cwd))  # for every recon run of this step
    merging = command == "merge"  # the fragments of a sharded plan (`args: --shard K/N`) made one: the plan
    command = "plan" if merging else command
    marker = f"<!-- recon:{command}:{spec_path} -->"

    if command == "drift":
        rc, out = _run(["drift", spec_path, "--json", *extra], cwd)
        if rc not in (0, 2):
            _outputs({"exit-code": rc})
            return rc
        rc_plan, _ = _run(["plan", spec_path, "--out", str(plan_file), *extra], cwd)
        if rc_plan not in (0, 2):
            _outputs({"exit-code": rc_plan})
            return rc_plan
        plan = Plan.from_json(json.loads((cwd / plan_file).read_text()))
        from reconciler.drift import Report

        data = json.loads(out)
        by_id = {c.id: c for c in plan.pending}
        report = Report(drift=[by_id[d["id"]] for d in data["drift"] if d["id"] in by_id],
                        pending=[by_id[d["id"]] for d in data["pending"] if d["id"] in by_id],
                        ignored=[(by_id[d["id"]], d["ignore_reason"]) for d in data["ignored"] if d["id"] in by_id],
                        expired=list(data["expired_rules"]))
        body = render_drift(plan, report, COMMENT_LIMIT, where, marker)
        _write("GITHUB_STEP_SUMMARY", render_drift(plan, report, SUMMARY_LIMIT, where, size=utf8))
        token = _input("token")
        try:
            issue = GitHub(token).drift_issue(marker, body, not data["clean"]) if token else "no token"
        except GitHubError as exc:
            issue = _cannot("open or update the drift issue", exc)
        _outputs({"exit-code": rc, "plan-id": plan.plan_id, "has-changes": str(not data["clean"]).lower(),
                  "drift": len(data["drift"]), "pending": len(data["pending"]), "issue": issue})
        return _final(rc)

    number = (event.get("pull_request") or {}).get("number")
    token = _input("token")
    more: dict[str, Any] = {}
    held = ""
    if command == "plan":
        (cwd / plan_file).unlink(missing_ok=True)  # a reused workspace's old plan is never posted again
    if merging:
        pattern = _input("fragments") or "recon-parts/*.json"
        found = sorted(str(p.relative_to(cwd)) for p in cwd.glob(pattern))
        if found:
            rc, _ = _run(["plan", "merge", *found, "--out", str(plan_file), "--detailed-exitcode"], cwd)
        else:
            print(f"recon action: merge found no fragments at {pattern} (download the shards' plan artifacts "
                  "there, e.g. actions/download-artifact with pattern and merge-multiple: true)", file=sys.stderr)
            rc = 1
    elif command == "plan":
        claim = ["--claim", f"pr:{number}"] if number and _input("lock-targets", "true").lower() != "false" else []
        rc, _, err = _run3(["plan", spec_path, "--out", str(plan_file), "--detailed-exitcode", *claim, *extra], cwd)
        held = "\n".join(line.removeprefix("error: ") for line in err.splitlines() if " is held by " in line)
    else:
        saved = _input("plan-file")
        if _input("reviewed").lower() == "true" and not saved:
            rc, more = apply_reviewed(token, sha_of(event), spec_path, extra, cwd, run_url)
            left_after: tuple[int, ...] = (0, 1, 3)  # a refused unreviewed apply is told what it would do
        else:
            rc, _ = _run(["apply", saved, *extra] if saved else ["apply", spec_path, "--auto-approve", *extra], cwd)
            left_after = (0, 1)
        # the outputs and the summary describe what is left after the apply, never the plan before it; planned into
        # the runner's temporary directory (emptied after each job) and removed once read: a self-hosted runner's
        # /tmp is never emptied
        with tempfile.TemporaryDirectory(prefix="recon-action-", dir=os.environ.get("RUNNER_TEMP") or None) as tmp:
            if rc in left_after:
                _run(["plan", spec_path, "--out", str(Path(tmp) / "after.json"), *_plan_args(extra)], cwd)
            after = _text(Path(tmp) / "after.json")
    if command != "apply":
        after = _text(cwd / plan_file)
    sha = sha_of(event)
    if after is None:
        outputs: dict[str, Any] = {"exit-code": rc, **more}
        _status(outputs, token, sha, command, spec_path, rc, None, run_url)
        if command == "plan" and number and token:  # the pull request must not keep showing an older plan
            sha = os.environ.get("GITHUB_SHA", "")[:12]
            body = (f"{marker}\n### recon plan failed\n\n❌ `recon plan` exited {rc} for {sha or 'this push'}; "
                    f"nothing was planned. The reason is in the log of [this run]({run_url}).\n")
            try:
                outputs["comment"] = GitHub(token).upsert_comment(int(number), marker, body)
            except GitHubError as exc:
                outputs["comment"] = _cannot("comment on the pull request", exc)
        _outputs(outputs)
        return rc
    plan = Plan.from_json(json.loads(after))
    if "index" in plan.shards:  # one shard's fragment: the merge job comments and sets the status, once
        token = ""
    if command == "plan" and plan.denied and rc in (0, 2):
        rc = 3  # a plan that apply would refuse fails the check
    title = "recon plan" if command == "plan" else "recon apply: what is left after it"
    _write("GITHUB_STEP_SUMMARY", render(plan, title, SUMMARY_LIMIT, where, size=utf8))
    counts = plan.counts()
    outputs = {"exit-code": rc, "plan-id": plan.plan_id, "has-changes": str(bool(plan.pending)).lower(),
               **{a: counts.get(a, 0) for a in ACTIONS}, **more}
    _status(outputs, token, sha, command, spec_path, rc, plan, run_url)
    if command == "plan" and number and token:
        try:
            body = render(plan, title, COMMENT_LIMIT - 40 - len(held), where, marker=marker)
            if held:  # another pull request holds targets this one changes
                body += "\n🔒 **Held by another pull request:**\n\n" + "".join(f"- {_md(h)}\n" for h in
                                                                            held.splitlines())
            outputs["comment"] = GitHub(token).upsert_comment(
                int(number), marker, f"{body}<!-- recon-plan-id: {plan.plan_id} -->\n")
        except GitHubError as exc:
            outputs["comment"] = _cannot("comment on the pull request", exc)
    _outputs(outputs)
    return _final(rc)


def _md(text: str) -> str:
    import html

    return html.escape(text)


def comment_command(event: dict[str, Any]) -> int:
    """`recon plan` or `recon apply` commented on a pull request (an issue_comment event). plan: as on a push to
    the pull request. apply: only when the pull request is approved and mergeable, and the plan it shows is
    still fresh; the commenter is the actor the Policy's subjects are checked against. The answer is a reply."""
    words = ((event.get("comment") or {}).get("body") or "").strip().split("\n", 1)[0].split()
    issue = event.get("issue") or {}
    if words[:1] != ["recon"] or len(words) < 2 or words[1] not in ("plan", "apply") or not issue.get("pull_request"):
        _outputs({"exit-code": 0, "command": "none"})
        return 0  # not a command for recon, or not on a pull request
    token = _input("token")
    gh = GitHub(token)
    number = int(issue["number"])
    pr = gh.call("GET", f"/repos/{gh.repo}/pulls/{number}")
    pr_event = {**event, "pull_request": pr}
    actor = os.environ.get("GITHUB_ACTOR", "?")
    if words[1] == "plan":
        rc = run_command("plan", pr_event)
        _reply(token, number, f"@{actor} `recon plan`: " + ("planned; the plan is in the comment above." if rc in (0, 2)
                                                          else f"failed (exit {rc}); see [the run]({_run_url()})."))
        return rc
    unmet = _apply_unmet(gh, pr)
    spec_path = _input("path", "specs")
    _, pid = _reviewed_pr(gh, number, spec_path)
    if not pid:
        unmet.append("no plan: comment `recon plan` first")
    if unmet:
        _reply(token, number, f"@{actor} `recon apply` was not run: " + "; ".join(unmet) + ".")
        _outputs({"exit-code": 3, "command": "apply"})
        return 3
    os.environ.update(trusted_policy(pr_event, _cwd(), "pull_request"))
    rc, _, err = _run3(["apply", pid, *_input("args").split()], _cwd())
    if rc == 0:
        text = f"applied the plan `{pid}` this pull request shows."
    elif "stale" in err:
        text = f"the plan `{pid}` is stale (the specs or the live state moved): comment `recon plan` again."
    else:
        text = f"failed (exit {rc}): " + (err.strip().splitlines() or ["see the run"])[-1][:300]
    _reply(token, number, f"@{actor} `recon apply`: {text} [The run]({_run_url()}).")
    _outputs({"exit-code": rc, "command": "apply", "plan-id": pid})
    return rc


def _apply_unmet(gh: GitHub, pr: dict[str, Any]) -> list[str]:
    """What a pull request lacks for `recon apply`: an approving review (the latest of each reviewer counts,
    no change requested), and being mergeable."""
    unmet = []
    latest: dict[str, str] = {}
    for review in gh.all(f"/repos/{gh.repo}/pulls/{pr['number']}/reviews"):
        if review.get("state") in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            latest[str((review.get("user") or {}).get("login"))] = str(review["state"])
    if "APPROVED" not in latest.values() or "CHANGES_REQUESTED" in latest.values():
        unmet.append("it needs an approving review (and no changes requested)")
    if pr.get("mergeable") is not True:
        unmet.append("it is not mergeable (conflicts, or checks GitHub has not finished)")
    return unmet


def _reviewed_pr(gh: GitHub, number: int, spec_path: str) -> tuple[int, str]:
    """The plan id the pull request's recon comment shows. Only a comment a bot wrote counts (the Action's
    token writes as github-actions[bot]): anyone may comment the marker and another plan's id."""
    marker = f"<!-- recon:plan:{spec_path} -->"
    for comment in gh.all(f"/repos/{gh.repo}/issues/{number}/comments"):
        body = comment.get("body") or ""
        if (comment.get("user") or {}).get("type") != "Bot":
            continue
        found = PLAN_ID_MARK.search(body) if marker in body else None
        if found:
            return number, found[1]
    return number, ""


def sha_of(event: dict[str, Any]) -> str:
    """The commit a run is about: a pull request's head, else the commit the run is for."""
    head = ((event.get("pull_request") or {}).get("head") or {}).get("sha")
    return str(head or os.environ.get("GITHUB_SHA", ""))


def _status(outputs: dict[str, Any], token: str, sha: str, command: str, spec_path: str, rc: int, plan: Plan | None,
            url: str) -> None:
    """The commit status `recon/COMMAND: PATH` of this run (the `status` output): success for a plan that can
    be applied (changes pending included), failure for one that would be refused, error for a run that failed."""
    if not (token and sha):
        return
    if rc in (0, 2) and plan is not None:
        state, why = "success", f"{len(plan.pending)} to change" if plan.pending else "no changes"
    elif rc == 3:
        state, why = "failure", "refused by policy" + (f": {len(plan.denied)} change(s) denied" if plan else "")
    else:
        state, why = "error", f"recon {command} exited {rc}"
    try:
        outputs["status"] = GitHub(token).status(sha, f"recon/{command}: {spec_path}", state, why, url)
    except GitHubError as exc:
        outputs["status"] = _cannot("set the commit status", exc)


APPLY_ONLY = {"--confirm": 1, "--request-id": 1, "--lock-timeout": 1, "--auto-approve": 0}


def _plan_args(args: list[str]) -> list[str]:
    """An apply's extra arguments as the plan after it takes them: without the options only apply has."""
    out: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in APPLY_ONLY:
            skip = APPLY_ONLY[name] if "=" not in arg else 0
            continue
        out.append(arg)
    return out


def _cannot(what: str, exc: GitHubError) -> str:
    """A GitHub call that failed: a warning in the log (an annotation on the run), never the step's failure."""
    why = ("the token may not (a pull request from a fork gets a read-only token; give the job "
           "`pull-requests: write` and `issues: write`)" if exc.code in (401, 403) else str(exc))
    print(f"::warning title=recon action::could not {what}: {why}", file=sys.stderr)
    return f"failed ({exc.code or 'unreachable'})"


def _final(rc: int) -> int:
    if rc == 2 and _input("fail-on-changes", "false").lower() != "true":
        return 0
    return rc


def run() -> None:
    """The console script `recon-action` (not `python -m`, which would put the working directory, where
    the user's specs/ lives, before recon's own `specs` package)."""
    sys.exit(main())
