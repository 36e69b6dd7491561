"""The apply journal: one JSON line per event, flushed as it happens, so an interrupted apply
leaves a record of what was done. (The audit log of the policy work builds on it.)"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, state_dir: Path, plan_id: str) -> None:
        directory = state_dir / "journal"
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.path = directory / f"{stamp}-{plan_id}.jsonl"
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")
        self.write("start", plan_id=plan_id, user=_user(), host=socket.gethostname(), pid=os.getpid())

    def write(self, event: str, **data: Any) -> None:
        record = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **data}
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
