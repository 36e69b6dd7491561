"""The audit log: an append-only table of events, one run (a plan or an apply) at a time, in SQLite on
this machine or in PostgreSQL shared by every runner (reconciler/state.py chooses).

- Append-only, enforced by the database: triggers refuse UPDATE and DELETE (and TRUNCATE in
  PostgreSQL); a run is its events (start, policy, refused, begin, step, result, end), so a run
  killed mid-way still shows every step it reported.
- Tamper-evident: every event carries the hash of the one before it and its own (sha256 over the
  previous hash and its columns), appended under a lock so the chain has no forks. Someone who drops
  the triggers and rewrites a row breaks the chain at that row: `recon audit verify` names it, and
  `recon audit` warns. (Events removed from the end leave a shorter, valid chain: the journal of
  each apply, and CI logs, hold the other copy.)
- Safe with several writers: SQLite's WAL, a busy timeout and retries; PostgreSQL's advisory lock.
- Never holds a secret: what is written is what plans show (masked values, keyed hashes).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.identity import who
from reconciler.state import _ADVISORY, Backend, guarded
from specs.errors import UsageError

COLUMNS = ("run_id", "at", "event", "command", "plan_id", "request_id", "change_id", "ok", "message", "data")

EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    seq {seq},
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    command TEXT NOT NULL DEFAULT '',
    plan_id TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    change_id TEXT NOT NULL DEFAULT '',
    ok INTEGER,
    message TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{{}}',
    prev TEXT NOT NULL DEFAULT '',
    hash TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
CREATE INDEX IF NOT EXISTS events_plan ON events (plan_id, event);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id, event);
CREATE TABLE IF NOT EXISTS plans (plan_id TEXT PRIMARY KEY, at TEXT NOT NULL, data TEXT NOT NULL);
CLAIMS"""

CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, holder TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_change ON events (change_id, event);
"""
EVENTS = EVENTS.replace("CLAIMS", CLAIMS)

SQLITE_SCHEMA = EVENTS.format(seq="INTEGER PRIMARY KEY AUTOINCREMENT") + """
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

POSTGRES_SCHEMA = EVENTS.format(seq="BIGSERIAL PRIMARY KEY") + """
CREATE OR REPLACE FUNCTION recon_append_only() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE OR REPLACE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION recon_append_only();
CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION recon_append_only();
CREATE TABLE IF NOT EXISTS locks (
    key TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    holder TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
CREATE OR REPLACE FUNCTION recon_field(t TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS
    $$ SELECT length(t)::text || ':' || t || ';' $$;
-- one round trip per event: the chain's lock, the previous hash and the insert (the hash as chain_hash makes it)
CREATE OR REPLACE FUNCTION recon_append(r_run TEXT, r_at TEXT, r_event TEXT, r_command TEXT, r_plan TEXT,
        r_request TEXT, r_change TEXT, r_ok INTEGER, r_message TEXT, r_data TEXT) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    last TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(ADVISORY);
    SELECT hash INTO last FROM events ORDER BY seq DESC LIMIT 1;
    last := coalesce(last, '');
    INSERT INTO events (run_id, at, event, command, plan_id, request_id, change_id, ok, message, data, prev, hash)
    VALUES (r_run, r_at, r_event, r_command, r_plan, r_request, r_change, r_ok, r_message, r_data, last,
            encode(sha256(convert_to(recon_field(last) || recon_field(r_run) || recon_field(r_at)
                || recon_field(r_event) || recon_field(r_command) || recon_field(r_plan) || recon_field(r_request)
                || recon_field(r_change) || recon_field(coalesce(r_ok::text, '')) || recon_field(r_message)
                || recon_field(r_data), 'UTF8')), 'hex'));
END $$;
CREATE TABLE IF NOT EXISTS recon_schema (version INTEGER NOT NULL);
INSERT INTO recon_schema (version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM recon_schema);
"""


def default_path(state_dir: Path) -> Path:
    return Path(os.environ.get("RECON_AUDIT") or state_dir / "audit.db")


def chain_hash(prev: str, row: Sequence[Any]) -> str:
    """The hash of an event: sha256 over the previous event's hash and this event's columns, each written as
    `LENGTH:TEXT;` (a missing `ok` as empty text). PostgreSQL computes the same in recon_append()."""
    fields = [prev, *("" if v is None else str(v) for v in row)]
    return hashlib.sha256("".join(f"{len(f)}:{f};" for f in fields).encode()).hexdigest()


