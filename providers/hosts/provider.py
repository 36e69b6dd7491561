"""The host provider: HostState resources on the hosts of a HostGroup.

Per host: one fact script for all its resources (one round trip), one change script for all its
changes (one round trip, steps reported as they finish); hosts run in parallel. What a script says
is the host's system's business (`system.py`: POSIX or Windows, chosen once per host); this module
expands specs, bounds concurrency, and keeps one transport per host for the run.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from providers.context import Context, Reading
from providers.contract import Change, FieldChange, Instance, Output, Provider, Result, fingerprint
from providers.hosts.model import Facts, HostInfo, HostResource, Payload
from providers.hosts.system import system_for
from providers.hosts.transport import LocalTransport, Transport
from providers.secrets import keyed
from specs.actions import LogsParams
from specs.errors import SpecError, TransportError
from specs.hostgroup import Host, HostGroupSpec, expand_vars
from specs.hoststate import CommandResource, FileResource, HostStateSpec, PackageResource, ServiceResource, source_path
from specs.project import Project, Spec


class HostProvider:
    kinds: ClassVar[tuple[str, ...]] = ("HostState",)

    def __init__(self) -> None:
        self._limits: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def _limit(self, host: HostInfo) -> threading.Semaphore:
        """At most `concurrency` hosts of a group are read or changed at once."""
        with self._lock:
            if host.group not in self._limits:
                self._limits[host.group] = threading.Semaphore(host.concurrency)
            return self._limits[host.group]

    def expand(self, spec: Spec, project: Project) -> list[Instance[HostResource]]:
        body = spec.body
        assert isinstance(body, HostStateSpec)
        group = project.specs[f"HostGroup/{body.group}"]
        assert isinstance(group.body, HostGroupSpec)
        base = Path(group.doc.file).parent
        notifiers: dict[str, list[str]] = {}
        for res in body.resources:
            for target in res.notify:
                notifiers.setdefault(target, []).append(f"{res.type}:{res.key()}")
        contents: dict[int, Payload] = {}  # read (or hashed) once for every host
        for i, res in enumerate(body.resources):
            if isinstance(res, FileResource) and res.state == "present":
                contents[i] = _content(res, spec)
            elif isinstance(res, PackageResource) and res.source is not None and res.state == "present":
                contents[i] = Payload.of_file(source_path(spec.doc, res.source))  # an MSI, sent to Windows hosts
        out = []
        for host in group.body.hosts:
            info = _host_info(host, group.body, group.name, base)
            _fits(spec, body, info)
            for i, res in enumerate(body.resources):
                key = f"{res.type}:{res.key()}"
                content = contents.get(i)
                handler = isinstance(res, CommandResource | ServiceResource)
                by = tuple(notifiers.get(res.key(), ())) if handler else ()
                desired = HostResource(res, info, key, content, by, body.rollback,
                                       reviewed=spec.doc.file not in project.unreviewed)
                out.append(Instance(f"{spec.address}/{key}", host.name, spec.address, res.type, desired,
                                    desired.digest(), host.labels))
        return out

    def undo(self, target: str, steps: Sequence[tuple[Instance[HostResource], Change]],
             ctx: Context) -> Iterator[Result]:
        """Undo finished changes of an interrupted apply on one target, newest first (`recon rollback`)."""
        host = steps[0][0].desired.host
        with self._limit(host):
            yield from system_for(host).undo(steps, _transport(host, ctx))

    def lock_key(self, inst: Instance[HostResource]) -> str:
        """Applies to one host take turns, however the host is named in the specs: its address and port (a
        local host: this machine and its root)."""
        host = inst.desired.host
        if host.connection == "local":
            return f"host/local/{socket.gethostname()}{host.root or '/'}"
        return f"host/{host.connection}/{host.address}:{host.port}"

    def read(self, instances: Sequence[Instance[HostResource]], ctx: Context) -> dict[str, Facts]:
        by_host = _by_target(instances)

        def one(target: str) -> dict[str, Facts]:
            items = by_host[target]
            ctx.reporter.report(Reading(target, f"{len(items)} resources"))
            host = items[0].desired.host
            if host.root is not None:
                for i in items:
                    escape = _escapes(host.root, i.desired.path)
                    if escape:
                        raise TransportError(f"{target}: {getattr(i.desired.res, 'path', '')}: {escape}, outside the "
                                             f"host's root {host.root}; remove the link, or point the root elsewhere")
            # after an apply its guards may run: what the change wrote has been applied (reviewed or not)
            wanted = [dataclasses.replace(i.desired, reviewed=True) if ctx.verifying else i.desired for i in items]
            with self._limit(host):
                found = system_for(host).read(wanted, _transport(host, ctx), target,  # a re-read shows no diff
                                              diffs=not (ctx.fingerprint_only or ctx.verifying))
            return {i.id: state for i, state in zip(items, found, strict=True)}

        out: dict[str, Facts] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(ctx.concurrency, len(by_host)))) as pool:
            for got in pool.map(one, list(by_host)):
                out.update(got)
        return out

    def diff(self, instances: Sequence[Instance[HostResource]], live: Mapping[str, Facts]) -> list[Change]:
        changed: dict[str, bool] = {}
        out = []
        for inst in instances:
            desired = inst.desired
            state = live.get(inst.id)
            action, reason, fields = system_for(desired.host).diff(desired, state, changed)
            if action == "noop" and isinstance(state, dict) and (state.get("backup") or state.get("stray")):
                left = getattr(desired.res, "path", "") + (".recon-bak" if state.get("backup") else ".recon-tmp")
                action, reason = "update", f"{left}, left by an interrupted apply, is still there"
                fields = [FieldChange("backup", left, None)]
            changed[desired.key] = action != "noop"
            if isinstance(desired.res, FileResource) and desired.res.secret and state and state.get("sha256"):
                state = {**state, "sha256": keyed(state["sha256"])}  # the fingerprint must not hash a secret plainly
            if isinstance(state, dict) and "text" in state:  # shown as a diff; the digest already stands for it
                state = {k: v for k, v in state.items() if k != "text"}
            out.append(Change(inst.address, inst.target, inst.spec, inst.resource, action, reason,
                              tuple(fields), fingerprint(state), inst.desired_digest))
        return out

    def apply(self, target: str, steps: Sequence[tuple[Instance[HostResource], Change]],
              ctx: Context) -> Iterator[Result]:
        host = steps[0][0].desired.host
        with self._limit(host):  # (a host that cannot be reached is reported per step)
            yield from system_for(host).apply(steps, _transport(host, ctx), ctx, target)

    def actions(self, inst: Instance[HostResource]) -> tuple[str, ...]:
        return ("restart", "logs") if inst.resource == "service" else ()

    def act(self, action: str, target: str, instances: Sequence[Instance[HostResource]], params: Any, ctx: Context,
            emit: Callable[[Output], None]) -> Result:
        """A service restarted as a notified restart is (the same script, verified the same way), or its log read."""
        inst = instances[0]
        name = getattr(inst.desired.res, "name", "")
        started = time.monotonic()
        if action == "restart":
            change = Change(inst.address, target, inst.spec, inst.resource, "restart", "recon do restart",
                            (FieldChange("restart", None, name),), "", inst.desired_digest)
            done = list(self.apply(target, [(inst, change)], ctx))[-1]
            return Result(inst.id, done.ok, done.message, time.monotonic() - started,
                          note=f"service {name} restarted" if done.ok else "")
        assert isinstance(params, LogsParams)
        count = [0]

        def line(text: str) -> None:
            count[0] += 1
            emit(Output(target, text))

        host = inst.desired.host
        try:
            with self._limit(host):
                system_for(host).logs(inst.desired, _transport(host, ctx), params.tail, params.since_seconds,
                                      params.follow, line)
        except TransportError as exc:
            return Result(inst.id, False, f"{target}: {exc}", time.monotonic() - started)
        return Result(inst.id, True, seconds=time.monotonic() - started, note=f"{count[0]} lines of {name}")


_: type[Provider[HostResource, Facts]] = HostProvider  # the contract, typed (mypy checks it)


def _fits(spec: Spec, body: HostStateSpec, host: HostInfo) -> None:
    """Resources that cannot be on this host's kind of system: one diagnostic each, before any read."""
    system = system_for(host)
    problems = []
    for i, res in enumerate(body.resources):
        why = system.unfit(res, host)
        if why:
            problems.append(spec.doc.diagnostic(("spec", "resources", i), why,
                                                "give the group of this HostState hosts of the right kind, or "
                                                "change the resource"))
    if problems:
        raise SpecError(problems)


