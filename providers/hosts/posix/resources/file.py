"""file: a regular file with given content, mode and ownership."""

from __future__ import annotations

import base64
import posixpath
from typing import Any

from providers.contract import Action, FieldChange
from providers.hosts.model import HostResource, Payload, q
from providers.hosts.posix.resources.common import (
    absent,
    attr_changes,
    attr_script,
    backup_path,
    clean_path,
    move_aside,
    type_name,
    undo_path,
)
from providers.hosts.textdiff import shows_text
from providers.secrets import keyed
from providers.textdiff import DIFF_MAX, unified
from specs.hoststate import FileResource

SENSITIVE = "(sensitive)"


def describe(sha256: str | None, size: int | None, sensitive: bool) -> str | None:
    """A content as plans show it; a sensitive one by a keyed hash of its digest, never size or digest."""
    if sha256 is None:
        return None
    if sensitive:
        return f"{SENSITIVE} {keyed(sha256)}"
    return f"sha256:{sha256[:12]} ({size} bytes)"


def diff(desired: HostResource[FileResource], live: dict[str, Any] | None) -> tuple[Action, str, list[FieldChange]]:
    res = desired.res
    path = res.path
    kind = type_name(live)
    if res.state == "absent":
        return absent("file", path, live)
    assert desired.content is not None
    sensitive = res.secret
    want_sha = desired.content.sha256
    after = describe(want_sha, desired.content.size, sensitive)
    if kind == "missing":
        return "create", f"file {path} does not exist", [
            FieldChange("content", None, after), *attr_changes(desired, None)
        ]
    assert live is not None
    if kind != "file":
        return "replace", f"{path} is a {kind}, not a file", [
            FieldChange("type", kind, "file"), FieldChange("content", None, after), *attr_changes(desired, None)
        ]
    fields = []
    if live.get("sha256") != want_sha:
        fields.append(FieldChange("content", describe(live.get("sha256"), live.get("size"), sensitive), after))
        if isinstance(live.get("text"), str) and desired.content.data is not None and not sensitive:
            fields.append(FieldChange("diff", None, unified(live["text"], desired.content.data.decode(), path)))
    fields += attr_changes(desired, live)
    if not fields:
        return "noop", f"file {path} is up to date", []
    return "update", f"file {path} differs in {', '.join(f.path for f in fields)}", fields


def write_bytes(data: bytes, target: str) -> str:
    """Shell that writes `data` to `target` (quoted): text by the printf builtin (no process), else base64."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\0" not in text:
        return f"printf '%s' {q(text)} > {target}"
    payload = base64.encodebytes(data).decode()
    return f"base64 -d > {target} <<'RECON_EOF'\n{payload}RECON_EOF"


def script(desired: HostResource, action: Action, fields: list[FieldChange]) -> str:
    path = q(desired.path)
    if action == "delete":
        return move_aside(desired)
    names = {f.path for f in fields}
    lines = []
    if action == "replace":
        lines.append(move_aside(desired))
    elif action == "update" and "content" in names:
        lines.append(f"rm -rf -- {backup_path(desired)}; cp -a -- {path} {backup_path(desired)}")
    if action in ("create", "replace") or "content" in names:
        assert desired.content is not None
        tmp = q(desired.path + ".recon-tmp")
        parent = q(posixpath.dirname(desired.path) or "/")
        res = desired.res
        # the new content is written owner-only from its first byte (umask 077), then given its mode: a secret
        # never sits readable by others, even half-written by an apply that was killed (the next plan shows and
        # removes such a leftover); a temporary already there is removed, never written through
        if desired.content.data is not None:
            written = [f"[ -d {parent} ] || mkdir -p -- {parent}", f"rm -f -- {tmp}", "umask 077",
                       write_bytes(desired.content.data, tmp), "umask 022"]
        else:  # streamed before the script by the transport (streamed()), owner-only from its first byte too
            written = [f"[ -f {tmp} ] || {{ echo 'the streamed content is missing' >&2; false; }}"]
        lines += [
            *written,
            (f"if [ -e {path} ]; then chown --reference={path} -- {tmp} 2>/dev/null || true; fi; "
             f"chmod {res.mode} -- {tmp}") if getattr(res, "mode", None) else
            (f"if [ -e {path} ]; then chmod --reference={path} -- {tmp}; chown --reference={path} -- {tmp} "
             f"2>/dev/null || true; else chmod 644 -- {tmp}; fi"),
        ]
        attrs = [f for f in attr_changes(desired, None) if f.path != "mode"]  # the mode is set above
        lines += attr_script(desired, tmp, attrs)
        lines.append(f"mv -f -- {tmp} {path}")
    else:
        lines += attr_script(desired, path, fields)
    return "\n".join(lines)


def undo(desired: HostResource, action: Action, fields: list[FieldChange]) -> str:
    tmp = q(desired.path + ".recon-tmp")
    return f"rm -f -- {tmp}\n" + undo_path(desired, action, fields, f"rm -f -- {q(desired.path)}")


def clean(desired: HostResource, action: Action) -> str:
    return clean_path(desired)


def streamed(desired: HostResource, action: Action, fields: list[FieldChange]) -> tuple[Payload, str] | None:
    """The payload to stream to the host before the change script, and where (the temporary beside the file):
    content too large to travel inside the script."""
    names = {f.path for f in fields}
    content = desired.content
    if content is None or content.data is not None or action == "delete":
        return None
    if action in ("create", "replace") or "content" in names:
        return content, desired.path + ".recon-tmp"
    return None


def diffable(desired: HostResource, live: dict[str, Any] | None) -> bool:
    """Whether a plan shows this file's change as a diff: a text file on both sides, not sensitive, small,
    whose content changes."""
    res = desired.res
    content = desired.content
    if not isinstance(res, FileResource) or not shows_text(desired) or not live or content is None:
        return False
    return live.get("type") == "file" and live.get("sha256") not in (None, content.sha256) and \
        live.get("size", 0) <= DIFF_MAX

