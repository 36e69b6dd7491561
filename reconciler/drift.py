"""Drift: of a plan's pending changes, which are drift (the live state moved away from what was
applied) and which are pending (the specs moved away from the live state).

The baseline is the audit log: the desired digest each resource was last applied with. A change
whose desired digest is that one means the specs did not move, so the live state did: drift. A
resource never applied by recon, or whose spec changed since, is pending. Ignore rules (Policy
`driftIgnore`) take drift out of the count, with their reason, until they expire.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from providers.contract import Change
from reconciler.plan import Plan
from specs.globs import glob_match
from specs.policy import DriftIgnore, PolicySpec
from specs.project import Project


@dataclass
class Report:
    drift: list[Change] = field(default_factory=list)
    pending: list[Change] = field(default_factory=list)
    ignored: list[tuple[Change, str]] = field(default_factory=list)  # (change, reason)
    expired: list[str] = field(default_factory=list)  # descriptions of expired rules

    @property
    def clean(self) -> bool:
        return not self.drift and not self.pending


def _rules(project: Project) -> list[tuple[str, DriftIgnore]]:
    from reconciler.policy import governing

    out = []
    for spec in governing(project).trusted:  # a change cannot hide drift by adding an ignore rule of its own
        assert isinstance(spec.body, PolicySpec)
        out += [(spec.address, rule) for rule in spec.body.driftIgnore]
    return out


def classify(plan: Plan, project: Project, applied: dict[str, str], today: datetime.date | None = None) -> Report:
    today = today or datetime.datetime.now(datetime.UTC).date()
    report = Report()
    active = []
    for where, rule in _rules(project):
        if rule.expires is not None and rule.expires < today:
            report.expired.append(f"{where}: ignore rule for {', '.join(rule.addresses)} ({rule.reason}) "
                                  f"expired on {rule.expires.isoformat()}")
        else:
            active.append(rule)
    for c in plan.pending:
        if applied.get(c.id) != c.desired or not c.desired:
            report.pending.append(c)
            continue
        match = next((r for r in active if any(glob_match(g, c.id) or glob_match(g, c.address)
                                               for g in r.addresses)), None)
        if match is not None:
            report.ignored.append((c, match.reason))
        else:
            report.drift.append(c)
    return report


def to_json(plan: Plan, report: Report) -> dict[str, object]:
    def one(c: Change) -> dict[str, object]:
        return {"id": c.id, "action": c.action, "reason": c.reason,
                "fields": [{"path": f.path, "before": f.before, "after": f.after} for f in c.fields]}

    return {"plan_id": plan.plan_id, "clean": report.clean, "drift": [one(c) for c in report.drift],
            "pending": [one(c) for c in report.pending],
            "ignored": [{**one(c), "ignore_reason": why} for c, why in report.ignored],
            "expired_rules": report.expired, "git": plan.git}
