"""The operating system of a host, as the host provider sees it: which resources it can have, how its
facts are read, how a resource is diffed, how changes are applied and undone. Chosen once per host
(`system_for`): Windows for hosts reached by WinRM, POSIX for the others. Each has its own folder,
with one module per resource type (`posix/resources/`, `windows/resources/`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from providers.context import Context
    from providers.contract import Action, Change, FieldChange, Instance, Result
    from providers.hosts.model import Facts, HostInfo, HostResource
    from providers.hosts.transport import Transport
    from specs.hoststate import AnyResource


class HostSystem(Protocol):
    name: str

    def unfit(self, res: AnyResource, host: HostInfo) -> str:
        """Why the resource cannot be on this host's system ("" when it can): a spec problem, before any read."""
        ...

    def read(self, items: Sequence[HostResource], transport: Transport, target: str,
             diffs: bool = True) -> list[Facts]:
        """The live state of each item, in order, in one round trip (TransportError when it fails). `diffs`: also
        the old text of files whose content changes, for the plan to show (may cost a round trip more)."""
        ...

    def diff(self, d: HostResource, live: Facts, changed: Mapping[str, bool]) -> tuple[Action, str, list[FieldChange]]:
        """Pure. `changed`: which resources before it on this host change (for notify)."""
        ...

    def apply(self, steps: Sequence[tuple[Instance[HostResource], Change]], transport: Transport, ctx: Context,
              target: str) -> Iterator[Result]:
        """The changes of one host, in order, a result for each; the first failure stops the rest, and with
        rollback on, the finished steps are undone."""
        ...

    def undo(self, steps: Sequence[tuple[Instance[HostResource], Change]], transport: Transport) -> Iterator[Result]:
        """`recon rollback`: finished steps of an interrupted apply undone, newest first."""
        ...

    def logs(self, d: HostResource, transport: Transport, lines: int, since: int | None, follow: bool,
             on_line: Callable[[str], None]) -> None:
        """A service's log on the host, line by line (`recon do logs`); TransportError when it cannot be read."""
        ...


def system_for(host: HostInfo) -> HostSystem:
    if host.connection == "winrm":
        from providers.hosts.windows.system import WINDOWS

        return WINDOWS
    from providers.hosts.posix.system import POSIX

    return POSIX
