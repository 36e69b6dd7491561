"""Facts: the live state of every resource of one host, gathered by one script in one round trip.

The script is generated from the resources (every value quoted), runs `stat` once and
`sha256sum` once over all paths (fed NUL-separated through xargs, so no argument limit
and no per-file process), and evaluates command guards. Output is NUL-separated records:

    S <path> <type> <mode> <owner> <group> <size>     from stat (of each path, and of <path>.recon-bak)
    H <hash>  <path>                                  from sha256sum -z
    C <index> creates|unless <value>                  from command guards
    C <index> service <manager> <running> <enabled>   from services
    C <index> package <manager> <version or ->        from packages
    C <index> user <passwd line or -> <groups or ->   from users
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from providers.hosts.model import HostResource, host_path, q
from providers.hosts.posix.resources import package, service, user
from providers.hosts.posix.resources.command import env_prefix
from specs.hoststate import (
    CommandResource,
    DirectoryResource,
    FileResource,
    PackageResource,
    ServiceResource,
    UserResource,
)

_SECTION = "@@recon-facts@@"
BAK = ".recon-bak"  # the suffix of backups kept beside a changed path (resources/common.py)
TMP = ".recon-tmp"  # the suffix of a file's new content while it is written (resources/file.py)
_TYPES = {"regular file": "file", "regular empty file": "file", "directory": "directory",
          "symbolic link": "symlink"}


def script(items: Sequence[HostResource], ending: bool = True) -> str:
    """The fact script of these items; `ending`: it ends the shell (exit 0), else more may follow."""
    # each path, and the backup (or a file's half-written new content) an interrupted apply may have left beside it
    paths = [p for d in items if isinstance(d.res, FileResource | DirectoryResource) for p in (d.path, d.path + BAK)]
    paths += [d.path + TMP for d in items if isinstance(d.res, FileResource)]
    files = [d.path for d in items if isinstance(d.res, FileResource)]
    lines = ["LC_ALL=C; export LC_ALL", f"printf '%s\\0' {_SECTION}stat"]
    if paths:
        lines.append(_feed(paths) + " | xargs -0r stat --printf '%n\\0%F\\0%a\\0%U\\0%G\\0%s\\0' -- 2>/dev/null")
    lines.append(f"printf '%s\\0' {_SECTION}hash")
    if files:
        lines.append(_feed(files) + " | xargs -0r sha256sum -z -- 2>/dev/null")
    lines.append(f"printf '%s\\0' {_SECTION}cmd")
    for i, d in enumerate(items):
        res = d.res
        if isinstance(res, ServiceResource):
            lines.append(service.facts(res.name, i))
            continue
        if isinstance(res, PackageResource):
            lines.append(package.facts(res.name, i))
            continue
        if isinstance(res, UserResource):
            lines.append(user.facts(res.name, i))
            continue
        if not isinstance(res, CommandResource):
            continue
        if res.creates is not None:
            created = q(host_path(d.host, res.creates))
            lines.append(f"if [ -e {created} ]; then printf '%s\\0' {i} creates 1; fi")
        if res.unless is not None and d.reviewed:  # an unreviewed guard runs at apply, in the step (command.py)
            lines.append(f"({env_prefix(d)}sh -c {q(res.unless)}) </dev/null >/dev/null 2>&1; "
                         f"printf '%s\\0' {i} unless $?")
    if ending:
        lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _feed(paths: Sequence[str]) -> str:
    return "printf '%s\\0' " + " ".join(q(p) for p in paths)


def parse(items: Sequence[HostResource], out: bytes) -> list[dict[str, Any] | None]:
    """The live state of each item, in order: None when a path does not exist."""
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    sections: dict[str, list[str]] = {}
    current = None
    for f in fields:
        if f.startswith(_SECTION):
            current = f[len(_SECTION):]
            sections[current] = []
        elif current is not None:
            sections[current].append(f)
    if set(sections) != {"stat", "hash", "cmd"}:
        raise ValueError("the fact script's output is incomplete")
    stats: dict[str, dict[str, Any]] = {}
    s = sections["stat"]
    for i in range(0, len(s) - 5, 6):
        path, ftype, mode, owner, group, size = s[i:i + 6]
        stats[path] = {"type": _TYPES.get(ftype, ftype), "mode": mode.rjust(4, "0"), "owner": owner,
                       "group": group, "size": int(size)}
    for rec in sections["hash"]:
        if rec:
            digest, _, path = rec.partition("  ")
            if path in stats:
                stats[path]["sha256"] = digest
    guards: dict[int, Any] = {}  # index -> command guards, or the live state of a service, package or user
    c = sections["cmd"]
    k = 0
    while k + 2 < len(c):
        index, kind = int(c[k]), c[k + 1]
        if kind == "service":
            manager, running, enabled = c[k + 2:k + 5]
            guards[index] = {"manager": manager, "running": running == "1", "enabled": enabled == "1"}
            k += 5
        elif kind == "user":
            guards[index] = user.parse(c[k + 2], c[k + 3])
            k += 4
        elif kind == "package":
            manager, version = c[k + 2:k + 4]
            guards[index] = {"manager": manager, "version": None if version == "-" else version}
            k += 4
        else:
            guards.setdefault(index, {})[kind] = int(c[k + 2])
            k += 3
    live: list[dict[str, Any] | None] = []
    for i, d in enumerate(items):
        if isinstance(d.res, ServiceResource | PackageResource | UserResource):
            live.append(guards.get(i))
        elif isinstance(d.res, CommandResource):
            g = guards.get(i, {})
            live.append({"creates": bool(g.get("creates"))} | ({"unless": g["unless"]} if "unless" in g else {}))
        else:
            st = stats.get(d.path)
            if st is not None and st["type"] != "file":
                st = {k: v for k, v in st.items() if k != "size"}
            if d.path + BAK in stats:
                st = {**(st or {"type": "missing"}), "backup": True}
            if d.path + TMP in stats:
                st = {**(st or {"type": "missing"}), "stray": True}
            live.append(st)
    return live


def texts(transport: Any, paths: Sequence[str]) -> list[str | None]:
    """The text of each file (None: gone, or not UTF-8), in one script: what a plan shows a diff against."""
    import base64

    lines = ["LC_ALL=C; export LC_ALL"]
    lines += [f"if [ -f {q(p)} ]; then base64 -w0 -- {q(p)}; fi; printf '\\0'" for p in paths]
    done = transport.run("\n".join(lines) + "\n")
    parts = done.stdout.split(b"\0")
    out: list[str | None] = []
    for k in range(len(paths)):
        raw = parts[k] if k < len(parts) else b""
        from providers.textdiff import is_text

        try:
            data = base64.b64decode(raw) if raw else b""
        except ValueError:
            data = b""
        out.append(data.decode("utf-8") if data and is_text(data) else None)
    return out