class _Sqlite:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"the audit log {path} cannot be opened: {exc}; set RECON_AUDIT or --state-dir to a "
                             "directory you may write") from None
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._retry(lambda: self.db.executescript(SQLITE_SCHEMA))
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(events)")}
        for column in ("prev", "hash"):  # a log written before the chain: its old events stay unchained
            if column not in columns:
                self._retry(lambda c=column: self.db.execute(f"ALTER TABLE events ADD COLUMN {c} TEXT NOT NULL "
                                                             "DEFAULT ''"))

    def _retry(self, work: Any) -> Any:
        for attempt in range(40):
            try:
                return work()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise UsageError(f"the audit log {self.path} stayed locked by another writer; try again")

    def append(self, row: tuple[Any, ...]) -> None:
        def work() -> None:
            self.db.execute("BEGIN IMMEDIATE")  # the writer lock first: the chain has no forks
            try:
                last = self.db.execute("SELECT hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
                prev = last[0] if last else ""
                self.db.execute(f"INSERT INTO events ({', '.join(COLUMNS)}, prev, hash) VALUES "
                                f"({', '.join('?' * (len(COLUMNS) + 2))})", (*row, prev, chain_hash(prev, row)))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        self._retry(work)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._retry(lambda: self.db.execute(sql, tuple(args)).fetchall()))

    def copy(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(f"INSERT INTO events ({', '.join(COLUMNS)}, prev, hash) VALUES "
                            f"({', '.join('?' * (len(COLUMNS) + 2))})", rows)
        self.db.execute("COMMIT")

    def rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        yield from self.db.execute(sql)

    def close(self) -> None:
        self.db.close()


class _Postgres:
    def __init__(self, b: Backend) -> None:
        self.b = b
        self.db = b.connect()
        with guarded(b, "creating its tables"):
            ensure_schema(self.db)

    def append(self, row: tuple[Any, ...]) -> None:
        with guarded(self.b, "writing the audit log"):  # under the chain's lock, so the chain has no forks
            self.db.execute(f"SELECT recon_append({', '.join(['%s'] * len(COLUMNS))})", row)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Appends sent together (libpq's pipeline mode: one round trip, not one each) in one transaction:
        all of them are in the log, or none."""
        with guarded(self.b, "writing the audit log"), self.db.pipeline(), self.db.transaction():
            yield

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with guarded(self.b, "reading the audit log"):
            cur = self.db.execute(sql.replace("?", "%s"), tuple(args))
            return list(cur.fetchall()) if cur.description else []

    def copy(self, rows: Sequence[tuple[Any, ...]]) -> None:
        with guarded(self.b, "copying into the audit log"), self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY,))
            with self.db.cursor() as cur:
                cur.executemany(f"INSERT INTO events ({', '.join(COLUMNS)}, prev, hash) VALUES "
                                f"({', '.join(['%s'] * (len(COLUMNS) + 2))})", rows)

    def rows(self, sql: str) -> Iterator[tuple[Any, ...]]:
        with guarded(self.b, "reading the audit log"), self.db.cursor() as cur:
            yield from cur.stream(sql)

    def close(self) -> None:
        self.db.close()


def ensure_schema(conn: Any) -> None:
    """The tables and functions of a postgres backend, made once (by whichever runner comes first)."""
    schema, claims = conn.execute("SELECT to_regclass('recon_schema'), to_regclass('claims')").fetchone()
    if schema is None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY,))
            conn.execute(POSTGRES_SCHEMA.replace("ADVISORY", str(_ADVISORY)))
    elif claims is None:  # a backend made before pull requests could hold their targets
        conn.execute(CLAIMS)


def open_audit(state_dir: Path) -> Audit:
    """The audit log of this repository's state backend."""
    from reconciler.state import backend

    return Audit(backend(state_dir))


class Audit:
    def __init__(self, where: Backend) -> None:
        self.backend = where
        self.where = where.where if where.kind == "postgres" else str(default_path(where.state_dir))
        self._store: _Sqlite | _Postgres = (
            _Postgres(where) if where.kind == "postgres" else _Sqlite(default_path(where.state_dir)))
        self._lock = threading.RLock()  # a batch holds it around its appends

    def start(self, command: str, plan_id: str = "", request_id: str = "", **data: Any) -> Run:
        run = Run(self, uuid.uuid4().hex[:12], command, plan_id, request_id)
        run.write("start", **who(), **data)
        return run

    def insert(self, run: Run, event: str, change_id: str, ok: bool | None, message: str, data: dict[str, Any]) -> None:
        row = (run.id, datetime.now(UTC).isoformat(timespec="milliseconds"), event, run.command, run.plan_id,
               run.request_id, change_id, None if ok is None else int(ok), message,
               json.dumps(data, sort_keys=True, default=str))
        with self._lock:
            self._store.append(row)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Appends made inside are written together, all or none (postgres: one round trip); SQLite writes
        each at once, as outside."""
        if isinstance(self._store, _Postgres):
            with self._lock, self._store.batch():
                yield
        else:
            yield

    def finished(self, *, plan_id: str = "", request_id: str = "", part: str = "", parts: int = 0,
                 command: str = "apply") -> dict[str, Any] | None:
        """The last apply (or `command`: "do", an operational action) that ended with every change done, for this
        plan id or request id. `part` ("K/N"): done when that part or the whole plan was; `parts` (N, for a whole
        merged plan): done when the whole was, or every one of its N parts."""
        column, value = ("plan_id", plan_id) if plan_id else ("request_id", request_id)
        with self._lock:
            rows = self._store.query(
                f"SELECT e.at, e.run_id, s.data FROM events e JOIN events s ON s.run_id = e.run_id AND "
                f"s.event = 'start' WHERE e.{column} = ? AND e.event = 'end' AND e.command = ? AND e.ok = 1 "
                "ORDER BY e.seq DESC", (value, command))
        done = [{"at": at, "run": run, **json.loads(data)} for at, run, data in rows]
        if not plan_id:
            return done[0] if done else None
        whole = next((d for d in done if not d.get("part")), None)
        if whole is not None:
            return whole
        if part:
            return next((d for d in done if d.get("part") == part), None)
        if parts and {d["part"] for d in done} >= {f"{k}/{parts}" for k in range(1, parts + 1)}:
            return {**done[0], "parts": parts}
        return None

    def part_runs(self, plan_id: str) -> list[dict[str, Any]]:
        """The applies of parts of a merged plan, oldest first: part, outcome (ok, failed, refused, or unfinished:
        running or killed), who, when, and the counts."""
        with self._lock:
            rows = self._store.query(
                "SELECT s.run_id, s.at, s.data, e.event, e.ok, e.data FROM events s LEFT JOIN events e ON "
                "e.run_id = s.run_id AND e.event IN ('end', 'refused') WHERE s.plan_id = ? AND s.event = 'start' "
                "AND s.command = 'apply' ORDER BY s.seq", (plan_id,))
        out = []
        for run, at, start, event, ok, end in rows:
            begun = json.loads(start)
            outcome = ("unfinished" if event is None else "refused" if event == "refused"
                       else "ok" if ok else "failed")
            out.append({"run": run, "at": at, "part": begun.get("part", ""), "outcome": outcome,
                        "user": begun.get("user", "?"), "host": begun.get("host", "?"), **json.loads(end or "{}")})
        return out

    def rollout_failures(self, plan_id: str, spec: str) -> set[str]:
        """The targets of a rolling spec that failed in any part of this plan's apply (maxFailures across shards)."""
        with self._lock:
            rows = self._store.query("SELECT data FROM events WHERE plan_id = ? AND event = 'target-failed'",
                                     (plan_id,))
        return {str(d.get("target")) for d in map(json.loads, (r[0] for r in rows)) if d.get("spec") == spec}

    def applied(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        """Change id -> the desired digest it was last applied with (the baseline of drift); of `ids` only, when
        given (a plan asks for its pending changes alone)."""
        sql = "SELECT change_id, data FROM events WHERE event = 'applied'"
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            if ids is None:
                rows = self._store.query(sql + " ORDER BY seq")
            for k in range(0, len(ids or ()), 500):
                part = list(ids or ())[k:k + 500]
                rows += self._store.query(sql + f" AND change_id IN ({', '.join('?' * len(part))}) ORDER BY seq",
                                          part)
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
        with self._lock:
            starts = self._store.query(
                f"SELECT run_id, at, command, plan_id, request_id, data FROM events WHERE {' AND '.join(where)} "
                "ORDER BY seq DESC LIMIT ?", (*args, limit))
            out = []
            for run_id, at, command, pid, rid, data in starts:
                events = [dict(zip(("at", "event", "change", "ok", "message", "data"), e, strict=True))
                          for e in self._store.query(
                              "SELECT at, event, change_id, ok, message, data FROM events WHERE run_id = ? "
                              "ORDER BY seq", (run_id,))]
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

    def verify(self) -> Verdict:
        """Walk the chain from the first event: the count, and the first broken link (if any)."""
        prev, count, unchained = "", 0, 0
        with self._lock:
            for seq, *row, was, digest in self._store.rows(
                    f"SELECT seq, {', '.join(COLUMNS)}, prev, hash FROM events ORDER BY seq"):
                count += 1
                if not digest and not prev:  # written before the log was chained
                    unchained += 1
                    continue
                what = f"event {seq} ({row[2]} of run {row[0]} at {row[1]})"
                if was != prev:
                    return Verdict(count, unchained, f"{what} does not follow the event before it: an event was "
                                   "removed or inserted there")
                if chain_hash(prev, row) != digest:
                    return Verdict(count, unchained, f"{what} was changed after it was written (its content does "
                                   "not match its hash)")
                prev = digest
        return Verdict(count, unchained, "")

    def save_plan(self, plan_id: str, text: str) -> None:
        """Keep a saved plan by its id (the first one kept stays: the id is a digest of what it holds)."""
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock:
            self._store.query("INSERT INTO plans (plan_id, at, data) VALUES (?, ?, ?) ON CONFLICT (plan_id) DO NOTHING",
                              (plan_id, at, text))

    def load_plan(self, plan_id: str) -> str | None:
        with self._lock:
            rows = self._store.query("SELECT data FROM plans WHERE plan_id = ?", (plan_id,))
        return str(rows[0][0]) if rows else None

    def claim(self, keys: Sequence[str], owner: str, holder: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Hold these lock keys for `owner` (a pull request, `pr:N`) until released, in place of what it held
        before: all of them, or none when another owner holds any (returned: key -> that owner and holder)."""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        record = json.dumps(holder, sort_keys=True, default=str)
        with self._lock:
            taken: list[str] = []
            conflicts: dict[str, dict[str, Any]] = {}
            for key in sorted(set(keys)):
                before = self._store.query("SELECT owner, holder, at FROM claims WHERE key = ?", (key,))
                if before and before[0][0] != owner:
                    conflicts[key] = {"owner": before[0][0], "holder": json.loads(before[0][1]), "at": before[0][2]}
                    continue
                if not before:
                    self._store.query("INSERT INTO claims (key, owner, holder, at) VALUES (?, ?, ?, ?) "
                                      "ON CONFLICT (key) DO NOTHING", (key, owner, record, at))
                    now = self._store.query("SELECT owner, holder, at FROM claims WHERE key = ?", (key,))
                    if now and now[0][0] != owner:  # another took it meanwhile
                        conflicts[key] = {"owner": now[0][0], "holder": json.loads(now[0][1]), "at": now[0][2]}
                        continue
                    taken.append(key)
            if conflicts:
                for key in taken:
                    self._store.query("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))
                return conflicts
            mine = {row[0] for row in self._store.query("SELECT key FROM claims WHERE owner = ?", (owner,))}
            for key in mine - set(keys):  # what the owner's plan no longer touches
                self._store.query("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))
            return {}

    def release(self, owner: str) -> list[str]:
        """Let go of every key `owner` holds; the keys."""
        with self._lock:
            keys = [str(r[0]) for r in self._store.query("SELECT key FROM claims WHERE owner = ?", (owner,))]
            self._store.query("DELETE FROM claims WHERE owner = ?", (owner,))
        return sorted(keys)

    def claims(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._store.query("SELECT key, owner, holder, at FROM claims ORDER BY key")
        return [{"key": r[0], "owner": r[1], "holder": json.loads(r[2]), "at": r[3]} for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._store.query("SELECT count(*) FROM events")[0][0])

    def copy_to(self, target: Audit) -> int:
        """Every event of this log, in order and with its hashes, into an empty log: the chain verifies there
        as here (`recon state migrate`). The number of events copied."""
        if target.count():
            raise UsageError(f"the audit log {target.where} already holds events; migrate into an empty one (a "
                             "chain cannot be spliced into another without rewriting it)")
        rows = list(self._store.rows(f"SELECT {', '.join(COLUMNS)}, prev, hash FROM events ORDER BY seq"))
        with target._lock:
            target._store.copy(rows)
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._store.close()


@dataclass(frozen=True)
class Verdict:
    events: int  # read until the first broken link, or all
    unchained: int  # written before the log was chained (older recon)
    broken: str  # the first broken link, or "" when the chain holds


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
