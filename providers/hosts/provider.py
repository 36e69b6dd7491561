"""The host provider: HostState resources on the hosts of a HostGroup.

Per host: one fact script for all its resources (one round trip), one change script for
all its changes (one round trip, steps reported as they finish); hosts run in parallel.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from providers.context import Context
from providers.contract import Change, FieldChange, Instance, Live, Result, fingerprint
from providers.hosts import facts
from providers.hosts.model import Desired, HostInfo
from providers.hosts.resources import MODULES, command, service
from providers.hosts.resources.common import clean_path
from providers.hosts.results import rolled, tail
from providers.hosts.transport import LocalTransport, Transport
from providers.secrets import keyed
from providers.windows.kinds import WINDOWS_RESOURCES
from specs.errors import SpecError, TransportError
from specs.hostgroup import Host, HostGroupSpec, expand_vars
from specs.hoststate import (
    WINDOWS_PATH,
    CommandResource,
    FileResource,
    HostStateSpec,
    PackageResource,
    ProcessResource,
    ServiceResource,
    source_path,
)
from specs.project import Project, Spec


class HostProvider:
    kinds = ("HostState",)

    def __init__(self) -> None:
        self._limits: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def _limit(self, host: HostInfo) -> threading.Semaphore:
        """At most `concurrency` hosts of a group are read or changed at once."""
        with self._lock:
            if host.group not in self._limits:
                self._limits[host.group] = threading.Semaphore(host.concurrency)
            return self._limits[host.group]

    def expand(self, spec: Spec, project: Project) -> list[Instance]:
        body = spec.body
        assert isinstance(body, HostStateSpec)
        group = project.specs[f"HostGroup/{body.group}"]
        assert isinstance(group.body, HostGroupSpec)
        base = Path(group.doc.file).parent
        notifiers: dict[str, list[str]] = {}
        for res in body.resources:
            for target in res.notify:
                notifiers.setdefault(target, []).append(f"{res.type}:{res.key()}")
        out = []
        for host in group.body.hosts:
            info = _host_info(host, group.body, group.name, base)
            _fits(spec, body, info)
            for res in body.resources:
                key = f"{res.type}:{res.key()}"
                content = None
                if isinstance(res, FileResource) and res.state == "present":
                    content = _content(res, spec)
                elif isinstance(res, PackageResource) and res.source is not None and res.state == "present":
                    content = source_path(spec.doc, res.source).read_bytes()  # an MSI, sent to Windows hosts
                handler = isinstance(res, CommandResource | ServiceResource)
                by = tuple(notifiers.get(res.key(), ())) if handler else ()
                desired = Desired(res, info, key, content, by, body.rollback)
                out.append(Instance(f"{spec.address}/{key}", host.name, spec.address, res.type, desired,
                                    desired.digest()))
        return out

    def undo(self, target: str, steps: Sequence[tuple[Instance, Change]], ctx: Context) -> Iterator[Result]:
        """Undo finished changes of an interrupted apply on one target, newest first (`recon rollback`)."""
        host = steps[0][0].desired.host
        if host.connection == "winrm":
            from providers.windows import provider as windows

            return windows.undo(steps, _transport(host, ctx))
        return _undo(self, target, steps, ctx)

    def lock_key(self, inst: Instance) -> str:
        """Applies to one host group take turns."""
        return f"hostgroup/{inst.desired.host.group}"

    def read(self, instances: Sequence[Instance], ctx: Context) -> dict[str, Live]:
        by_host = _by_target(instances)

        def one(target: str) -> dict[str, Live]:
            items = by_host[target]
            ctx.reporter.event("read", target, f"{len(items)} resources")
            host = items[0].desired.host
            if host.connection == "winrm":
                from providers.windows import provider as windows

                with self._limit(host):
                    found = windows.read([i.desired for i in items], _transport(host, ctx), target)
                return {i.id: state for i, state in zip(items, found, strict=True)}
            with self._limit(host):
                done = _transport(host, ctx).run(facts.script([i.desired for i in items]))
            if done.rc != 0:
                raise TransportError(f"{target}: reading facts failed: {tail(done.stderr)}")
            try:
                live = facts.parse([i.desired for i in items], done.stdout)
            except ValueError as exc:
                raise TransportError(f"{target}: {exc}: {tail(done.stderr)}") from None
            return {i.id: state for i, state in zip(items, live, strict=True)}

        out: dict[str, Live] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(ctx.concurrency, len(by_host)))) as pool:
            for got in pool.map(one, list(by_host)):
                out.update(got)
        return out

    def diff(self, instances: Sequence[Instance], live: Mapping[str, Live]) -> list[Change]:
        changed: dict[str, bool] = {}
        out = []
        for inst in instances:
            desired: Desired = inst.desired
            state = live.get(inst.id)
            if desired.host.connection == "winrm":
                from providers.windows import provider as windows

                action, reason, fields = windows.diff(desired, state or {}, changed)
            elif isinstance(desired.res, CommandResource):
                action, reason, fields = command.diff(desired, state, changed)
            elif isinstance(desired.res, ServiceResource):
                action, reason, fields = service.diff(desired, state, changed)
            else:
                action, reason, fields = MODULES[inst.resource].diff(desired, state)
            if action == "noop" and isinstance(state, dict) and state.get("backup"):
                bak = getattr(desired.res, "path", "") + ".recon-bak"
                action, reason = "update", f"{bak}, left by an interrupted apply, is still there"
                fields = [FieldChange("backup", bak, None)]
            changed[desired.key] = action != "noop"
            if isinstance(desired.res, FileResource) and desired.res.secret and state and state.get("sha256"):
                state = {**state, "sha256": keyed(state["sha256"])}  # the fingerprint must not hash a secret plainly
            out.append(Change(inst.address, inst.target, inst.spec, inst.resource, action, reason,
                              tuple(fields), fingerprint(state), inst.desired_digest))
        return out

    def apply(self, target: str, steps: Sequence[tuple[Instance, Change]], ctx: Context) -> Iterator[Result]:
        host = steps[0][0].desired.host
        if host.connection == "winrm":
            from providers.windows import provider as windows

            with self._limit(host):  # (a host that cannot be reached is reported per step by windows.apply)
                yield from windows.apply(steps, _transport(host, ctx), ctx, target)
            return
        mark = "@@recon-" + secrets.token_hex(8)
        script = _change_script(steps, mark)
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
            ctx.reporter.event("done" if ok else "failed", target, change.id)

        lost = ""
        ended = ""
        try:
            host = steps[0][0].desired.host
            with self._limit(host):
                done = _transport(host, ctx).run(script, on_line)
            ended = f"not run: the change script ended early: {tail(done.stderr)}"
        except TransportError as exc:  # the steps that reported before the host went away did happen
            lost = str(exc)
        failed = next((i for i, r in reported.items() if not r.ok), None)
        for i, (_, change) in enumerate(steps):
            if i in reported:
                yield rolled(reported[i], i, failed, undone, steps)
            elif failed is not None:
                yield Result(change.id, False, "skipped: an earlier step on this host failed")
            elif lost:
                first = i == len(reported)
                yield Result(change.id, False, lost if first else f"not run: {lost}")
                if first:
                    ctx.reporter.event("failed", target, change.id)
            else:
                yield Result(change.id, False, ended)


def _undo(provider: HostProvider, target: str, steps: Sequence[tuple[Instance, Change]],
          ctx: Context) -> Iterator[Result]:
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
            why = "" if rc == 0 else f"undo failed, exit {rc}: " + tail(base64.b64decode(parts[3]) if len(parts) > 3
                                                                          else b"")
            got[i] = Result(undoable[i][1].id, rc == 0, why)

    host = undoable[0][0].desired.host
    try:
        with provider._limit(host):
            _transport(host, ctx).run(_undo_script(undoable, mark), on_line)
    except TransportError as exc:
        yield from (got.get(i) or Result(c.id, False, f"not undone: {exc}") for i, (_, c) in enumerate(undoable))
        return
    yield from (got.get(i) or Result(c.id, False, "not undone: the undo script ended early")
                for i, (_, c) in enumerate(undoable))


def _undo_script(steps: Sequence[tuple[Instance, Change]], mark: str) -> str:
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


def _change_script(steps: Sequence[tuple[Instance, Change]], mark: str) -> str:
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
    return "\n".join(lines) + "\n"


def _undoable(inst: Instance) -> bool:
    """Commands cannot be undone; other steps can unless their HostState turned rollback off."""
    return bool(inst.desired.rollback) and inst.resource != "command"


_UNIX_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]*$")


def _fits(spec: Spec, body: HostStateSpec, host: HostInfo) -> None:
    """Resources that cannot be on this host's kind of system: one diagnostic each, before any read."""
    problems = []
    windows = host.connection == "winrm"
    for i, res in enumerate(body.resources):
        path = getattr(res, "path", "")
        why = ""
        if windows and not isinstance(res, WINDOWS_RESOURCES):
            why = f"a {res.type} resource is not available on Windows hosts ({host.name} is reached by winrm)"
        elif windows and path and not WINDOWS_PATH.match(path):
            why = f"{path} is not a Windows path ({host.name} is reached by winrm)"
        elif windows and isinstance(res, PackageResource) and (
                res.productCode is None or (res.state == "present" and res.source is None) or res.version):
            why = (f"package {res.name}: on Windows a package is an MSI: give its productCode, and the .msi as "
                   "source to install it (no version: the MSI says which)")
        elif not windows and isinstance(res, PackageResource) and (res.productCode or res.source):
            why = f"package {res.name}: productCode and source are for MSI packages on Windows hosts"
        elif not windows and (WINDOWS_PATH.match(path) or isinstance(res, ProcessResource)
                              or getattr(res, "whileStopped", None) or getattr(res, "startup", None)):
            why = (f"{res.type} {res.key()} is written for Windows hosts, and {host.name} is reached by "
                   f"{host.connection}")
        elif not windows and isinstance(res, ServiceResource) and not _UNIX_SERVICE.match(res.name):
            why = f"service name {res.name!r} is not a Linux service name (letters, digits, @ . _ -)"
        if why:
            problems.append(spec.doc.diagnostic(("spec", "resources", i), why,
                                                "give the group of this HostState hosts of the right kind, or "
                                                "change the resource"))
    if problems:
        raise SpecError(problems)


