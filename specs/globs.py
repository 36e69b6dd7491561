"""Globs over slash-separated names (file paths, addresses), as gitignore has them."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def pattern(glob: str) -> re.Pattern[str]:
    """A gitignore-like glob: `**` spans directories, `*` does not; a glob without '/' matches a name at any
    depth; a glob ending in '/' matches a directory and everything below it."""
    g = glob.strip()
    anchored = "/" in g.rstrip("/")
    if g.endswith("/"):
        g += "**"
    g = g.lstrip("/")
    out = []
    i = 0
    while i < len(g):
        if g.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif g.startswith("**", i):
            out.append(".*")
            i += 2
        elif g[i] == "*":
            out.append("[^/]*")
            i += 1
        elif g[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(g[i]))
            i += 1
    body = "".join(out)
    return re.compile(("^" if anchored else "^(?:.*/)?") + body + "$")


def glob_match(glob: str, name: str) -> bool:
    return pattern(glob).match(name) is not None
