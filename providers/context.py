"""The one context object passed explicitly through planning and applying, and the reporter in it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

from specs.stack import Stack

Tick = Callable[[int], None]  # bytes transferred since the last tick


@dataclass(frozen=True)
class Reading:
    """A provider reads the live state of a target."""

    target: str
    what: str  # e.g. "12 resources", "manifest"


@dataclass(frozen=True)
class StepDone:
    """A change finished on its target (ok or failed), as the provider learns it."""

    target: str
    change_id: str
    ok: bool


@dataclass(frozen=True)
class ApplyStarted:
    """An apply begins: every target with the ids of its changes, in order."""

    steps: dict[str, tuple[str, ...]]

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.steps.values())


@dataclass(frozen=True)
class Note:
    """A line worth showing (e.g. which batch of a rollout starts)."""

    text: str


@dataclass(frozen=True)
class ApplyEnded:
    """The apply is over (what was drawn live can go)."""


Event = Reading | StepDone | ApplyStarted | Note | ApplyEnded


class Reporter(Protocol):
    def report(self, event: Event) -> None:
        """Called from any thread, as things happen."""

    def transfer(self, label: str, total: int) -> AbstractContextManager[Tick | None]:
        """Progress of a transfer of `total` bytes: a tick to call with each block, or None (not shown)."""
        ...


@contextmanager
def no_transfer(label: str, total: int) -> Iterator[Tick | None]:
    yield None


class SilentReporter:
    def report(self, event: Event) -> None:
        return None

    def transfer(self, label: str, total: int) -> AbstractContextManager[Tick | None]:
        return no_transfer(label, total)


class Session(Protocol):
    """A provider's state for one run: its connections and caches (e.g. one SSH transport per host, the
    LISTs a plan made), made on first use and closed when the run ends."""

    def close(self) -> None: ...


S = TypeVar("S", bound=Session)


@dataclass
class Context:
    reporter: Reporter = field(default_factory=SilentReporter)
    concurrency: int = 100  # targets read or changed at once, across providers (--parallelism)
    force_conflicts: bool = False  # take fields other managers own (Kubernetes server-side apply)
    commit: str = ""  # the git commit the specs come from, recorded on what recon makes ("" outside git)
    # a read only to compare fingerprints (the stale check before apply): providers may skip what only
    # the diff's detail needs (Kubernetes: the dry runs)
    fingerprint_only: bool = False
    verifying: bool = False  # the re-read after an apply: the change has been applied, so reviewed as far as it goes
    stack: Stack | None = None  # the repository and spec root of the specs (specs/stack.py), which what recon
    # makes carries: orphans are only this stack's
    # each provider's session for the run, by name: shared by copies of the context (dataclasses.replace)
    sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _halt: list[str] = field(default_factory=list, repr=False, compare=False)  # shared by copies, as sessions

    def halt(self, why: str) -> None:
        """No new step may start (e.g. the locks were lost); steps under way finish."""
        self._halt.append(why)

    @property
    def halted(self) -> str:
        """Why no new step may start, or ""."""
        return self._halt[0] if self._halt else ""

    def session(self, name: str, make: Callable[[], S]) -> S:
        """The named provider session of this run, made by `make` on first use (from any thread)."""
        with self._lock:
            found = self.sessions.get(name)
            if found is None:
                found = self.sessions[name] = make()
        return cast(S, found)

    def close(self) -> None:
        with self._lock:
            sessions = list(self.sessions.values())
            self.sessions.clear()
        for session in sessions:
            session.close()
