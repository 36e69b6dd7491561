"""The one context object passed explicitly through planning and applying."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class Reporter(Protocol):
    def event(self, kind: str, target: str, message: str) -> None:
        """kind: total (message: number of steps) | steps (message: the target's change ids, one a line) |
        read | done | failed (message: change id) | info (a line to show) | end (the apply is over)."""


class SilentReporter:
    def event(self, kind: str, target: str, message: str) -> None:
        return None


@dataclass
class Context:
    reporter: Reporter = field(default_factory=SilentReporter)
    bars: bool = False  # progress bars for long transfers (a terminal is watching)
    concurrency: int = 100  # targets read or changed at once, across providers (--parallelism)
    force_conflicts: bool = False  # take fields other managers own (Kubernetes server-side apply)
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