def _content(res: FileResource, spec: Spec) -> Payload:
    if res.content is not None:
        return Payload.of_bytes(res.content.encode())
    if res.contentFrom is not None:
        return Payload.of_bytes(res.contentFrom.resolve(Path(spec.doc.file).parent).get_secret_value().encode())
    return Payload.of_file(source_path(spec.doc, res.source or ""))


def _by_target(instances: Sequence[Instance[HostResource]]) -> dict[str, list[Instance[HostResource]]]:
    out: dict[str, list[Instance[HostResource]]] = {}
    for inst in instances:
        out.setdefault(inst.target, []).append(inst)
    return out


def _host_info(host: Host, group: HostGroupSpec, name: str, base: Path) -> HostInfo:
    connection = group.connection_of(host)
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


class _Transports:
    """The host provider's session: one transport per host for the run, closed when it ends."""

    def __init__(self) -> None:
        self.open: dict[str, Transport] = {}

    def close(self) -> None:
        for transport in self.open.values():
            transport.close()
        self.open.clear()


def _transport(host: HostInfo, ctx: Context) -> Transport:
    """The host's transport, opened once per run (each host is read and changed by one thread at a time)."""
    opened = ctx.session("hosts", _Transports).open
    key = f"{host.connection}/{host.name}/{host.address}:{host.port}"
    transport = opened.get(key)
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
            from providers.hosts.windows.transport import WinrmTransport

            transport = WinrmTransport(host)
        else:
            raise TransportError(f"{host.name}: connection {host.connection!r} is not supported")
        opened[key] = transport
    return transport


def _escapes(root: str, path: str) -> str:
    """How a path below a local root leads out of it through a link ("" when it does not): recon would read and
    write where the link points (root/srv -> /elsewhere)."""
    if not path:
        return ""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real == real_root or real.startswith(real_root.rstrip("/") + "/"):
        return ""
    here = root.rstrip("/")
    for part in path[len(here):].strip("/").split("/"):
        here = f"{here}/{part}"
        if os.path.islink(here):
            return f"{here} is a link to {os.readlink(here)}"
    return f"it resolves to {real}"
