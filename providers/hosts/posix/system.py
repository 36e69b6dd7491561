"""POSIX hosts (local, or reached by SSH): facts and changes as sh scripts, one round trip each.

Per host: one fact script for all its resources (`facts.py`); one change script for all its changes,
each step a shell function, reported as it finishes with a line `MARK index rc base64(output tail)` (the
mark is random per run); the first failure stops the script, then the finished steps are undone, newest
first. Each resource type is a module of `resources/` (pure `diff`, `script`, `undo`, `clean`).
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from providers.context import Context, StepDone
from providers.contract import Action, Change, FieldChange, Instance, Result
from providers.hosts.model import Facts, HostInfo, HostResource
from providers.hosts.posix import facts
from providers.hosts.posix.resources import MODULES, command, service
from providers.hosts.posix.resources import file as filemod
from providers.hosts.posix.resources.common import clean_path
from providers.hosts.results import rolled, tail
from providers.hosts.transport import Transport
from specs.errors import TransportError
from specs.hoststate import (
    WINDOWS_PATH,
    AnyResource,
    CommandResource,
    PackageResource,
    ProcessResource,
    ServiceResource,
)

_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]*$")


class Posix:
    name = "posix"

    def unfit(self, res: AnyResource, host: HostInfo) -> str:
        path = getattr(res, "path", "")
        if isinstance(res, PackageResource) and (res.productCode or res.source):
            return f"package {res.name}: productCode and source are for MSI packages on Windows hosts"
        if (WINDOWS_PATH.match(path) or isinstance(res, ProcessResource) or getattr(res, "whileStopped", None)
                or getattr(res, "startup", None)):
            return (f"{res.type} {res.key()} is written for Windows hosts, and {host.name} is reached by "
                    f"{host.connection}")
        if isinstance(res, ServiceResource) and not _SERVICE_NAME.match(res.name):
            return f"service name {res.name!r} is not a Linux service name (letters, digits, @ . _ -)"
        return ""

    def read(self, items: Sequence[HostResource], transport: Transport, target: str,
             diffs: bool = True) -> list[Facts]:
        done = transport.run(facts.script(list(items)))
        if done.rc != 0:
            raise TransportError(f"{target}: reading facts failed: {tail(done.stderr)}")
        try:
            found = list(facts.parse(list(items), done.stdout))
        except ValueError as exc:
            raise TransportError(f"{target}: {exc}: {tail(done.stderr)}") from None
        shown = [i for i, (d, live) in enumerate(zip(items, found, strict=True)) if diffs and filemod.diffable(d, live)]
        if shown:  # the old text of files whose content changes, for the plan's diff: one more round trip, only then
            texts = facts.texts(transport, [items[i].path for i in shown])
            for i, text in zip(shown, texts, strict=True):
                if text is not None and found[i] is not None:
                    found[i] = {**found[i], "text": text}  # type: ignore[dict-item]
        return found

    def diff(self, d: HostResource, live: Facts, changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
        if isinstance(d.res, CommandResource):
            return command.diff(d, live, changed)
        if isinstance(d.res, ServiceResource):
            return service.diff(d, live, changed)
        return MODULES[d.res.type].diff(d, live)

    def apply(self, steps: Sequence[tuple[Instance[HostResource], Change]], transport: Transport, ctx: Context,
              target: str) -> Iterator[Result]:
        mark = "@@recon-" + secrets.token_hex(8)
        started = time.monotonic()
        reported: dict[int, Result] = {}
        undone: dict[int, str] = {}  # step -> "" when undone, else why not
        last = [started]

        def on_line(line: bytes) -> None:
            parts = line.decode("utf-8", "replace").split()
            if len(parts) < 3 or parts[0] != mark:
                return
            if parts[1] == "undo":
                j, urc = int(parts[2]), int(parts[3])
                undone[j] = "" if urc == 0 else tail(base64.b64decode(parts[4]) if len(parts) > 4 else b"")
                return
            i, rc = int(parts[1]), int(parts[2])
            detail = base64.b64decode(parts[3]).decode("utf-8", "replace") if len(parts) > 3 else ""
            now = time.monotonic()
            change = steps[i][1]
            ok = rc == 0
            msg = "" if ok else f"exit {rc}: {tail(detail.encode())}"
            reported[i] = Result(change.id, ok, msg, now - last[0])
            last[0] = now
            ctx.reporter.report(StepDone(target, change.id, ok))

        lost = ""
        ended = ""
        try:
            for inst, change in steps:  # large contents first, each to the temporary its step renames into place
                sent = filemod.streamed(inst.desired, change.action, list(change.fields)) \
                    if inst.resource == "file" else None
                if sent is not None:
                    transport.put(sent[0], sent[1])
            done = transport.run(_change_script(steps, mark), on_line)
            ended = f"not run: the change script ended early: {tail(done.stderr)}"
            after = _after(steps, mark, done.stdout)
        except TransportError as exc:  # the steps that reported before the host went away did happen
            lost = str(exc)
            after = None
        failed = next((i for i, r in reported.items() if not r.ok), None)
        for i, (_, change) in enumerate(steps):
            if i in reported:
                result = rolled(reported[i], i, failed, undone, steps)
                yield dataclasses.replace(result, after=(after[i],)) if after is not None and result.ok else result
            elif failed is not None:
                yield Result(change.id, False, "skipped: an earlier step on this host failed")
            elif lost:
                first = i == len(reported)
                yield Result(change.id, False, lost if first else f"not run: {lost}")
                if first:
                    ctx.reporter.report(StepDone(target, change.id, False))
            else:
                yield Result(change.id, False, ended)

    def undo(self, steps: Sequence[tuple[Instance[HostResource], Change]], transport: Transport) -> Iterator[Result]:
        undoable = [(i, c) for i, c in steps if i.resource != "command"]
        for inst, change in steps:
            if inst.resource == "command":
                yield Result(change.id, False, "not undone: commands cannot be undone")
        if not undoable:
            return
        mark = "@@recon-" + secrets.token_hex(8)
        got: dict[int, Result] = {}

        def on_line(line: bytes) -> None:
            parts = line.decode("utf-8", "replace").split()
            if len(parts) >= 3 and parts[0] == mark:
                i, rc = int(parts[1]), int(parts[2])
                why = "" if rc == 0 else "undo failed, exit {}: {}".format(
                    rc, tail(base64.b64decode(parts[3]) if len(parts) > 3 else b""))
                got[i] = Result(undoable[i][1].id, rc == 0, why)

        try:
            transport.run(_undo_script(undoable, mark), on_line)
        except TransportError as exc:
            yield from (got.get(i) or Result(c.id, False, f"not undone: {exc}") for i, (_, c) in enumerate(undoable))
            return
        yield from (got.get(i) or Result(c.id, False, "not undone: the undo script ended early")
                    for i, (_, c) in enumerate(undoable))

    def logs(self, d: HostResource, transport: Transport, lines: int, since: int | None, follow: bool,
             on_line: Callable[[str], None]) -> None:
        done = transport.run(service.logs(d.res.name, lines, since, follow),
                             lambda line: on_line(line.decode("utf-8", "replace").rstrip("\n")))
        if done.rc != 0:
            raise TransportError(tail(done.stderr) or f"reading the log of {d.res.name} exited {done.rc}")


POSIX = Posix()


def _undo_script(steps: Sequence[tuple[Instance[HostResource], Change]], mark: str) -> str:
    """Undo finished steps newest first, each reported as `MARK i rc [base64 output]`, its backup removed after."""
    lines = ["LC_ALL=C; export LC_ALL"]
    for i, (inst, change) in reversed(list(enumerate(steps))):
        module = MODULES[inst.resource]
        lines += [f"undo_{i}() {{", module.undo(inst.desired, change.action, list(change.fields)), "}",
                  f"out=$(undo_{i} 2>&1); rc=$?",
                  f"if [ \"$rc\" -eq 0 ]; then printf '%s %s 0\\n' {mark} {i}; "
                  f"{module.clean(inst.desired, change.action)} >/dev/null 2>&1; else",
                  f"  printf '%s %s %s ' {mark} {i} \"$rc\"; printf '%s' \"$out\" | tail -c 500 | base64 -w0; echo",
                  "fi"]
    return "\n".join(lines) + "\n"


def _change_script(steps: Sequence[tuple[Instance[HostResource], Change]], mark: str) -> str:
    """One script for all changes of a host: each step a function, reported as `MARK i 0` when it
    succeeds, `MARK i rc base64(output tail)` when it fails (only then are processes spent on it).

    The first failing step stops the script, so later steps never act on a half-changed host.
    Then the failed step and those before it are undone, newest first (`MARK undo i rc`); after
    a success, the backups the steps kept are removed.
    """
    lines = ["LC_ALL=C; export LC_ALL", "umask 022", "done_steps=''"]
    for i, (inst, change) in enumerate(steps):
        module = MODULES[inst.resource]
        fields = list(change.fields)
        if [f.path for f in fields] == ["backup"]:  # only a leftover backup to remove
            lines += [f"step_{i}() {{", clean_path(inst.desired), "}", f"undo_{i}() {{", ":", "}",
                      f"clean_{i}() {{", ":", "}"]
            continue
        body = module.script(inst.desired, change.action, fields)
        undo = module.undo(inst.desired, change.action, fields) if _undoable(inst) else ":"
        lines += [f"step_{i}() {{", "set -e", body, "}", f"undo_{i}() {{", undo, "}",
                  f"clean_{i}() {{", module.clean(inst.desired, change.action), "}"]
    lines += [
        "rollback() {",
        '  for j in "$@"; do',
        '    out=$("undo_$j" 2>&1); rc=$?',
        f"    if [ \"$rc\" -eq 0 ]; then printf '%s undo %s 0\\n' {mark} \"$j\"; else",
        f"      printf '%s undo %s %s ' {mark} \"$j\" \"$rc\"; printf '%s' \"$out\" | tail -c 500 | base64 -w0; echo",
        "    fi",
        "  done",
        "}",
    ]
    for i, (inst, _) in enumerate(steps):
        undoable = _undoable(inst)
        undo = f"  rollback {i} $done_steps" if undoable else "  rollback $done_steps"
        remember = f'; done_steps="{i} $done_steps"' if undoable else ""
        lines += [
            f"out=$(step_{i} 2>&1); rc=$?",
            f"if [ \"$rc\" -eq 0 ]; then printf '%s %s 0\\n' {mark} {i}{remember}; else",
            f"  printf '%s %s %s ' {mark} {i} \"$rc\"; printf '%s' \"$out\" | tail -c 2000 | base64 -w0; echo",
            undo,
            "  exit 0",
            "fi",
        ]
    lines += [f"clean_{i} >/dev/null 2>&1" for i in range(len(steps))]
    # every step done: the state after it, in this same round trip (what the engine's verification reads); its
    # guards run, since the change has been applied (reviewed as far as it goes)
    after = facts.script([dataclasses.replace(inst.desired, reviewed=True) for inst, _ in steps], ending=False)
    lines += [f"printf '%s after\\n' {mark}", after]
    return "\n".join(lines) + "\n"


def _after(steps: Sequence[tuple[Instance[HostResource], Change]], mark: str, out: bytes) -> list[Facts] | None:
    """The live state of each step's resource after the change script, from its last section; None when the
    script did not get there (a step failed) or the section cannot be read."""
    head = f"{mark} after\n".encode()
    at = out.rfind(head)
    if at < 0:
        return None
    try:
        return list(facts.parse([inst.desired for inst, _ in steps], out[at + len(head):]))
    except ValueError:
        return None


def _undoable(inst: Instance[HostResource]) -> bool:
    """Commands cannot be undone; other steps can unless their HostState turned rollback off."""
    return bool(inst.desired.rollback) and inst.resource != "command"
