"""The apply journal: one JSON line per event, flushed as it happens, so an interrupted apply
leaves a record of what was done. (The audit log of the policy work builds on it.)"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.identity import whoami

if TYPE_CHECKING:
    from reconciler.audit import Run


class Journal:
    """Also copies every event to the run's audit record, when given one."""

    def __init__(self, state_dir: Path, plan_id: str, audit: Run | None = None, plan: Any = None,
                 path: Path | None = None) -> None:
        """A new journal (the plan it carries out is kept beside it, for `recon rollback`), or, with
        `path`, more events for an existing one."""
        self.audit = audit
        directory = state_dir / "journal"
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")  # two applies in one second stay apart
        self.path = path or directory / f"{stamp}-{plan_id}.jsonl"
        if plan is not None:
            self.path.with_suffix(".plan.json").write_text(json.dumps(plan.to_json()))
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")
        if path is None:
            self.write("start", plan_id=plan_id, **whoami())

    def write(self, event: str, **data: Any) -> None:
        record = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **data}
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        if self.audit is not None and event != "start":
            rest = {k: v for k, v in data.items() if k not in ("change", "ok", "message")}
            self.audit.write(event, change=str(data.get("change", "")), ok=data.get("ok"),
                             message=str(data.get("message", "")), **rest)

    def close(self) -> None:
        with self._lock:
            self._file.close()
