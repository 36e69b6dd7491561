"""HostState resources on Windows hosts, for the host provider: facts, diff and changes in PowerShell.

Per host: one fact script for all its resources (one command in the host's one shell), one change
script for all its changes, each step reported as it finishes. The first failing step ends the
script; then, with rollback on, a second script undoes the failed step and those before it, newest
first: a replaced file comes back from the backup kept beside it (the services it was replaced
under are stopped and started again around that), a service returns to its status and startup type.
After a success the backups are removed. File content travels in chunks inside the change script
and is checked by sha256 on the host before it replaces anything (written beside, then renamed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from providers.context import Context
from providers.contract import Action, Change, FieldChange, Instance, Result
from providers.hosts.model import Desired
from providers.hosts.resources import command
from providers.hosts.results import rolled, tail  # the same reporting as on SSH hosts
from providers.hosts.transport import Transport
from providers.secrets import keyed
from providers.windows.powershell import call, encoded, script
from specs.errors import TransportError
from specs.hoststate import (
    CommandResource,
    DirectoryResource,
    FileResource,
    PackageResource,
    ProcessResource,
    ServiceResource,
)

STARTUP = {"automatic": "Automatic", "manual": "Manual", "disabled": "Disabled"}


def fact_script(items: Sequence[Desired]) -> str:
    calls = []
    for i, d in enumerate(items):
        res = d.res
        if isinstance(res, FileResource):
            calls.append(call("Recon-FileFact", i, res.path))
        elif isinstance(res, DirectoryResource):
            calls.append(call("Recon-DirFact", i, res.path))
        elif isinstance(res, ServiceResource):
            calls.append(call("Recon-ServiceFact", i, res.name))
        elif isinstance(res, ProcessResource):
            calls.append(call("Recon-ProcessFact", i, res.name))
        elif isinstance(res, PackageResource):
            calls.append(call("Recon-MsiFact", i, res.productCode or ""))
        elif isinstance(res, CommandResource):
            calls.append(call("Recon-GuardFact", i, res.creates or "", encoded(res.unless) if res.unless else ""))
    return script(calls)


def read(items: Sequence[Desired], transport: Transport, target: str) -> list[dict[str, Any]]:
    done = transport.run(fact_script(items))
    facts: dict[int, dict[str, Any]] = {}
    said: list[str] = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        obj = _json(line)
        if obj is not None and "i" in obj:
            facts[int(obj.pop("i"))] = obj
        elif line.strip():
            said.append(str(obj.get("error", line)) if obj is not None else line)
    if done.rc != 0 or len(facts) != len(items):
        why = tail(done.stderr) or " | ".join(said)[-400:]
        raise TransportError(f"{target}: reading facts failed (exit {done.rc}): {why}")
    for i, d in enumerate(items):
        if isinstance(d.res, ServiceResource) and not facts[i].get("exists"):
            raise TransportError(f"{target}: there is no service named {d.res.name!r}: install it first, or fix "
                                 "the name (the service name, not its display name)")
    return [facts[i] for i in range(len(items))]


def diff(d: Desired, live: dict[str, Any], changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
    res = d.res
    if isinstance(res, FileResource | DirectoryResource):
        return _diff_path(d, live)
    if isinstance(res, ServiceResource):
        fields = []
        status = live.get("status", "Stopped")
        if res.state is not None and (status == "Running") != (res.state == "running"):
            fields.append(FieldChange("state", status.lower(), res.state))
        want = STARTUP[res.startup] if res.startup else (
            None if res.enabled is None else ("Automatic" if res.enabled else "Disabled"))
        if want is not None and live.get("startup") != want:
            fields.append(FieldChange("startup", live.get("startup"), want))
        if fields:
            return "update", f"service {res.name} differs in {', '.join(f.path for f in fields)}", fields
        by = [k for k in d.notified_by if changed.get(k)]
        if by and res.state != "stopped" and (status == "Running" or res.state == "running"):
            return "restart", f"notified by {', '.join(by)}", [FieldChange("restart", None, res.name)]
        return "noop", f"service {res.name} is {status.lower()} ({live.get('startup')})", []
    if isinstance(res, PackageResource):
        installed = bool(live.get("installed"))
        if res.state == "present" and not installed:
            return "create", f"{res.name} ({res.productCode}) is not installed", [
                FieldChange("installed", False, True)]
        if res.state == "absent" and installed:
            return "delete", f"{res.name} {live.get('version', '')} is installed".replace("  ", " "), [
                FieldChange("installed", True, False)]
        return "noop", f"{res.name} is {'installed' if installed else 'not installed'}", []
    if isinstance(res, ProcessResource):
        count = int(live.get("count", 0))
        if count:
            return "update", f"{count} {res.name} processes run", [FieldChange("processes", count, 0)]
        return "noop", f"no {res.name} process runs", []
    assert isinstance(res, CommandResource)
    return command.diff(d, live, changed)


def _diff_path(d: Desired, live: dict[str, Any]) -> tuple[Action, str, list[FieldChange]]:
    res = d.res
    assert isinstance(res, FileResource | DirectoryResource)
    is_file = isinstance(res, FileResource)
    kind = "file" if is_file else "directory"
    exists = bool(live.get("exists"))
    if exists and bool(live.get("dir")) == is_file:
        return "replace", f"{res.path} is a {'directory' if is_file else 'file'}, not a {kind}", [
            FieldChange("type", "directory" if is_file else "file", kind)]
    if res.state == "absent":
        return ("delete", f"{res.path} exists", [FieldChange("state", "present", "absent")]) if exists else (
            "noop", f"{res.path} is absent", [])
    if not exists:
        fields = [FieldChange("state", "absent", "present")]
        if is_file:
            fields.append(FieldChange("sha256", None, _shown(d, _sha(d))))
        return "create", f"{res.path} does not exist", fields
    if is_file and live.get("sha256") != _sha(d):
        stopped = getattr(res, "whileStopped", [])
        how = f"; replaced while {', '.join(stopped)} {'is' if len(stopped) == 1 else 'are'} stopped" if stopped else ""
        return "update", f"{res.path} content differs{how}", [
            FieldChange("sha256", _shown(d, live.get("sha256")), _shown(d, _sha(d))),
            FieldChange("size", None if getattr(res, "secret", False) else live.get("size"),
                        None if getattr(res, "secret", False) else len(d.content or b""))]
    return "noop", f"{res.path} is as wanted", []


def _sha(d: Desired) -> str:
    return hashlib.sha256(d.content or b"").hexdigest()


def _shown(d: Desired, sha: str | None) -> str | None:
    return keyed(sha) if sha and getattr(d.res, "secret", False) else sha


def step_calls(i: int, d: Desired, change: Change, chunk: int) -> list[str]:
    res = d.res
    fields = {f.path: f for f in change.fields}
    if list(fields) == ["backup"]:
        return [call("Recon-Clean", getattr(res, "path", "")), call("Recon-Ok", i)]
    if isinstance(res, FileResource):
        if change.action == "delete":
            return [call("Recon-Remove", i, res.path)]
        data = d.content or b""
        out = [call("Recon-Begin", res.path)]
        out += [call("Recon-Chunk", res.path, base64.b64encode(data[n:n + chunk]).decode())
                for n in range(0, len(data), chunk)]
        return [*out, call("Recon-PutFile", i, res.path, _sha(d), "/".join(res.whileStopped), res.verifySeconds, 120)]
    if isinstance(res, DirectoryResource):
        return [call("Recon-Remove", i, res.path) if change.action == "delete" else call("Recon-Dir", i, res.path)]
    if isinstance(res, ServiceResource):
        want = "Restart" if change.action == "restart" else (
            "" if "state" not in fields else ("Running" if res.state == "running" else "Stopped"))
        startup = str(fields["startup"].after) if "startup" in fields else ""
        return [call("Recon-Service", i, res.name, want, startup, res.timeout)]
    if isinstance(res, ProcessResource):
        return [call("Recon-StopProcess", i, res.name, res.timeout)]
    if isinstance(res, PackageResource):
        if change.action == "delete":
            return [call("Recon-Msi", i, "remove", "", res.productCode)]
        data = d.content or b""
        staged = f"C:\\ProgramData\\recon\\msi\\{_sha(d)}.msi"
        return [call("Recon-Begin", staged),
                *[call("Recon-Chunk", staged, base64.b64encode(data[n:n + chunk]).decode())
                  for n in range(0, len(data), chunk)],
                call("Recon-Stage", i, staged, _sha(d)), call("Recon-Msi", i, "install", staged, res.productCode)]
    assert isinstance(res, CommandResource)
    return [call("Recon-Run", i, encoded(res.run))]


def undo_calls(i: int, d: Desired, change: Change) -> list[str]:
    """The calls that undo step i, or [] when it cannot be undone (commands, processes stopped)."""
    res = d.res
    fields = {f.path: f for f in change.fields}
    if list(fields) == ["backup"] or not d.rollback:
        return []
    if isinstance(res, FileResource):
        return [call("Recon-UndoFile", i, res.path, "/".join(res.whileStopped), 120)]
    if isinstance(res, DirectoryResource) and change.action == "create":
        return [call("Recon-Remove", i, res.path)]
    if isinstance(res, PackageResource) and change.action == "create":
        return [call("Recon-Msi", i, "remove", "", res.productCode)]
    if isinstance(res, ServiceResource):
        was = str(fields["state"].before) if "state" in fields else ""
        want = "Restart" if change.action == "restart" else ("Running" if was == "running" else
                                                            "Stopped" if was else "")
        startup = str(fields["startup"].before or "") if "startup" in fields else ""
        return [call("Recon-Service", i, res.name, want, startup, res.timeout)]
    return []


def apply(steps: Sequence[tuple[Instance, Change]], transport: Transport, ctx: Context,
          target: str) -> Iterator[Result]:
    host = steps[0][0].desired.host
    chunk = (host.winrm.chunkKiB if host.winrm else 256) * 1024
    calls: list[str] = []
    for i, (inst, change) in enumerate(steps):
        calls += step_calls(i, inst.desired, change, chunk)
    calls += [call("Recon-Clean", inst.desired.res.path) for inst, _ in steps
              if isinstance(inst.desired.res, FileResource)]
    last = time.monotonic()
    reported: dict[int, Result] = {}

    def on_line(line: bytes) -> None:
        nonlocal last
        obj = _json(line.decode("utf-8", "replace"))
        if obj is None or "s" not in obj:
            return
        i = int(obj["s"])
        now = time.monotonic()
        change = steps[i][1]
        reported[i] = Result(change.id, bool(obj["ok"]), "" if obj["ok"] else str(obj.get("error", ""))[-600:],
                             now - last)
        last = now
        ctx.reporter.event("done" if obj["ok"] else "failed", target, change.id)

    lost = ""
    try:
        done = transport.run(script(calls), on_line)
        ended = f"not run: the change script ended early (exit {done.rc}): {tail(done.stderr)}"
    except TransportError as exc:
        lost, ended = str(exc), ""
    failed = next((i for i, r in reported.items() if not r.ok), None)
    undone: dict[int, str] = {}
    if failed is not None:
        undone = _undo_steps(steps, failed, transport)
    for i, (_, change) in enumerate(steps):
        result = reported.get(i)
        if result is not None:
            yield rolled(result, i, failed, undone, steps)
        elif failed is not None:
            yield Result(change.id, False, "skipped: an earlier step on this host failed")
        else:
            yield Result(change.id, False, lost if lost and i == len(reported) else (
                f"not run: {lost}" if lost else ended))


def _undo_steps(steps: Sequence[tuple[Instance, Change]], last: int, transport: Transport) -> dict[int, str]:
    """Undo steps last..0, newest first, in one script: step -> "" when undone, else why not. Steps that cannot
    be undone are not in it; when the host cannot be reached, every step is, with why."""
    calls = [c for i in range(last, -1, -1) for c in undo_calls(i, steps[i][0].desired, steps[i][1])]
    if not calls:
        return {}
    try:
        done = transport.run(script(calls))
    except TransportError as exc:
        return {i: f"not undone: {exc}" for i in range(last + 1)}
    found = (_json(line) for line in done.stdout.decode("utf-8", "replace").splitlines())
    return {int(o["s"]): "" if o["ok"] else str(o.get("error", "")) for o in found if o is not None and "s" in o}


def undo(steps: Sequence[tuple[Instance, Change]], transport: Transport) -> Iterator[Result]:
    """`recon rollback` after an interrupted apply: the finished steps undone, newest first."""
    got = _undo_steps(steps, len(steps) - 1, transport)
    for i, (_, change) in enumerate(steps):
        why = got.get(i, "not undone: it cannot be undone (a command, or processes stopped)")
        yield Result(change.id, why == "", why)


def _json(line: str) -> dict[str, Any] | None:
    """One line of the prelude's output as an object, or None for anything else the host printed."""
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
