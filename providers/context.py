"""The one context object passed explicitly through planning and applying, and the reporter in it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

Tick = Callable[[int], None]  # bytes transferred since the last tick


class Reporter(Protocol):
    def event(self, kind: str, target: str, message: str) -> None:
        """kind: total (message: number of steps) | steps (message: the target's change ids, one a line) |
        read | done | failed (message: change id) | info (a line to show) | end (the apply is over)."""

    def transfer(self, label: str, total: int) -> AbstractContextManager[Tick | None]:
        """Progress of a transfer of `total` bytes: a tick to call with each block, or None (not shown)."""
        ...


@contextmanager
def no_transfer(label: str, total: int) -> Iterator[Tick | None]:
    yield None


class SilentReporter:
    def event(self, kind: str, target: str, message: str) -> None:
        return None

    def transfer(self, label: str, total: int) -> AbstractContextManager[Tick | None]:
        return no_transfer(label, total)


@dataclass
class Context:
    reporter: Reporter = field(default_factory=SilentReporter)
    concurrency: int = 100  # targets read or changed at once, across providers (--parallelism)
    force_conflicts: bool = False  # take fields other managers own (Kubernetes server-side apply)
    commit: str = ""  # the git commit the specs come from, recorded on what recon makes ("" outside git)
    # a read only to compare fingerprints (the stale check before apply): providers may skip what only
    # the diff's detail needs (Kubernetes: the dry runs)
    fingerprint_only: bool = False
    # open connections, by provider-chosen key, reused for the whole run and closed by close()
    connections: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for conn in list(self.connections.values()):
            close = getattr(conn, "close", None)
            if close is not None:
                close()
        self.connections.clear()
