"""A stack: the repository and spec root whose specs made something. Containers and Kubernetes objects carry
it (labels), so a plan and `--prune` see only their own stack's orphans: two projects on one Docker engine or
cluster never plan or prune each other's Models.

The identity must be the same on every clone (a laptop, each CI runner) and differ between projects: the
repository's `origin` URL (read from .git/config, no git process), else the repository's path on this machine,
and the spec root's path inside it (the directory holding the spec files). Outside a repository: the spec
root's absolute path. `id` is a short digest of that (a Kubernetes label value); `name` is the readable form.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from specs.settings import repo_root


@dataclass(frozen=True)
class Stack:
    name: str  # e.g. github.com/acme/models:specs
    id: str  # 12 hex digits of sha256(name)

    @classmethod
    def of(cls, files: Sequence[str | Path]) -> Stack:
        """The stack of these spec files."""
        dirs = [os.path.dirname(os.path.abspath(f)) for f in files] or [os.getcwd()]
        root = Path(os.path.commonpath(dirs))
        repo = repo_root(root)
        if repo is None:
            name = str(root)
        else:
            inside = root.relative_to(repo).as_posix()
            name = f"{_origin(repo) or repo}:{'' if inside == '.' else inside}"
        return cls(name, hashlib.sha256(name.encode()).hexdigest()[:12])


_URL = re.compile(r'^\s*url\s*=\s*(\S+)\s*$')


def _origin(repo: Path) -> str:
    """The `origin` remote's URL, without credentials and the scheme ("" when there is none)."""
    config = repo / ".git" / "config"
    if not config.is_file():  # a worktree or submodule: .git is a file
        return ""
    section = ""
    for line in config.read_text(errors="replace").splitlines():
        head = re.match(r'^\s*\[\s*(\w+)(?:\s+"([^"]*)")?\s*\]', line)
        if head:
            section = f"{head[1]}.{head[2] or ''}"
            continue
        m = _URL.match(line)
        if m and section == "remote.origin":
            url = re.sub(r"^[a-z+]+://", "", m[1])  # https://, ssh://, file://
            url = re.sub(r"^[^@/]+@", "", url)  # user[:token]@
            return url.removesuffix(".git").replace(":", "/", 1) if "/" in url else url
    return ""
