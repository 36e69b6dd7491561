"""A fake provider for the engine's unit tests (pyinfra's fake connector, Terraform's test providers):
HostState files on hosts that live in a dict. The engine (planner, executor, policy, gate's locks) runs
against it unchanged, in milliseconds, and what it did is recorded in order.

A file resource's desired state is its `content`; the world is {host: {path: content}}. Scripted
faults: `fail` (change ids whose apply fails), `lie` (change ids that report success but change
nothing), `lost` (targets whose read raises TransportError).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from providers.context import Context, StepDone
from providers.contract import Change, FieldChange, Instance, Live, Result, fingerprint
from specs.errors import TransportError
from specs.hostgroup import HostGroupSpec
from specs.hoststate import FileResource, HostStateSpec
from specs.project import Project, Spec


@dataclass
class World:
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)  # (verb, target, ids)
    fail: set[str] = field(default_factory=set)
    lie: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


WORLD = World()


class FakeProvider:
    kinds: ClassVar[tuple[str, ...]] = ("HostState",)

    def expand(self, spec: Spec, project: Project) -> list[Instance]:
        body = spec.body
        assert isinstance(body, HostStateSpec)
        group = project.specs[f"HostGroup/{body.group}"].body
        assert isinstance(group, HostGroupSpec)
        out = []
        for host in group.hosts:
            for res in body.resources:
                assert isinstance(res, FileResource)
                desired = None if res.state == "absent" else (res.content or "")
                digest = hashlib.sha256(repr(desired).encode()).hexdigest()[:16]
                out.append(Instance(f"{spec.address}/file:{res.path}", host.name, spec.address, "file",
                                    (res.path, desired), digest))
        return out

    def read(self, instances: Sequence[Instance], ctx: Context) -> dict[str, Live]:
        with WORLD.lock:
            for target in sorted({i.target for i in instances}):
                WORLD.calls.append(("read", target, tuple(i.id for i in instances if i.target == target)))
                if target in WORLD.lost:
                    raise TransportError(f"{target}: cannot be reached", transient=True)
            return {i.id: WORLD.files.get(i.target, {}).get(i.desired[0]) for i in instances}

    def diff(self, instances: Sequence[Instance], live: Mapping[str, Live]) -> list[Change]:
        out = []
        for inst in instances:
            path, want = inst.desired
            have = live.get(inst.id)
            if have == want:
                action, reason, fields = "noop", f"{path} is as wanted", ()
            elif want is None:
                action, reason, fields = "delete", f"{path} exists", (FieldChange("content", have, None),)
            else:
                action = "create" if have is None else "update"
                reason, fields = f"{path} differs", (FieldChange("content", have, want),)
            out.append(Change(inst.address, inst.target, inst.spec, inst.resource, action, reason,  # type: ignore[arg-type]
                              fields, fingerprint(have), inst.desired_digest))
        return out

    def apply(self, target: str, steps: Sequence[tuple[Instance, Change]], ctx: Context) -> Iterator[Result]:
        with WORLD.lock:
            WORLD.calls.append(("apply", target, tuple(c.id for _, c in steps)))
        for n, (inst, change) in enumerate(steps):
            if change.id in WORLD.fail:
                yield Result(change.id, False, "exit 1: it failed")
                for _, later in steps[n + 1:]:
                    yield Result(later.id, False, "skipped: an earlier step on this host failed")
                return
            path, want = inst.desired
            if change.id not in WORLD.lie:
                with WORLD.lock:
                    host = WORLD.files.setdefault(target, {})
                    if want is None:
                        host.pop(path, None)
                    else:
                        host[path] = want
            ctx.reporter.report(StepDone(target, change.id, True))
            yield Result(change.id, True)

    def lock_key(self, inst: Instance) -> str:
        return f"fakegroup/{inst.target[:1]}"
