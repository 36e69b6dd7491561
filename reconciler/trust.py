"""What a run trusts, said by whoever runs it (CI's environment), never by the work tree a change edits:

- `RECON_POLICY_REF`: the commit the change under review is measured against (a pull request's base, the commit
  before a push). The spec files that differ from it are what the change wrote (unreviewed: their guards are not
  run by the plan, their files show no old text), and recon.yaml's state settings are read there. The Policy is
  read there too, unless one is pinned.
- `RECON_POLICY`: a file or directory outside what a change can edit, holding the trusted Policy, and, in that
  directory (or the file's), the trusted recon.yaml if there is one. It governs instead of the ref's Policy; it
  does not say what a change wrote, so a pull request's run names its base as well (the Action does both). With
  a ref, one inside the repository that the change wrote is refused (a workflow that pins `.recon/policy` would
  let a pull request rewrite it).

Neither: a laptop, or a run of a branch nobody is changing (a nightly drift check): the work tree is trusted. A
pinned Policy without a ref in a run its CI system says is a change's (CHANGE_RUNS) is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from specs.errors import UsageError

# GitHub's events whose runs check out a change under review (GitHub sets GITHUB_EVENT_NAME; a workflow cannot)
REVIEWED_EVENTS = ("pull_request", "pull_request_target")


@dataclass(frozen=True)
class ChangeRun:
    """How a CI system says that its run checks out a change under review: its own variables, set by the system
    before the job's commands run (a change can edit the job's commands, but a run it did not start is not its)."""

    system: str
    says: Callable[[Mapping[str, str]], bool]
    base: str  # what RECON_POLICY_REF is set to there
    names: tuple[str, ...]  # the variables `says` reads (the test suite does not inherit them)


def _is(name: str, *values: str) -> Callable[[Mapping[str, str]], bool]:
    return lambda env: env.get(name, "") in values


def _set(name: str, but: str = "") -> Callable[[Mapping[str, str]], bool]:
    return lambda env: env.get(name, but) != but


def _both(*tests: Callable[[Mapping[str, str]], bool]) -> Callable[[Mapping[str, str]], bool]:
    return lambda env: all(t(env) for t in tests)


CHANGE_RUNS = (
    ChangeRun("GitHub Actions", _both(_is("GITHUB_ACTIONS", "true"), _is("GITHUB_EVENT_NAME", *REVIEWED_EVENTS)),
              "${{ github.event.pull_request.base.sha }}, as the recon Action does",
              ("GITHUB_ACTIONS", "GITHUB_EVENT_NAME")),
    ChangeRun("GitLab CI", _both(_is("GITLAB_CI", "true"), _is("CI_PIPELINE_SOURCE", "merge_request_event")),
              "$CI_MERGE_REQUEST_DIFF_BASE_SHA", ("GITLAB_CI", "CI_PIPELINE_SOURCE")),
    ChangeRun("Azure Pipelines", _both(_is("TF_BUILD", "True", "true"), _is("BUILD_REASON", "PullRequest")),
              "the commit of its target branch, $SYSTEM_PULLREQUEST_TARGETBRANCH", ("TF_BUILD", "BUILD_REASON")),
    ChangeRun("Bitbucket Pipelines", _both(_set("BITBUCKET_BUILD_NUMBER"), _set("BITBUCKET_PR_ID")),
              "the commit of $BITBUCKET_PR_DESTINATION_BRANCH", ("BITBUCKET_BUILD_NUMBER", "BITBUCKET_PR_ID")),
    ChangeRun("Jenkins", _both(_set("JENKINS_URL"), _set("CHANGE_ID")), "the commit of $CHANGE_TARGET",
              ("JENKINS_URL", "CHANGE_ID")),
    ChangeRun("Buildkite", _both(_is("BUILDKITE", "true"), _set("BUILDKITE_PULL_REQUEST", but="false")),
              "the commit of $BUILDKITE_PULL_REQUEST_BASE_BRANCH", ("BUILDKITE", "BUILDKITE_PULL_REQUEST")),
    ChangeRun("CircleCI", _both(_is("CIRCLECI", "true"), _set("CIRCLE_PULL_REQUEST")),
              "the commit of the pull request's base branch", ("CIRCLECI", "CIRCLE_PULL_REQUEST")),
    ChangeRun("Travis CI", _both(_is("TRAVIS", "true"), _set("TRAVIS_PULL_REQUEST", but="false")),
              "the commit of $TRAVIS_BRANCH", ("TRAVIS", "TRAVIS_PULL_REQUEST")),
    ChangeRun("Woodpecker", _both(_is("CI", "woodpecker"), _is("CI_PIPELINE_EVENT", "pull_request")),
              "the commit of $CI_COMMIT_TARGET_BRANCH", ("CI_PIPELINE_EVENT",)),
    ChangeRun("Drone", _both(_is("DRONE", "true"), _is("DRONE_BUILD_EVENT", "pull_request")),
              "the commit of $DRONE_TARGET_BRANCH", ("DRONE", "DRONE_BUILD_EVENT")),
    ChangeRun("Atlantis", _both(_set("ATLANTIS_TERRAFORM_VERSION"), _set("PULL_NUM")),
              "the commit of $BASE_BRANCH_NAME", ("ATLANTIS_TERRAFORM_VERSION", "PULL_NUM")),
)


@dataclass(frozen=True)
class Trust:
    ref: str  # RECON_POLICY_REF, "" without one
    pinned: str  # RECON_POLICY, "" without one

    def settings_file(self) -> Path | None:
        """recon.yaml beside the pinned Policy (in its directory, or in the directory of its file), if any."""
        if not self.pinned:
            return None
        where = Path(self.pinned)
        found = (where if where.is_dir() else where.parent) / "recon.yaml"
        return found if found.is_file() else None


def trust() -> Trust:
    """The run's trust, from the environment. UsageError for a pinned Policy without the base it is measured
    against in a run that its CI system says is a change's (a pull or merge request's, CHANGE_RUNS): the change's
    own files would count as reviewed."""
    got = Trust(os.environ.get("RECON_POLICY_REF", "").strip(), os.environ.get("RECON_POLICY", "").strip())
    if got.pinned and got.ref:
        wrote = _pinned_written(got, os.getcwd())
        if wrote:
            raise UsageError(f"RECON_POLICY={got.pinned} is inside the repository, and the change under review "
                             f"wrote {', '.join(wrote[:5])} there: a pinned Policy (and the recon.yaml beside it) "
                             "must be where a change cannot edit it; pin a directory outside the repository, or "
                             "leave RECON_POLICY unset to take the Policy from RECON_POLICY_REF")
    if not got.pinned or got.ref:
        return got
    run = next((r for r in CHANGE_RUNS if r.says(os.environ)), None)
    if run is None:
        return got
    said = ", ".join(f"{n}={os.environ[n]}" for n in run.names if n in os.environ)
    raise UsageError(f"RECON_POLICY={got.pinned} governs a change's run on {run.system} ({said}), but nothing says "
                     "what the change under review wrote, so its spec files and recon.yaml would be trusted as "
                     f"reviewed; set RECON_POLICY_REF to its base ({run.base})")


@lru_cache(maxsize=8)
def _pinned_written(t: Trust, cwd: str) -> list[str]:
    """The files of the pinned Policy (and of the recon.yaml beside it) that the change measured against the
    ref wrote, when they are inside a repository (as named or as links resolve); relative to that repository."""
    from reconciler.gitinfo import repository_places, written

    where = Path(cwd) / t.pinned
    beside = (where if where.is_dir() else where.parent) / "recon.yaml"
    out: list[str] = []
    for root, rel in (place for path in (where, beside) for place in repository_places(path)):
        out += sorted(written(root, t.ref, [rel]) - set(out))
    return out
