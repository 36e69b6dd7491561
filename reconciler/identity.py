"""Who is running recon, and where: in journals, the audit log and lock records alike."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any


def whoami() -> dict[str, Any]:
    """The user, the machine and the process."""
    return {"user": _user(), "host": socket.gethostname(), "pid": os.getpid()}


def who() -> dict[str, Any]:
    """Who runs recon, where, and from which commit: for the start of every audited run."""
    from reconciler.gitinfo import describe

    ci = {k: os.environ[k] for k in ("GITHUB_RUN_ID", "GITHUB_REPOSITORY", "GITHUB_WORKFLOW", "GITHUB_ACTOR",
                                      "GITHUB_SHA", "GITHUB_REF", "CI_PIPELINE_ID", "CI_JOB_ID") if k in os.environ}
    return {**whoami(), "ci": ci, "git": describe()}


def ci_run() -> str:
    """The URL of the CI run recon runs in (GitHub Actions), or ""."""
    env = os.environ
    if not env.get("GITHUB_RUN_ID"):
        return ""
    return (f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/"
            f"{env['GITHUB_RUN_ID']}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
