"""The provider contract: what the engine calls and what every provider implements.

Required (`Provider`):
- expand: a spec into instances (one resource on one target), no live I/O.
- read:   live state of many instances at once, batched per target.
- diff:   pure; desired vs live for the instances of one spec on one target, in order.
- apply:  carry out the changes of one target, in order, yielding a result per change.

Optional abilities are small Protocols of their own (as terraform-plugin-framework's
`ResourceWith…` interfaces): `WithOrphans`, `WithUndo`, `WithLocking`, `WithValidation`, `WithActions`. The
registry (`providers/__init__.py`) declares which each provider has and checks that once, when the
provider is loaded; the engine asks `abilities(kind)` or the ability's Protocol, never `getattr`.

A change (`Change`, `FieldChange`) is the provider's answer to diff and the unit of a plan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from providers.context import Context
    from specs.errors import Diagnostic
    from specs.project import Project, Spec

Action = Literal["create", "update", "replace", "delete", "restart", "run", "noop"]
ACTIONS: tuple[Action, ...] = ("create", "update", "replace", "delete", "restart", "run", "noop")


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    """What apply will do to one resource on one target, and why."""

    address: str  # Kind/name/resource, e.g. HostState/web/file:/etc/app.conf
    target: str  # where it lives, e.g. a host name; "" when the resource has none
    spec: str  # Kind/name of the spec it comes from
    resource: str  # resource type, e.g. file
    action: Action
    reason: str
    fields: tuple[FieldChange, ...] = ()
    fingerprint: str = ""  # of the live state the change was planned against
    desired: str = ""  # digest of the desired state the change was planned towards
    environment: str = ""  # the policy environment of its spec, if any
    risks: tuple[str, ...] = ()  # flags: delete, replace, restart, tag move, "<env> needs confirmation"
    denied: str = ""  # the policy rule that denies it, with its message; apply refuses the plan
    drift: bool = False  # the live side moved since recon applied these very specs (not what the change asks)

    @property
    def id(self) -> str:
        return f"{self.address}@{self.target}" if self.target else self.address

    @property
    def is_change(self) -> bool:
        return self.action != "noop"


def fingerprint(live: Any) -> str:
    """A short stable digest of a live state (plain JSON data)."""
    text = json.dumps(live, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


D = TypeVar("D", covariant=True)  # a provider's own desired state


@dataclass(frozen=True)
class Instance(Generic[D]):
    """One resource on one target, with the provider's own desired state (`Instance[HostResource]` in the
    host provider; the engine handles `Instance[Any]`)."""

    address: str
    target: str
    spec: str
    resource: str
    desired: D = field(compare=False)
    desired_digest: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)  # of its target (a host's labels)

    @property
    def id(self) -> str:
        return f"{self.address}@{self.target}" if self.target else self.address


@dataclass(frozen=True)
class Result:
    change_id: str
    ok: bool
    message: str = ""  # why it failed, or a warning about a success (e.g. not verified)
    seconds: float = 0.0
    note: str = ""  # what was done, worth a line in the report (e.g. bytes uploaded)
    after: tuple[Any] | None = None  # (the live state after the change,) when read in the change's own round
    # trip, so the engine's verification needs no read of its own; None: the engine reads it


Live = Any  # plain JSON data, or None when the resource does not exist


DesiredT = TypeVar("DesiredT")
LiveT = TypeVar("LiveT")


@runtime_checkable
class Provider(Protocol[DesiredT, LiveT]):
    """Generic in the provider's desired state (what expand puts in each Instance) and its live state (what read
    returns per instance: plain JSON data, since the engine fingerprints it). A provider module states which
    with a line the type checker verifies, e.g. `_: type[Provider[HostResource, Facts]] = HostProvider`; the
    engine handles `Provider[Any, Any]`."""

    kinds: ClassVar[tuple[str, ...]]

    def expand(self, spec: Spec, project: Project) -> list[Instance[DesiredT]]: ...

    def read(self, instances: Sequence[Instance[DesiredT]], ctx: Context) -> dict[str, LiveT]: ...

    def diff(self, instances: Sequence[Instance[DesiredT]], live: Mapping[str, LiveT]) -> list[Change]: ...

    def apply(self, target: str, steps: Sequence[tuple[Instance[DesiredT], Change]],
              ctx: Context) -> Iterator[Result]: ...


@runtime_checkable
class WithOrphans(Protocol):
    """Finds what it made that no spec declares any more (by its labels)."""

    def orphans(self, specs: Sequence[Spec], ctx: Context, prune: bool) -> list[Instance]:
        """Instances of live objects no spec declares: to delete with `prune`, else shown and kept."""
        ...

    def orphan(self, change: Change) -> Instance:
        """The instance of a planned change of an orphan (which no spec expands to), for apply."""
        ...


@runtime_checkable
class WithUndo(Protocol):
    """Can undo finished changes of an interrupted apply (`recon rollback`)."""

    def undo(self, target: str, steps: Sequence[tuple[Instance, Change]], ctx: Context) -> Iterator[Result]: ...


@runtime_checkable
class WithLocking(Protocol):
    """Names what an apply of an instance must hold (a host group, a repository); without it, the spec."""

    def lock_key(self, inst: Instance) -> str: ...


@runtime_checkable
class WithValidation(Protocol):
    """Offline checks for `recon validate` beyond the spec models (e.g. Kubernetes' schemas)."""

    def validate(self, specs: Sequence[Spec]) -> tuple[list[str], list[Diagnostic]]:
        """(lines saying what was checked, problems)."""
        ...


@dataclass(frozen=True)
class Output:
    """A line an operational action prints: a log line, a replica's health, a step of a restart."""

    source: str  # where it comes from: a replica, a pod, a host
    text: str


@runtime_checkable
class WithActions(Protocol):
    """Carries out the operational actions of `recon do` (specs/actions.py) on its resources."""

    def actions(self, inst: Instance) -> tuple[str, ...]:
        """The actions this instance takes (none: it is not what an action acts on, e.g. a Model's ConfigMap)."""
        ...

    def act(self, action: str, target: str, instances: Sequence[Instance], params: Any, ctx: Context,
            emit: Callable[[Output], None]) -> Result:
        """One action on one target, for the instances of one spec there that take it; lines go to `emit` as they
        come (secrets masked); the Result says what was done, or why it failed."""
        ...


ABILITIES: dict[str, type] = {"orphans": WithOrphans, "undo": WithUndo, "locking": WithLocking,
                              "validation": WithValidation, "actions": WithActions}
