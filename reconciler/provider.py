"""The provider contract: a small Protocol the engine calls; providers implement it.

- expand: a spec into instances (one resource on one target), no I/O.
- read:   live state of many instances at once, batched per target.
- diff:   pure; desired vs live for the instances of one spec on one target, in order.
- apply:  carry out the changes of one target, in order, yielding a result per change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from reconciler.context import Context
    from reconciler.plan import Change
    from reconciler.project import Project, Spec


@dataclass(frozen=True)
class Instance:
    """One resource on one target, with the provider's own desired state."""

    address: str
    target: str
    spec: str
    resource: str
    desired: Any = field(compare=False)
    desired_digest: str = ""

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


Live = Any  # plain JSON data, or None when the resource does not exist


class Provider(Protocol):
    kinds: ClassVar[tuple[str, ...]]

    def expand(self, spec: Spec, project: Project) -> list[Instance]: ...

    def read(self, instances: Sequence[Instance], ctx: Context) -> dict[str, Live]: ...

    def diff(self, instances: Sequence[Instance], live: Mapping[str, Live]) -> list[Change]: ...

    def apply(self, target: str, steps: Sequence[tuple[Instance, Change]], ctx: Context) -> Iterator[Result]: ...
