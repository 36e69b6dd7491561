"""The apply journal: one JSON line per event, flushed as it happens, so an interrupted apply
leaves a record of what was done, and copied to the run's audit record. When the audit log cannot
be written (a shared backend went away mid-apply) the journal goes on alone, says from which line
on the audit lacks its events (`audit-lost`), and calls `on_lost` (no new step starts); the next
apply copies those events into the audit log (`sync`)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.identity import whoami
from specs.errors import ReconError

if TYPE_CHECKING:
    from reconciler.audit import Run


class Journal:
    """Also copies every event to the run's audit record, when given one."""

    def __init__(self, state_dir: Path, plan_id: str, audit: Run | None = None, plan: Any = None,
                 path: Path | None = None, on_lost: Callable[[str], None] | None = None) -> None:
        """A new journal (the plan it carries out is kept beside it, for `recon rollback`), or, with
        `path`, more events for an existing one."""
        self.audit = audit
        self.on_lost = on_lost
        self.lost = ""  # why the audit log could not be written, once it could not
        self.lines = 0
        directory = state_dir / "journal"
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")  # two applies in one second stay apart
        self.path = path or directory / f"{stamp}-{plan_id}.jsonl"
        if plan is not None:
            self.path.with_suffix(".plan.json").write_text(json.dumps(plan.to_json()))
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")
        if path is None:
            run = {"run": audit.id, "command": audit.command, "request_id": audit.request_id} if audit else {}
            self.write("start", plan_id=plan_id, **whoami(), **run)

    def write(self, event: str, **data: Any) -> None:
        record = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **data}
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            index = self.lines
            self.lines += 1
        if self.audit is None or event == "start" or self.lost:
            return
        try:
            copy_to_audit(self.audit, record)
        except ReconError as exc:
            self._lose(str(exc), index)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Records written inside reach the audit log together, all or none (one round trip to a postgres
        backend); when they cannot, the journal keeps them for the next apply to copy, as for one record."""
        if self.audit is None or self.lost:
            yield
            return
        first = self.lines
        try:
            with self.audit.audit.batch():
                yield
        except ReconError as exc:
            self._lose(str(exc), first)

    def _lose(self, why: str, since: int) -> None:
        with self._lock:
            if self.lost:
                return
            self.lost = why
        self.write("audit-lost", since=since, message=self.lost)
        self.path.with_suffix(".audit-lost").touch()  # what sync looks for: no journal is read in vain
        if self.on_lost is not None:
            self.on_lost(f"the audit log cannot be written ({self.lost})")

    def close(self) -> None:
        with self._lock:
            self._file.close()


def copy_to_audit(run: Run, record: dict[str, Any]) -> None:
    data = {k: v for k, v in record.items() if k not in ("at", "event", "change", "ok", "message")}
    run.write(record["event"], change=str(record.get("change", "")), ok=record.get("ok"),
              message=str(record.get("message", "")), **data)


def sync(state_dir: Path, audit: Any) -> int:
    """Copy into the audit log the events of journals whose apply lost it (`audit-lost`), under their own
    run; mark each journal synced. The number of events copied."""
    from reconciler.audit import Run

    copied = 0
    for marker in sorted((state_dir / "journal").glob("*.audit-lost")) if (state_dir / "journal").is_dir() else []:
        path = marker.with_suffix(".jsonl")
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        lost = next((r for r in records if r.get("event") == "audit-lost"), None)
        if lost is None or any(r.get("event") == "audit-synced" for r in records) or not records[0].get("run"):
            marker.unlink()
            continue
        start = records[0]
        run = Run(audit, start["run"], start.get("command", "apply"), start.get("plan_id", ""),
                  start.get("request_id", ""))
        missing = [r for i, r in enumerate(records) if i >= int(lost.get("since", 0)) and r["event"] != "audit-lost"]
        for record in missing:
            copy_to_audit(run, {**record, "journal_at": record.get("at")})
        run.write("synced", message=f"{len(missing)} events copied from the journal {path.name} after the audit "
                  "log was lost during the apply")
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                                 "event": "audit-synced", "events": len(missing)}) + "\n")
        marker.unlink()
        copied += len(missing)
    return copied