def _content(res: FileResource, spec: Spec) -> bytes:
    if res.content is not None:
        return res.content.encode()
    if res.contentFrom is not None:
        return res.contentFrom.resolve(Path(spec.doc.file).parent).get_secret_value().encode()
    return source_path(spec.doc, res.source or "").read_bytes()


def _by_target(instances: Sequence[Instance]) -> dict[str, list[Instance]]:
    out: dict[str, list[Instance]] = {}
    for inst in instances:
        out.setdefault(inst.target, []).append(inst)
    return out


def _host_info(host: Host, group: HostGroupSpec, name: str, base: Path) -> HostInfo:
    connection = host.connection or group.connection
    if connection == "local":
        root = None if host.root is None else str((base / expand_vars(host.root)).resolve())
        return HostInfo(host.name, connection, root, base=str(base), group=name, concurrency=group.concurrency)
    if connection == "winrm":
        return HostInfo(host.name, connection, None, address=host.address or host.name,
                        port=host.port or group.winrm.default_port, user=host.user or group.winrm.user,
                        winrm=group.winrm, base=str(base), group=name, concurrency=group.concurrency)
    return HostInfo(host.name, connection, None, address=host.address or host.name,
                    port=host.port or group.ssh.port, user=host.user or group.ssh.user, ssh=group.ssh,
                    base=str(base), group=name, concurrency=group.concurrency)


def _transport(host: HostInfo, ctx: Context) -> Transport:
    """The host's transport, opened once per run and kept in the context until it closes."""
    key = f"hosts/{host.connection}/{host.name}/{host.address}:{host.port}"
    transport = ctx.connections.get(key)
    if transport is None:
        if host.connection == "local":
            transport = LocalTransport()
        elif host.connection == "ssh" and host.ssh is not None and host.ssh.persist > 0 and os.environ.get(
                "RECON_SSH_PERSIST", "1") != "0":
            from providers.hosts.ssh_agent import AgentTransport

            transport = AgentTransport(host)
        elif host.connection == "ssh":
            from providers.hosts.ssh import SshTransport

            transport = SshTransport(host)
        elif host.connection == "winrm":
            from providers.windows.transport import WinrmTransport

            transport = WinrmTransport(host)
        else:
            raise TransportError(f"{host.name}: connection {host.connection!r} is not supported")
        ctx.connections[key] = transport
    return transport
