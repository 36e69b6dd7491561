"""Progress during apply: one line per finished step, `[done/total]`, as providers report steps (the typed
events of providers/context.py)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

from rich.console import Console

from providers.context import ApplyEnded, ApplyStarted, Event, Note, StepDone, Tick
from providers.progress import transfer_bar
from reconciler.render.safe import esc as escape


class ConsoleReporter:
    """Step lines `✓ [12/60] change-id`, and with several targets the tally of targets:
    `· targets: 3 done, 1 failed, 16 pending`."""

    def __init__(self, console: Console, bars: bool = False) -> None:
        self.console = console
        self.bars = bars  # byte progress bars for long transfers (a terminal is watching)
        self.total = 0
        self.finished = 0
        self.left: dict[str, int] = {}  # target -> steps not reported yet
        self.failed: set[str] = set()
        self._lock = threading.Lock()

    def transfer(self, label: str, total: int) -> AbstractContextManager[Tick | None]:
        return transfer_bar(label, total, self.bars)

    def _tally(self) -> str:
        if len(self.left) < 2:
            return ""
        done = sum(1 for t, n in self.left.items() if n == 0 and t not in self.failed)
        pending = sum(1 for t, n in self.left.items() if n > 0 and t not in self.failed)
        return f" [dim]· targets: {done} done, {len(self.failed)} failed, {pending} pending[/dim]"

    def report(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, ApplyStarted):
                self.total, self.finished = event.total, 0
                self.left = {target: len(ids) for target, ids in event.steps.items()}
                self.failed.clear()
            elif isinstance(event, Note):
                self.console.print(f"[bold]{escape(event.text)}[/bold]")
            elif isinstance(event, StepDone):
                self.finished += 1
                if event.target in self.left:
                    self.left[event.target] = max(0, self.left[event.target] - 1)
                if not event.ok:
                    self.failed.add(event.target)
                mark = "[green]  ✓[/green]" if event.ok else "[red]  ✗[/red]"
                count = f"[dim][{self.finished}/{self.total}][/dim] " if self.total else ""
                self.console.print(f"{mark} {count}{escape(event.change_id)}{self._tally()}")


class LiveReporter(ConsoleReporter):
    """On a terminal, with several targets: the step lines as ConsoleReporter prints them, and below them
    a table redrawn as steps report: each target's state, steps done, and the step under way."""

    ROWS = 25

    def __init__(self, console: Console, bars: bool = False) -> None:
        super().__init__(console, bars)
        self.steps: dict[str, list[str]] = {}
        self.reported: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.live: Any = None

    def report(self, event: Event) -> None:
        if isinstance(event, ApplyStarted):
            with self._lock:
                self.steps = {target: list(ids) for target, ids in event.steps.items()}
                self.reported = dict.fromkeys(event.steps, 0)
        if isinstance(event, ApplyEnded):
            self._stop()
            return
        if isinstance(event, StepDone):
            with self._lock:
                self.reported[event.target] = self.reported.get(event.target, 0) + 1
            if self.live is not None:
                self.live.refresh()  # the table under the step line must already count this step
        super().report(event)
        if isinstance(event, StepDone) and len(self.left) >= 2:
            self._show()

    def _show(self) -> None:
        with self._lock:
            if self.live is None:
                from rich.live import Live

                self.live = Live(self._table(), console=self.console, transient=True, refresh_per_second=8,
                                 get_renderable=self._table)
                self.live.start()

    def _stop(self) -> None:
        with self._lock:
            live, self.live = self.live, None
        if live is not None:
            live.stop()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for name in ("target", "state", "steps", "now"):
            table.add_column(name)
        rows = []
        for target, ids in self.steps.items():
            done = self.reported.get(target, 0)
            state = ("[red]failed[/red]" if target in self.failed else "[green]done[/green]" if done >= len(ids)
                     else "[yellow]running[/yellow]" if done else "pending")
            now = escape(ids[done]) if done < len(ids) and target not in self.failed else ""
            rank = 0 if target in self.failed else 1 if 0 < done < len(ids) else 2 if done == 0 else 3
            rows.append((rank, target, state, f"{done}/{len(ids)}", now))
        rows.sort(key=lambda r: (r[0], r[1]))
        for _, target, state, count, now in rows[:self.ROWS]:
            table.add_row(escape(target), state, count, f"[dim]{now}[/dim]")
        if len(rows) > self.ROWS:
            table.add_row(f"… {len(rows) - self.ROWS} more", "", "", "")
        return table


def make_reporter(console: Console, bars: bool = False) -> ConsoleReporter:
    """Step lines; on a real terminal also a live table of targets. `bars`: byte bars for long transfers."""
    import os

    if console.is_terminal and os.environ.get("TERM", "") not in ("", "dumb"):
        return LiveReporter(console, bars)
    return ConsoleReporter(console, bars)
