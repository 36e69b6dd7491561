"""The audit log: an append-only SQLite table of events, one run (a plan or an apply) at a time.

- Append-only: triggers refuse UPDATE and DELETE; a run is its events (start, policy, refused,
  begin, step, result, end), so a run killed mid-way still shows every step it reported.
- Safe with several writers: WAL journal, a busy timeout, and a retry on "database is locked".
- Never holds a secret: what is written is what plans show (masked values, keyed hashes).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.identity import who
from specs.errors import UsageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    command TEXT NOT NULL DEFAULT '',
    plan_id TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    change_id TEXT NOT NULL DEFAULT '',
    ok INTEGER,
    message TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
CREATE INDEX IF NOT EXISTS events_plan ON events (plan_id, event);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id, event);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def default_path(state_dir: Path) -> Path:
    return Path(os.environ.get("RECON_AUDIT") or state_dir / "audit.db")


class Audit:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._retry(lambda: self._db.executescript(SCHEMA))

    def _retry(self, work: Any) -> Any:
        for attempt in range(20):
            try:
                return work()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise UsageError(f"the audit log {self.path} stayed locked by another writer; try again")

    def start(self, command: str, plan_id: str = "", request_id: str = "", **data: Any) -> Run:
        run = Run(self, uuid.uuid4().hex[:12], command, plan_id, request_id)
        run.write("start", **who(), **data)
        return run

    def insert(self, run: Run, event: str, change_id: str, ok: bool | None, message: str, data: dict[str, Any]) -> None:
        row = (run.id, datetime.now(UTC).isoformat(timespec="milliseconds"), event, run.command, run.plan_id,
               run.request_id, change_id, None if ok is None else int(ok), message,
               json.dumps(data, sort_keys=True, default=str))
        with self._lock:
            self._retry(lambda: self._db.execute(
                "INSERT INTO events (run_id, at, event, command, plan_id, request_id, change_id, ok, message, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row))

    def finished(self, *, plan_id: str = "", request_id: str = "") -> dict[str, Any] | None:
        """The last apply that ended with every change done, for this plan id or request id."""
        column, value = ("plan_id", plan_id) if plan_id else ("request_id", request_id)
        row = self._db.execute(
            f"SELECT e.at, e.run_id, s.data FROM events e JOIN events s ON s.run_id = e.run_id AND s.event = 'start' "
            f"WHERE e.{column} = ? AND e.event = 'end' AND e.command = 'apply' AND e.ok = 1 "
            "ORDER BY e.seq DESC LIMIT 1", (value,)).fetchone()
        if row is None:
            return None
        return {"at": row[0], "run": row[1], **json.loads(row[2])}

    def applied(self) -> dict[str, str]:
        """Change id -> the desired digest it was last applied with (the baseline of drift)."""
        rows = self._db.execute("SELECT change_id, data FROM events WHERE event = 'applied' ORDER BY seq")
        return {change: json.loads(data).get("desired", "") for change, data in rows}

    def runs(self, since: datetime | None = None, resource: str = "", plan_id: str = "",
             limit: int = 50) -> list[dict[str, Any]]:
        """Runs, newest first, each with its events (only those of `resource` when given)."""
        where, args = ["event = 'start'"], []
        if since is not None:
            where.append("at >= ?")
            args.append(since.isoformat(timespec="milliseconds"))
        if plan_id:
            where.append("plan_id = ?")
            args.append(plan_id)
        if resource:
            where.append("run_id IN (SELECT run_id FROM events WHERE change_id LIKE ? ESCAPE '\\')")
            args.append(_like(resource))
        starts = self._db.execute(
            f"SELECT run_id, at, command, plan_id, request_id, data FROM events WHERE {' AND '.join(where)} "
            "ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        out = []
        for run_id, at, command, pid, rid, data in starts:
            events = [dict(zip(("at", "event", "change", "ok", "message", "data"), e, strict=True))
                      for e in self._db.execute(
                          "SELECT at, event, change_id, ok, message, data FROM events WHERE run_id = ? ORDER BY seq",
                          (run_id,))]
            for e in events:
                e["ok"] = None if e["ok"] is None else bool(e["ok"])
                e["data"] = json.loads(e["data"])
            end = next((e for e in reversed(events) if e["event"] in ("end", "refused")), None)
            outcome = ("interrupted" if end is None else "refused" if end["event"] == "refused"
                       else "ok" if end["ok"] else "failed")
            if resource:
                events = [e for e in events if e["change"] and _glob_like(resource, e["change"])]
            out.append({"run": run_id, "at": at, "command": command, "plan_id": pid, "request_id": rid,
                        "outcome": outcome, **json.loads(data), "events": events})
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class Run:
    audit: Audit
    id: str
    command: str
    plan_id: str = ""
    request_id: str = ""

    def write(self, event: str, change: str = "", ok: bool | None = None, message: str = "", **data: Any) -> None:
        self.audit.insert(self, event, change, ok, message, data)


def _like(pattern: str) -> str:
    text = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return text.replace("*", "%") + ("" if "*" in pattern else "%")


def _glob_like(pattern: str, name: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern) or ("*" not in pattern and name.startswith(pattern))


def parse_since(text: str) -> datetime:
    """`30m`, `2h`, `7d`, or an ISO date/time."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[:-1].isdigit() and text[-1:] in units:
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration (30m, 2h, 7d) or a date (2026-11-23)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
