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
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from providers.context import Context, StepDone
from providers.contract import Action, Change, FieldChange, Instance, Result
from providers.hosts.model import Facts, HostInfo, HostResource
from providers.hosts.results import rolled, tail  # the same reporting as on POSIX hosts
from providers.hosts.transport import Transport
from providers.hosts.windows.powershell import call, script, streamed_script
from providers.hosts.windows.resources import MODULES
from providers.hosts.windows.resources import file as filemod
from providers.textdiff import is_text
from specs.errors import TransportError
from specs.hoststate import WINDOWS_PATH, AnyResource, PackageResource, ServiceResource


class Windows:
    name = "windows"

    def unfit(self, res: AnyResource, host: HostInfo) -> str:
        path = getattr(res, "path", "")
        if res.type not in MODULES:
            return f"a {res.type} resource is not available on Windows hosts ({host.name} is reached by winrm)"
        if path and not WINDOWS_PATH.match(path):
            return f"{path} is not a Windows path ({host.name} is reached by winrm)"
        if isinstance(res, PackageResource) and (
                res.productCode is None or (res.state == "present" and res.source is None) or res.version):
            return (f"package {res.name}: on Windows a package is an MSI: give its productCode, and the .msi as "
                    "source to install it (no version: the MSI says which)")
        return ""

    def read(self, items: Sequence[HostResource], transport: Transport, target: str,
             diffs: bool = True) -> list[Facts]:
        calls = [filemod.fact(i, d, diffs) if d.res.type == "file" else MODULES[d.res.type].fact(i, d)
                 for i, d in enumerate(items)]
        done = transport.run(script(calls))
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
        for i in range(len(items)):
            if "text" in facts[i]:  # the old text of a file whose content differs, for the plan's diff
                data = base64.b64decode(facts[i].pop("text"))
                if is_text(data):
                    facts[i]["text"] = data.decode("utf-8")
        return [facts[i] for i in range(len(items))]

    def diff(self, d: HostResource, live: Facts, changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
        return MODULES[d.res.type].diff(d, live or {}, changed)

    def apply(self, steps: Sequence[tuple[Instance[HostResource], Change]], transport: Transport, ctx: Context,
              target: str) -> Iterator[Result]:
        host = steps[0][0].desired.host
        chunk = (host.winrm.chunkKiB if host.winrm else 256) * 1024
        calls = itertools.chain(  # made as they are sent: a large file's chunks are read one at a time
            (c for i, (inst, change) in enumerate(steps) for c in _step_calls(i, inst.desired, change, chunk)),
            (c for inst, _ in steps for c in MODULES[inst.resource].clean(inst.desired)))
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
            ctx.reporter.report(StepDone(target, change.id, bool(obj["ok"])))

        lost = ""
        try:
            done = transport.run(streamed_script(calls), on_line)
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

    def undo(self, steps: Sequence[tuple[Instance[HostResource], Change]], transport: Transport) -> Iterator[Result]:
        """`recon rollback` after an interrupted apply: the finished steps undone, newest first."""
        got = _undo_steps(steps, len(steps) - 1, transport)
        for i, (_, change) in enumerate(steps):
            why = got.get(i, "not undone: it cannot be undone (a command, or processes stopped)")
            yield Result(change.id, why == "", why)

    def logs(self, d: HostResource, transport: Transport, lines: int, since: int | None, follow: bool,
             on_line: Callable[[str], None]) -> None:
        """The service's events (its own, and the Service Control Manager's about it), oldest first."""
        if follow:
            raise TransportError("--follow is not available for Windows services (the event log is read once over "
                                 "WinRM); read it again with --since")
        done = transport.run(script([call("Recon-ServiceLog", d.res.name, lines, since or 0)]))
        found = [_json(line) for line in done.stdout.decode("utf-8", "replace").splitlines()]
        if done.rc != 0:
            said = next((str(o["error"]) for o in found if o is not None and "error" in o), "")
            raise TransportError(said or tail(done.stderr) or f"reading the events of {d.res.name} failed")
        for obj in found:
            if obj is not None and "m" in obj:
                for i, text in enumerate(str(obj["m"]).splitlines() or [""]):
                    on_line(f"{obj.get('t', '')} {text}" if i == 0 else f"    {text}")


WINDOWS = Windows()


def _step_calls(i: int, d: HostResource, change: Change, chunk: int) -> Iterable[str]:
    if [f.path for f in change.fields] == ["backup"]:  # only a leftover backup to remove
        return [call("Recon-Clean", getattr(d.res, "path", "")), call("Recon-Ok", i)]
    return MODULES[d.res.type].steps(i, d, change, chunk)


def _undo_calls(i: int, d: HostResource, change: Change) -> list[str]:
    """The calls that undo step i, or [] when it cannot be undone (commands, processes stopped)."""
    if [f.path for f in change.fields] == ["backup"] or not d.rollback:
        return []
    return MODULES[d.res.type].undo(i, d, change)


def _undo_steps(steps: Sequence[tuple[Instance[HostResource], Change]], last: int,
                transport: Transport) -> dict[int, str]:
    """Undo steps last..0, newest first, in one script: step -> "" when undone, else why not. Steps that cannot
    be undone are not in it; when the host cannot be reached, every step is, with why."""
    calls = [c for i in range(last, -1, -1) for c in _undo_calls(i, steps[i][0].desired, steps[i][1])]
    if not calls:
        return {}
    try:
        done = transport.run(script(calls))
    except TransportError as exc:
        return {i: f"not undone: {exc}" for i in range(last + 1)}
    found = (_json(line) for line in done.stdout.decode("utf-8", "replace").splitlines())
    return {int(o["s"]): "" if o["ok"] else str(o.get("error", "")) for o in found if o is not None and "s" in o}


def _json(line: str) -> dict[str, Any] | None:
    """One line of the prelude's output as an object, or None for anything else the host printed."""
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
