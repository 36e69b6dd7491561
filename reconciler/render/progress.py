"""Progress during apply: one line per finished step, `[done/total]`, as steps report."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.markup import escape


class ConsoleReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.total = 0
        self.finished = 0
        self._lock = threading.Lock()

    def event(self, kind: str, target: str, message: str) -> None:
        with self._lock:
            if kind == "total":
                self.total, self.finished = int(message), 0
            elif kind == "info":
                self.console.print(f"[bold]{escape(message)}[/bold]")
            elif kind in ("done", "failed"):
                self.finished += 1
                mark = "[green]  ✓[/green]" if kind == "done" else "[red]  ✗[/red]"
                count = f"[dim][{self.finished}/{self.total}][/dim] " if self.total else ""
                self.console.print(f"{mark} {count}{escape(message)}")


def make_reporter(console: Console) -> ConsoleReporter:
    return ConsoleReporter(console)
