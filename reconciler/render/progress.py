"""Progress during reads and applies: a live line on a terminal, one plain line per step otherwise."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.markup import escape


class ConsoleReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._status = console.status("") if self.live else None

    def event(self, kind: str, target: str, message: str) -> None:
        with self._lock:
            if kind == "read":
                if self._status is not None:
                    self._status.update(f"reading {escape(target)}: {escape(message)}")
                return
            if kind == "done":
                self.done += 1
                self.console.print(f"[green]  ✓[/green] {escape(message)}")
            elif kind == "failed":
                self.failed += 1
                self.console.print(f"[red]  ✗[/red] {escape(message)}")


def make_reporter(console: Console) -> ConsoleReporter:
    return ConsoleReporter(console)
