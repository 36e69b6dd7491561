"""What a run trusts, said by whoever runs it (CI's environment), never by the work tree a change edits:

- `RECON_POLICY_REF`: the commit the change under review is measured against (a pull request's base, the commit
  before a push). The spec files that differ from it are what the change wrote (unreviewed: their guards are not
  run by the plan, their files show no old text), and recon.yaml's state settings are read there. The Policy is
  read there too, unless one is pinned.
- `RECON_POLICY`: a file or directory outside what a change can edit, holding the trusted Policy, and, in that
  directory (or the file's), the trusted recon.yaml if there is one. It governs instead of the ref's Policy; it
  does not say what a change wrote, so a pull request's run names its base as well (the Action does both).

Neither: a laptop, or a run of a branch nobody is changing (a nightly drift check): the work tree is trusted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from specs.errors import UsageError

# GitHub's events whose runs check out a change under review (GitHub sets GITHUB_EVENT_NAME; a workflow cannot)
REVIEWED_EVENTS = ("pull_request", "pull_request_target")


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
    """The run's trust, from the environment. UsageError for a pinned Policy in a pull request's run on GitHub (or
    a merge request pipeline on GitLab) without the base it is measured against: the change's own files would
    count as reviewed."""
    got = Trust(os.environ.get("RECON_POLICY_REF", "").strip(), os.environ.get("RECON_POLICY", "").strip())
    if not got.pinned or got.ref:
        return got
    if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_EVENT_NAME") in REVIEWED_EVENTS:
        run = f"a {os.environ['GITHUB_EVENT_NAME']} run"
        base = "${{ github.event.pull_request.base.sha }}, as the recon Action does"
    elif os.environ.get("GITLAB_CI") == "true" and os.environ.get("CI_PIPELINE_SOURCE") == "merge_request_event":
        run, base = "a merge request pipeline", "$CI_MERGE_REQUEST_DIFF_BASE_SHA"
    else:
        return got
    raise UsageError(f"RECON_POLICY={got.pinned} governs {run}, but nothing says what the change under review "
                     "wrote, so its spec files and recon.yaml would be trusted as reviewed; set RECON_POLICY_REF "
                     f"to its base ({base})")
