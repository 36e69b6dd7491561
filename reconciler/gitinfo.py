"""The git commit recon runs from: sha, branch, whether the tree was dirty. Read with the git command
(three small calls, no library import), and empty when not in a repository or git is missing."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any


def git_text(*args: str, cwd: Path | str | None = None, timeout: float = 10) -> str | None:
    """A git command's output, stripped; None when it failed (or git is missing)."""
    raw = git_bytes(*args, cwd=cwd, timeout=timeout)
    return raw.decode("utf-8", "replace").strip() if raw is not None else None


def git_bytes(*args: str, cwd: Path | str | None = None, timeout: float = 30) -> bytes | None:
    """A git command's output as it is (a file at a ref: `git show REF:path`); None when it failed."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def describe(cwd: Path | None = None) -> dict[str, Any]:
    """{sha, branch, dirty} of the repository around cwd, or {} outside one."""
    return dict(_describe(str(cwd or Path.cwd())))


@lru_cache(maxsize=8)
def _describe(where: str) -> tuple[tuple[str, Any], ...]:
    cwd = Path(where)
    sha = git_text("rev-parse", "HEAD", cwd=cwd)
    if sha is None:
        return ()
    branch = git_text("rev-parse", "--abbrev-ref", "HEAD", cwd=cwd) or ""
    status = git_text("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    return (("sha", sha), ("branch", "" if branch == "HEAD" else branch), ("dirty", bool(status)))


def require_commit(ref: str, cwd: Path | str | None, said: str, where: str = "", timeout: float = 10) -> None:
    """UsageError naming `said` (the option or variable that gave `ref`) when `ref` is no commit here."""
    from specs.errors import UsageError

    if git_text("rev-parse", "--verify", "--quiet", ref + "^{commit}", cwd=cwd, timeout=timeout) is None:
        raise UsageError(f"{said}: no such commit, branch or tag{where} (fetch it first, e.g. `git fetch origin "
                         f"{ref}`; CI checkouts are often shallow: fetch-depth: 0)")


def changed_files(since: str, cwd: Path | None = None) -> set[Path]:
    """Files changed since a commit: committed after it, staged, modified or untracked now. Absolute paths.
    UsageError when the ref is unknown or this is not a git repository."""
    from specs.errors import UsageError

    top = git_text("rev-parse", "--show-toplevel", cwd=cwd)
    if top is None:
        raise UsageError("--changed-since needs a git repository; this directory is not in one")
    require_commit(since, cwd, f"--changed-since {since}")
    # from where this branch left `since` (the merge base), as a pull request's diff is: when the base branch
    # moved on, its own changes are not this branch's (diffing against its tip would plan them as reverts)
    base = git_text("merge-base", since, "HEAD", cwd=Path(top)) or since
    names: set[str] = set()
    for args in (("diff", "--name-only", "-z", base), ("ls-files", "-z", "--others", "--exclude-standard")):
        out = git_text(*args, cwd=Path(top))
        names.update(n for n in (out or "").split("\0") if n)
    return {Path(top) / n for n in names}


def written(root: str | Path, ref: str, rels: list[str]) -> set[str]:
    """Which files at or below these paths (relative to the repository `root`; "." is all of it) differ from
    `ref` or are new and not ignored: what a change measured against `ref` wrote there."""
    changed = (git_text("diff", "--name-only", ref, "--", *rels, cwd=root, timeout=30) or "").splitlines()
    untracked = (git_text("ls-files", "--others", "--exclude-standard", "--", *rels, cwd=root,
                          timeout=30) or "").splitlines()
    under = [r.rstrip("/") + "/" for r in rels]
    return {n for n in (*changed, *untracked) if n in rels or "." in rels or n.startswith(tuple(under))}


def repository_places(path: str | Path) -> list[tuple[str, str]]:
    """Where `path` is in a git repository, as named and with links followed (each once, the named first): the
    repository's root and the path relative to it. A link a change adds may lead out of its repository, or in."""
    from specs.settings import repo_root

    out = []
    for candidate in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
        root = repo_root(Path(candidate) if os.path.isdir(candidate) else Path(candidate).parent)
        if root is not None:
            out.append((str(root), os.path.relpath(candidate, root)))
    return out
