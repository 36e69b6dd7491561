"""How a host's step results read after a failure: shared by the POSIX and the Windows hosts."""

from __future__ import annotations

from collections.abc import Sequence

from providers.contract import Change, Instance, Result
from providers.hosts.model import HostResource


def rolled(result: Result, i: int, failed: int | None, undone: dict[int, str],
           steps: Sequence[tuple[Instance[HostResource], Change]]) -> Result:
    """A step's result once its host was rolled back after step `failed` failed."""
    if failed is None or not undone:
        return result
    if i == failed:
        problems = [why for why in undone.values() if why]
        tail = "; the host was rolled back" if not problems else f"; rolling back failed: {problems[0]}"
        return Result(result.change_id, False, result.message + tail, result.seconds)
    if i not in undone:
        return Result(result.change_id, True, "kept: not undone (rollback is off, or it is a command)",
                      result.seconds)
    cause = steps[failed][1].id
    why = undone[i]
    msg = f"rolled back: {cause} failed" if not why else f"rolling back after {cause} failed did not work: {why}"
    return Result(result.change_id, False, msg, result.seconds)


def tail(data: bytes, limit: int = 400) -> str:
    text = data.decode("utf-8", "replace").strip()
    text = " | ".join(line for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else "…" + text[-limit:]
