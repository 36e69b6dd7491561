"""The one context object passed explicitly through planning and applying."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class Reporter(Protocol):
    def event(self, kind: str, target: str, message: str) -> None:
        """kind: total (message: number of steps) | read | done | failed (message: change id)."""


class SilentReporter:
    def event(self, kind: str, target: str, message: str) -> None:
        return None


@dataclass
class Context:
    reporter: Reporter = field(default_factory=SilentReporter)
    concurrency: int = 20
