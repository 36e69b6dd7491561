"""After an apply was killed: find it from its journal, and roll back what it did (`recon rollback`).

A journal with a start and no end, whose process is gone, is an interrupted apply. Its plan is
kept beside it; its `step` events say which changes finished on which target. Rolling back undoes
those, newest first, per target, with the provider's own undo (files and directories from the
backups the steps kept beside them; services back to their state); commands cannot be undone. A
re-run of `recon apply` is the other way out: it finishes the work instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.context import Context
from providers.contract import Change, Instance, Provider, Result, WithUndo
from reconciler import planner
from reconciler.journal import Journal
from reconciler.plan import Plan
from specs.errors import UsageError
from specs.project import Project


@dataclass
class Interrupted:
    journal: Path
    plan: Plan
    started: str
    pid: int
    done: list[str]  # change ids that finished, in the order they finished

    def describe(self) -> str:
        return (f"plan {self.plan.plan_id}, started {self.started} by pid {self.pid}: {len(self.done)} of "
                f"{len(self.plan.pending)} changes finished ({self.journal.name})")


def _events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by the kill
    return out


def _started(path: Path) -> str:
    with path.open(encoding="utf-8") as fh:
        try:
            return str(json.loads(fh.readline()).get("at", ""))
        except ValueError:
            return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def interrupted(state_dir: Path) -> list[Interrupted]:
    """The last apply, if it started, never ended, and its process is gone. Only the last: once another
    apply ran after it, undoing it could undo that one's work (a re-run finishes what it left)."""
    out = []
    journals = sorted((state_dir / "journal").glob("*.jsonl"), key=_started)  # by start time, to the millisecond
    for path in journals[-1:]:
        events = _events(path)
        plan_file = path.with_suffix(".plan.json")
        if not events or events[0].get("event") != "start" or any(e.get("event") == "end" for e in events):
            continue
        if not plan_file.exists() or _alive(int(events[0].get("pid", 0))):
            continue
        done = [e["change"] for e in events if e.get("event") == "step" and e.get("ok")]
        out.append(Interrupted(path, Plan.from_json(json.loads(plan_file.read_text()), str(plan_file)),
                               events[0].get("at", "?"), int(events[0].get("pid", 0)), done))
    return out


def rollback(found: Interrupted, project: Project, ctx: Context, state_dir: Path) -> list[Result]:
    """Undo the finished changes of an interrupted apply, target by target, newest first."""
    by_id = {inst.id: (prov, inst) for prov, inst in planner.expand(project)}
    changes = {c.id: c for c in found.plan.changes}
    per_target: dict[str, list[tuple[Provider, Instance, Change]]] = {}
    results: list[Result] = []
    for cid in found.done:
        hit = by_id.get(cid)
        if hit is None or cid not in changes:
            results.append(Result(cid, False, "not undone: no spec declares it any more"))
            continue
        per_target.setdefault(hit[1].target, []).append((hit[0], hit[1], changes[cid]))
    journal = Journal(state_dir, found.plan.plan_id, path=found.journal)
    try:
        for target, steps in per_target.items():
            provider = steps[0][0]
            if not isinstance(provider, WithUndo):
                results += [Result(c.id, False, "not undone: its provider cannot roll back") for _, _, c in steps]
                continue
            for r in provider.undo(target, [(i, c) for _, i, c in steps], ctx):
                journal.write("undone", change=r.change_id, ok=r.ok, message=r.message)
                results.append(r)
        journal.write("end", ok=False, rolled_back=True, undone=sum(r.ok for r in results))
    finally:
        journal.close()
    return results


def pick(found: Sequence[Interrupted], journal: str | None) -> Interrupted:
    if journal:
        match = [f for f in found if f.journal.name == Path(journal).name]
        if not match:
            raise UsageError(f"{journal} is not the journal of an interrupted apply (see `recon rollback --list`)")
        return match[0]
    if not found:
        raise UsageError("there is no interrupted apply to roll back (every journal has ended)")
    return found[-1]
