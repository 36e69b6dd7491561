"""Progress during apply: one line per finished step, `[done/total]`, as steps report."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.markup import escape


class ConsoleReporter:
    """Step lines `✓ [12/60] change-id`, and with several targets the tally of targets:
    `· targets: 3 done, 1 failed, 16 pending`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.total = 0
        self.finished = 0
        self.left: dict[str, int] = {}  # target -> steps not reported yet
        self.failed: set[str] = set()
        self._lock = threading.Lock()

    def _tally(self) -> str:
        if len(self.left) < 2:
            return ""
        done = sum(1 for t, n in self.left.items() if n == 0 and t not in self.failed)
        pending = sum(1 for t, n in self.left.items() if n > 0 and t not in self.failed)
        return f" [dim]· targets: {done} done, {len(self.failed)} failed, {pending} pending[/dim]"

    def event(self, kind: str, target: str, message: str) -> None:
        with self._lock:
            if kind == "total" and target:
                self.left[target] = int(message)
            elif kind == "total":
                self.total, self.finished = int(message), 0
                self.left.clear()
                self.failed.clear()
            elif kind == "info":
                self.console.print(f"[bold]{escape(message)}[/bold]")
            elif kind in ("done", "failed"):
                self.finished += 1
                if target in self.left:
                    self.left[target] = max(0, self.left[target] - 1)
                if kind == "failed":
                    self.failed.add(target)
                mark = "[green]  ✓[/green]" if kind == "done" else "[red]  ✗[/red]"
                count = f"[dim][{self.finished}/{self.total}][/dim] " if self.total else ""
                self.console.print(f"{mark} {count}{escape(message)}{self._tally()}")


def make_reporter(console: Console) -> ConsoleReporter:
    return ConsoleReporter(console)
