"""A byte progress bar on stderr for long transfers: the engine's console reporter shows it for a
provider's transfers (`Reporter.transfer`), and provider commands (`recon bundle pull`) for their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from providers.context import Tick

BAR_THRESHOLD = 32 << 20  # transfers smaller than this finish before a bar would help


@contextmanager
def transfer_bar(label: str, total: int, enabled: bool) -> Iterator[Tick | None]:
    """A byte progress bar on stderr for a transfer of `total` bytes; None (no bar) when not wanted."""
    if not enabled or total < BAR_THRESHOLD:
        yield None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    lock = threading.Lock()
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(escape(label), total=total)

        def tick(n: int) -> None:
            with lock:
                bar.advance(task, n)

        yield tick
